"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from live_server.security import StreamKeyCipher, load_or_create_secret_key
from live_server.settings import Settings

#: The suite runs what users get: LL-HLS, ``ll_hls``'s default. ``LIVE_TEST_PLAIN_HLS=true`` runs it on plain
#: HLS instead (MPEG-TS from ffmpeg's segmenter): every app (``make_settings``) and server process
#: (``tests.processes.base_env``) the tests start gets ``ll_hls = false``, unless a test sets ``ll_hls`` itself
#: (the tests about one path or the other pin it). Read, not taken out of the environment: pytest-xdist starts
#: its workers after the controller has imported this, and they must see it too. No app under test reads it:
#: ``make_settings`` loads with ``environ={}``, and server processes and the in-process CLI get only the
#: ``LIVE_*`` variables a test names.
PLAIN_HLS = os.environ.get("LIVE_TEST_PLAIN_HLS", "").lower() == "true"


def hls_mode() -> dict[str, Any]:
    """The settings that pin this run's HLS mode, for code that builds settings: empty in the default run."""
    return {"ll_hls": False} if PLAIN_HLS else {}


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str


async def login(client: Any, account: Account) -> str:
    """Log a test client in through the API; returns the CSRF token for later writes."""
    resp = await client.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf_token"]


def stream_key_cipher(settings: Settings) -> StreamKeyCipher:
    """What the app seals stream keys with for these settings (a test's own Database must use the same)."""
    return StreamKeyCipher(load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir))


def fill_disk_under(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """From now on, files created under ``folder`` the way every playlist and journal is written
    (``tempfile.mkstemp`` then rename) fail with ENOSPC, as on a full disk; other folders are unaffected."""
    folder = folder.resolve()
    real_mkstemp = tempfile.mkstemp

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        where = kwargs.get("dir", args[2] if len(args) > 2 else None)
        if where is not None and Path(where).resolve().is_relative_to(folder):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)


IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(what: str, reason: str) -> None:
    """Skip with a visible reason locally; under CI a missing service is a failure."""
    message = f"{what} not reachable ({reason})"
    if IN_CI:
        pytest.fail(message + " and CI=true", pytrace=False)
    pytest.skip(message)


#: The xdist group of the tests that must keep up with real time (live captions): one after another on one
#: worker (``SERIAL_GROUPS`` in tests/conftest.py; other tests join with ``@pytest.mark.xdist_group(REALTIME_SPEECH)``).
REALTIME_SPEECH = "realtime-speech"
