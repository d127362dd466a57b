"""audience insight: per-minute live audience, viewer sessions (kept for a retention), their reduced
aggregates, replay watch buckets; events.attendance_required

Revision ID: 0009
Revises: 0008
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain ADD COLUMN (a batch copy of the table would lose SQLite's AUTOINCREMENT, see 0006).
    op.add_column('events', sa.Column('attendance_required', sa.Boolean(), nullable=False, server_default=sa.false()))

    op.create_table('audience_minutes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
    sa.Column('worker', sa.String(length=120), nullable=False),
    sa.Column('viewers', sa.Integer(), nullable=False),
    sa.Column('new_viewers', sa.Integer(), nullable=False),
    sa.Column('caption_viewers', sa.Integer(), nullable=False),
    sa.Column('qualities', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_audience_minutes_event_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audience_minutes')),
    sa.UniqueConstraint('event_id', 'minute', 'worker', name='uq_audience_minutes_event_minute_worker')
    )
    with op.batch_alter_table('audience_minutes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_minutes_event_id'), ['event_id'], unique=False)

    op.create_table('audience_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('recording_id', sa.Integer(), nullable=True),
    sa.Column('viewer', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('watched_seconds', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_audience_sessions_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_audience_sessions_recording_id_recordings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audience_sessions_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audience_sessions')),
    sa.UniqueConstraint('kind', 'target_id', 'viewer', name='uq_audience_sessions_kind_target_viewer')
    )
    with op.batch_alter_table('audience_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_sessions_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audience_sessions_recording_id'), ['recording_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audience_sessions_last_seen'), ['last_seen'], unique=False)

    op.create_table('audience_reduced',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('recording_id', sa.Integer(), nullable=True),
    sa.Column('viewers', sa.Integer(), nullable=False),
    sa.Column('logged_in', sa.Integer(), nullable=False),
    sa.Column('watched_seconds', sa.Float(), nullable=False),
    sa.Column('watch_histogram', sa.Text(), nullable=False),
    sa.Column('joins', sa.Text(), nullable=False),
    sa.Column('leaves', sa.Text(), nullable=False),
    sa.Column('reduced_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_audience_reduced_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_audience_reduced_recording_id_recordings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audience_reduced')),
    sa.UniqueConstraint('kind', 'target_id', name='uq_audience_reduced_kind_target')
    )
    with op.batch_alter_table('audience_reduced', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audience_reduced_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audience_reduced_recording_id'), ['recording_id'], unique=False)

    op.create_table('audience_replay_buckets',
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('start_second', sa.Integer(), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_audience_replay_buckets_recording_id_recordings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('recording_id', 'start_second', name=op.f('pk_audience_replay_buckets'))
    )


def downgrade() -> None:
    op.drop_table('audience_replay_buckets')
    with op.batch_alter_table('audience_reduced', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_reduced_recording_id'))
        batch_op.drop_index(batch_op.f('ix_audience_reduced_event_id'))
    op.drop_table('audience_reduced')
    with op.batch_alter_table('audience_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_sessions_last_seen'))
        batch_op.drop_index(batch_op.f('ix_audience_sessions_recording_id'))
        batch_op.drop_index(batch_op.f('ix_audience_sessions_event_id'))
    op.drop_table('audience_sessions')
    with op.batch_alter_table('audience_minutes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_minutes_event_id'))
    op.drop_table('audience_minutes')
    op.drop_column('events', 'attendance_required')  # native DROP COLUMN (SQLite >= 3.35): no table copy
