"""BigBlueButton: configured servers (sealed shared secrets), lecturers' meetings, imported recordings

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('bbb_servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('api_url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.String(length=500), nullable=False),
    sa.Column('checksum_algorithm', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bbb_servers')),
    sa.UniqueConstraint('name', name=op.f('uq_bbb_servers_name')),
    )
    op.create_table('bbb_meetings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('meeting_id', sa.String(length=256), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('auto_import', sa.Boolean(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['bbb_servers.id'], name=op.f('fk_bbb_meetings_server_id_bbb_servers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_bbb_meetings_owner_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_bbb_meetings_event_id_events'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bbb_meetings')),
    sa.UniqueConstraint('server_id', 'meeting_id', name='uq_bbb_meetings_server_meeting'),
    )
    with op.batch_alter_table('bbb_meetings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bbb_meetings_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bbb_meetings_event_id'), ['event_id'], unique=False)
    op.create_table('bbb_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('server_id', sa.Integer(), nullable=False),
    sa.Column('record_id', sa.String(length=256), nullable=False),
    sa.Column('meeting_id', sa.String(length=256), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['server_id'], ['bbb_servers.id'], name=op.f('fk_bbb_imports_server_id_bbb_servers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_bbb_imports_owner_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_bbb_imports_recording_id_recordings'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bbb_imports')),
    sa.UniqueConstraint('server_id', 'record_id', name='uq_bbb_imports_server_record'),
    )
    with op.batch_alter_table('bbb_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bbb_imports_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bbb_imports_recording_id'), ['recording_id'], unique=False)


def downgrade() -> None:
    op.drop_table('bbb_imports')
    op.drop_table('bbb_meetings')
    op.drop_table('bbb_servers')
