"""ids never reused; a random access secret per event and recording

``events.access_secret`` and ``recordings.access_secret``: media passes are signed over them
(``live_server/passes.py``), so a pass for a deleted row never opens a new one. On SQLite both
tables are rebuilt with ``AUTOINCREMENT`` (the copy carries the highest id into
``sqlite_sequence``), so a deleted id is never handed out again; PostgreSQL sequences never
reuse ids. The rebuild of ``recordings`` drops the FTS triggers of 0003: they are recreated.

Revision ID: 0006
Revises: 0005
"""
import secrets
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('events', 'recordings')
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
    for table in TABLES:
        op.add_column(table, sa.Column('access_secret', sa.String(length=64), nullable=True))
        rows = sa.table(table, sa.column('id', sa.Integer), sa.column('access_secret', sa.String))
        for (row_id,) in bind.execute(sa.select(rows.c.id)).all():
            bind.execute(rows.update().where(rows.c.id == row_id).values(access_secret=secrets.token_urlsafe(24)))
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    for table in TABLES:
        kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': True}} if sqlite else {}
        with op.batch_alter_table(table, **kwargs) as batch_op:  # type: ignore[arg-type]
            batch_op.alter_column('access_secret', existing_type=sa.String(length=64), nullable=False)
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    for table in TABLES:
        kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': False}} if sqlite else {}
        with op.batch_alter_table(table, **kwargs) as batch_op:  # type: ignore[arg-type]
            batch_op.drop_column('access_secret')
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)
