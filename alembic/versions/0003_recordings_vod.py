"""recordings and VOD catalog

Recording gets the end of its live run and its discontinuity count; transcript search gets its
index, per dialect: SQLite FTS5 tables kept in step by triggers, PostgreSQL GIN indexes on
``to_tsvector('simple', ...)`` (the expressions ``vod/search.py`` queries with). The FTS5 tables
are not mapped models: ``live_server.migrations.include_object`` hides them from autogenerate.

Note for later SQLite migrations: a batch "move and copy" of ``recordings`` or
``caption_segments`` drops the triggers below; recreate them (``vod/search.py`` documents them).

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE caption_fts USING fts5(text, content='caption_segments', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER caption_fts_ai AFTER INSERT ON caption_segments BEGIN "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER caption_fts_ad AFTER DELETE ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER caption_fts_au AFTER UPDATE OF text ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO caption_fts(caption_fts) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE recording_fts USING fts5(title, description, content='recordings', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER recording_fts_ai AFTER INSERT ON recordings BEGIN "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER recording_fts_ad AFTER DELETE ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); END",
    "CREATE TRIGGER recording_fts_au AFTER UPDATE OF title, description ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
    "INSERT INTO recording_fts(recording_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS recording_fts_au",
    "DROP TRIGGER IF EXISTS recording_fts_ad",
    "DROP TRIGGER IF EXISTS recording_fts_ai",
    "DROP TABLE IF EXISTS recording_fts",
    "DROP TRIGGER IF EXISTS caption_fts_au",
    "DROP TRIGGER IF EXISTS caption_fts_ad",
    "DROP TRIGGER IF EXISTS caption_fts_ai",
    "DROP TABLE IF EXISTS caption_fts",
]
POSTGRES_UP = [
    "CREATE INDEX ix_caption_segments_fts ON caption_segments USING gin (to_tsvector('simple', text))",
    "CREATE INDEX ix_recordings_fts ON recordings USING gin "
    "(to_tsvector('simple', title || ' ' || description))",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_recordings_fts",
    "DROP INDEX IF EXISTS ix_caption_segments_fts",
]


def upgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('discontinuities', sa.Integer(), nullable=False, server_default='0'))
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == 'sqlite' else POSTGRES_UP if dialect == 'postgresql' else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == 'sqlite' else POSTGRES_DOWN if dialect == 'postgresql' else []:
        op.execute(statement)
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_column('discontinuities')
        batch_op.drop_column('ended_at')
