"""Schema migrations with Alembic, driven from code so `live-server db upgrade` works from any folder."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from live_server.db import normalise_url, private_sqlite_file

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "alembic"


#: Search indexes that migrations create per dialect with raw SQL (SQLite FTS5 tables and their
#: shadow tables, PostgreSQL GIN expression indexes); they have no model, so autogenerate skips them.
UNMAPPED_SEARCH_OBJECTS = ("caption_fts", "recording_fts", "ix_caption_segments_fts", "ix_recordings_fts")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic ``include_object`` filter: everything except the unmapped search indexes."""
    return not (reflected and name is not None and name.startswith(UNMAPPED_SEARCH_OBJECTS))


class DatabaseNotMigrated(Exception):
    """The catalog schema is not at the revision this code needs."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", stream_key_cipher: object = None) -> None:
    """``stream_key_cipher`` (security.StreamKeyCipher) lets 0008 seal the stream keys of an existing catalog."""
    private_sqlite_file(url)
    cfg = alembic_config(url)
    cfg.attributes["stream_key_cipher"] = stream_key_cipher
    command.upgrade(cfg, revision)


def downgrade(url: str, revision: str = "base", stream_key_cipher: object = None) -> None:
    cfg = alembic_config(url)
    cfg.attributes["stream_key_cipher"] = stream_key_cipher
    command.downgrade(cfg, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_migrated(engine: Engine) -> None:
    """Refuse to serve on a schema we do not know; say which command fixes it."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty (never migrated)" if current is None else f"at revision {current}"
        raise DatabaseNotMigrated(
            f"the database is {state} but this version needs revision {head}; "
            "run `live-server db upgrade` (or `make run`, which migrates) and start again"
        )
