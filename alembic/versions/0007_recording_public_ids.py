"""recordings get a public id: unlisted ones are named by it in URLs, not by their sequential id

Added, filled row by row with random values, then NOT NULL and unique; on SQLite that is a table
copy (AUTOINCREMENT kept), so the FTS triggers of 0003 are recreated as in 0006.

Revision ID: 0007
Revises: 0006
"""
import secrets
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RECORDING_TRIGGERS = [
    "CREATE TRIGGER recording_fts_ai AFTER INSERT ON recordings BEGIN "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER recording_fts_ad AFTER DELETE ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); END",
    "CREATE TRIGGER recording_fts_au AFTER UPDATE OF title, description ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
]
DROP_RECORDING_TRIGGERS = [f"DROP TRIGGER IF EXISTS recording_fts_{name}" for name in ("ai", "ad", "au")]


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column('recordings', sa.Column('public_id', sa.String(length=32), nullable=True))
    rows = sa.table('recordings', sa.column('id', sa.Integer), sa.column('public_id', sa.String))
    for (row_id,) in bind.execute(sa.select(rows.c.id)).all():
        bind.execute(rows.update().where(rows.c.id == row_id).values(public_id=secrets.token_urlsafe(12)))
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:  # NOT NULL needs a table copy there, which drops the FTS triggers: recreated below
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': True}} if sqlite else {}
    with op.batch_alter_table('recordings', **kwargs) as batch_op:  # type: ignore[arg-type]
        batch_op.alter_column('public_id', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_recordings_public_id', ['public_id'])
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': True}} if sqlite else {}
    with op.batch_alter_table('recordings', **kwargs) as batch_op:  # type: ignore[arg-type]
        batch_op.drop_constraint('uq_recordings_public_id', type_='unique')
        batch_op.drop_column('public_id')
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)
