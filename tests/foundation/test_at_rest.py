"""What a copy of the data folder gives away (issue 17, item 16): data files are private to the server's user,
and stream keys are sealed with the server secret, so the catalog alone does not let anyone publish."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import select, text

from live_server import events as ev
from live_server import migrations
from live_server.db import Database
from live_server.models import Role, StreamKey, User
from live_server.security import StreamKeyCipher
from tests.support import Account, login


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_folder_database_and_secret_are_private(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LIVE_DATA_DIR": str(data), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    commands = [["db", "upgrade"], ["users", "create", "--username", "prof", "--role", "lecturer", "--generate-password"],
                ["events", "create", "--title", "Optics", "--owner", "prof"]]
    # The operator's three commands, one after another in one real process under a permissive umask (022):
    # the modes are what the program sets, not what the test process's umask happens to be. One interpreter
    # start instead of three; each command is the same ``main()`` the console script runs.
    script = ("import sys\nfrom live_server.cli import main\n"
              f"for command in {commands!r}:\n"
              "    code = main(command)\n"
              "    if code:\n"
              "        sys.exit(f'{command} exited {code}')\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          cwd=tmp_path, preexec_fn=lambda: os.umask(0o022), timeout=120)
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700
    assert _mode(data / "secret_key") == 0o600
    for name in ("live.db", "live.db-wal", "live.db-shm"):
        if (data / name).exists():
            assert _mode(data / name) == 0o600, name


async def test_stream_keys_are_sealed_in_the_catalog(client: Any, make_user: Callable[..., Account], migrated_url: str,
                                                     db: Database) -> None:
    csrf = await login(client, make_user("lecturer"))
    created = await (await client.post("/api/v1/events", json={"title": "Optics"}, headers={"X-CSRF-Token": csrf})).json()
    key = created["stream"]["stream_key"]
    shown = await (await client.get(f"/api/v1/events/{created['id']}")).json()
    assert shown["stream"]["stream_key"] == key  # the owner can see it again (dashboard, API)
    raw = Database(migrated_url)  # what someone with a copy of the database reads
    try:
        stored = raw.transaction(lambda s: [tuple(r) for r in s.execute(text("SELECT key_id, secret FROM stream_keys"))])
    finally:
        raw.close()
    assert len(stored) == 1 and stored[0][0] == key[:12]
    assert stored[0][1].startswith("v1.") and key[12:] not in stored[0][1]
    if migrated_url.startswith("sqlite"):
        file = Path(migrated_url.removeprefix("sqlite:///"))
        assert not any(key[12:].encode() in p.read_bytes() for p in file.parent.glob(file.name + "*"))

    assert db.transaction(lambda s: ev.event_for_stream_key(s, key).id) == created["id"]
    assert db.transaction(lambda s: ev.event_for_stream_key(s, key[:-1] + ("0" if key[-1] != "0" else "1"))) is None
    other = Database(migrated_url, stream_key_cipher=StreamKeyCipher("another server's secret"))
    try:
        assert other.transaction(lambda s: ev.event_for_stream_key(s, key)) is None  # a sealed key needs our secret
    finally:
        other.close()


def test_the_migration_seals_existing_keys(database_url: str) -> None:
    cipher = StreamKeyCipher("the server secret")
    migrations.upgrade(database_url)
    db = Database(database_url, stream_key_cipher=cipher)
    try:
        def setup(session: Any) -> tuple[str, int]:
            owner = User(username="prof", password_hash="x", display_name="Prof", role=Role.LECTURER)
            session.add(owner)
            session.flush()
            event = ev.create_event(session, owner, ev.EventCreate(title="Optics"))
            return ev.revealed_stream_key(session, event) or "", event.id

        key, event_id = db.transaction(setup)
        migrations.downgrade(database_url, "0007", stream_key_cipher=cipher)  # the catalog as it was: keys in clear
        assert db.transaction(lambda s: s.scalar(select(StreamKey.secret))) == key
        with pytest.raises(RuntimeError, match="live-server db upgrade"):
            migrations.upgrade(database_url)  # without the secret it cannot seal them, and says so
        migrations.upgrade(database_url, stream_key_cipher=cipher)
        assert db.transaction(lambda s: s.scalar(select(StreamKey.secret))).startswith("v1.")
        assert db.transaction(lambda s: ev.event_for_stream_key(s, key).id) == event_id
    finally:
        db.close()
