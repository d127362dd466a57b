"""Migrations go up and down on both catalogs; the server refuses an un-migrated database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import inspect

from live_server import migrations
from live_server.app import create_app
from live_server.db import Database
from live_server.models import Base
from live_server.settings import Settings

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
    out = subprocess.run([sys.executable, "-m", "live_server.cli", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "refusing to start" in out.stderr and "live-server db upgrade" in out.stderr
