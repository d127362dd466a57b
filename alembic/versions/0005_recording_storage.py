"""recordings in object storage

``recordings.storage_url``: NULL while the media is in the media folder (``media_path``), else
where it was uploaded (``s3://bucket/prefix/``). A plain ADD/DROP COLUMN: no batch copy of
``recordings``, so the SQLite FTS triggers of 0003 stay in place.

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('recordings', sa.Column('storage_url', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE recordings DROP COLUMN storage_url')  # SQLite >= 3.35, no table copy
    else:
        op.drop_column('recordings', 'storage_url')
