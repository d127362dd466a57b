"""audio descriptions: a recording's alternate audio renditions that describe the picture

Revision ID: 0014
Revises: 0013
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0014'
down_revision: Union[str, None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('audio_descriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('state', sa.Enum('pending', 'ready', 'failed', name='audio_description_state', native_enum=False,
                               length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('cues', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_audio_descriptions_recording_id_recordings'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_audio_descriptions_requested_by_id_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audio_descriptions')),
    sa.UniqueConstraint('recording_id', 'language', name='uq_audio_descriptions_recording_language')
    )
    with op.batch_alter_table('audio_descriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audio_descriptions_recording_id'), ['recording_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audio_descriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audio_descriptions_recording_id'))
    op.drop_table('audio_descriptions')
