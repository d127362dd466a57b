"""transcription jobs: the queue of recordings to transcribe with Vosk; users.transcription_language;
caption_segments.event_id nullable (an imported recording's transcript has no event)

Revision ID: 0012
Revises: 0011
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# A batch copy of caption_segments (SQLite) drops the FTS5 triggers 0003 made: they are made again.
CAPTION_TRIGGERS = [
    "DROP TRIGGER IF EXISTS caption_fts_ai",
    "DROP TRIGGER IF EXISTS caption_fts_ad",
    "DROP TRIGGER IF EXISTS caption_fts_au",
    "CREATE TRIGGER caption_fts_ai AFTER INSERT ON caption_segments BEGIN "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER caption_fts_ad AFTER DELETE ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER caption_fts_au AFTER UPDATE OF text ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO caption_fts(caption_fts) VALUES ('rebuild')",
]


def _caption_event_nullable(nullable: bool) -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('caption_segments', schema=None) as batch_op:
        batch_op.alter_column('event_id', existing_type=sa.Integer(), nullable=nullable)
    if sqlite:
        for statement in CAPTION_TRIGGERS:
            op.execute(statement)


def upgrade() -> None:
    # Plain ADD COLUMN (a batch copy of users is not needed).
    op.add_column('users', sa.Column('transcription_language', sa.String(length=8), nullable=True))
    _caption_event_nullable(True)
    op.create_table('transcription_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'done', 'failed', 'cancelled', name='transcription_job_state',
                               native_enum=False, length=20), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('progress_seconds', sa.Float(), nullable=False),
    sa.Column('total_seconds', sa.Float(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('cues', sa.Integer(), nullable=False),
    sa.Column('real_time_factor', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_transcription_jobs_recording_id_recordings'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_transcription_jobs_requested_by_id_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcription_jobs'))
    )
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcription_jobs_recording_id'), ['recording_id'], unique=False)
        batch_op.create_index('ix_transcription_jobs_state_created', ['state', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('transcription_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_transcription_jobs_state_created')
        batch_op.drop_index(batch_op.f('ix_transcription_jobs_recording_id'))
    op.drop_table('transcription_jobs')
    op.execute("DELETE FROM caption_segments WHERE event_id IS NULL")
    _caption_event_nullable(False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('transcription_language')
