"""Migrations go up and down on both catalogs; the server refuses an un-migrated database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import inspect

from live_server import migrations
from live_server.app import create_app
from live_server.db import Database
from live_server.models import Base
from live_server.settings import Settings
from tests.processes import cli_in_process

TABLES = {
    "users", "login_sessions", "api_tokens", "events", "stream_keys", "broadcast_sessions", "recordings",
    "chapters", "chat_messages", "questions", "question_votes", "caption_segments",
}


def test_upgrade_downgrade_roundtrip(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert migrations.current_revision(db.engine) is None
        migrations.upgrade(database_url)
        assert migrations.current_revision(db.engine) == migrations.head_revision()
        assert TABLES <= set(inspect(db.engine).get_table_names())
        migrations.ensure_migrated(db.engine)

        migrations.downgrade(database_url, "base")
        db.engine.dispose()
        assert not TABLES & set(inspect(db.engine).get_table_names())
        migrations.upgrade(database_url)
        db.engine.dispose()
        assert TABLES <= set(inspect(db.engine).get_table_names())
    finally:
        db.close()


def test_models_match_migrations(migrated_url: str) -> None:
    """The migration scripts build exactly what the models describe (no forgotten migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = Database(migrated_url)
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False, "include_object": migrations.include_object}), Base.metadata)
        assert diff == []
    finally:
        db.close()


async def test_app_refuses_unmigrated_database(make_settings: Callable[..., Settings], tmp_path: Path, aiohttp_client: Any) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(migrations.DatabaseNotMigrated, match="run `live-server db upgrade`"):
        await aiohttp_client(create_app(settings))


def test_cli_run_refuses_unmigrated_database(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LIVE_DATA_DIR": str(tmp_path), "LIVE_PORT": "0", "LIVE_RTMP_ENABLED": "false"}
    out = cli_in_process(env, "run", cwd=tmp_path)
    assert out.returncode == 2
    assert "refusing to start" in out.stderr and "live-server db upgrade" in out.stderr


def test_ids_are_never_reused_after_a_delete_even_in_a_database_from_before(database_url: str) -> None:
    """Issue 17 (7b): a deleted event's id is not handed to the next event, and rows that existed
    before the migration get an access secret of their own (passes are signed over it)."""
    from sqlalchemy import text

    migrations.upgrade(database_url, "0005")
    db = Database(database_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, username, display_name, password_hash, role, is_active, created_at) "
                              "VALUES (1, 'a', 'A', 'x', 'lecturer', true, CURRENT_TIMESTAMP)"))
            for slug in ("a-old", "a-deleted"):
                conn.execute(text(
                    "INSERT INTO events (slug, title, description, owner_id, visibility, state, caption_vocabulary, dvr,"
                    " record, abr, chat_enabled, guests_allowed, created_at, updated_at) VALUES (:slug, 't', '', 1,"
                    " 'public', 'scheduled', '', true, true, false, true, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"slug": slug})
        db.engine.dispose()
        migrations.upgrade(database_url)
        with db.engine.begin() as conn:
            secrets_ = [row[0] for row in conn.execute(text("SELECT access_secret FROM events ORDER BY id"))]
            assert len(secrets_) == 2 and all(len(s) >= 32 for s in secrets_) and secrets_[0] != secrets_[1]
            deleted = conn.execute(text("SELECT MAX(id) FROM events")).scalar_one()
            conn.execute(text("DELETE FROM events WHERE id = :id"), {"id": deleted})
        from live_server.models import Event

        new_id = db.transaction(lambda s: _new_event(s, Event))
        assert new_id > deleted
    finally:
        db.close()


def _new_event(session: Any, event_cls: Any) -> int:
    row = event_cls(slug="b-new", title="B", owner_id=1)
    session.add(row)
    session.flush()
    return int(row.id)
