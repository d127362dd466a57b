"""Fixtures for ingest tests: a running app with RTMP on a free port, and a logged-in lecturer."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from live_server import accounts
from live_server.app import create_app
from live_server.db import DB
from ingest.rtmp.server import RTMP
from live_server.layout import event_live_folder
from live_server.settings import Settings
from tests.support import Account, login

SEGMENT = 1.0
#: The ``live`` fixture's grace period: short, as most tests only wait it out after the publisher has gone.
GRACE = 1.0
#: For the tests about the grace period itself (a publisher reconnecting within it): room for a loaded machine.
LONG_GRACE = 2.5
#: ``LIVE_TEST_LL_HLS=true`` runs every ``live`` test with ``ll_hls`` on (LL-HLS packaging of passthrough
#: events, fMP4 recordings) unless the test sets it: the same tests, both ways, until it is the default.
#: Taken out of the environment once read: every ``LIVE_*`` variable is a setting to the app, so the CLI
#: (run in process by the tests) and the server processes the tests start refused it as unknown.
LL_HLS = os.environ.pop("LIVE_TEST_LL_HLS", "").lower() == "true"


@dataclass
class Live:
    client: Any
    app: Any
    settings: Settings
    lecturer: Account
    csrf: str

    @property
    def rtmp_base(self) -> str:
        return f"rtmp://127.0.0.1:{self.app[RTMP].port}/live"

    async def create_event(self, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/events", json={"title": "Lecture", **fields}, headers={"X-CSRF-Token": self.csrf})
        assert resp.status == 201, await resp.text()
        return await resp.json()

    @property
    def segment_suffix(self) -> str:
        """What the live segments (and so the recordings' segments) end with: fMP4 with LL-HLS, else MPEG-TS."""
        return ".m4s" if self.settings.ll_hls else ".ts"

    def publish_url(self, event: dict[str, Any]) -> str:
        """The owner's publish URL, with the port the test server really bound (settings say 0)."""
        return f"{self.rtmp_base}/{event['stream']['stream_key']}"

    async def event(self, ref: Any) -> dict[str, Any]:
        return await (await self.client.get(f"/api/v1/events/{ref}")).json()

    def folder(self, event_id: int) -> Path:
        runs = sorted(event_live_folder(self.settings.media_dir, event_id).iterdir())
        return runs[-1]


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
async def live(request: pytest.FixtureRequest, aiohttp_client: Any, make_settings: Callable[..., Settings],
               migrated_sqlite: Callable[[str], str]) -> Live:
    """A running app; ``@pytest.mark.live_settings(name=value)`` overrides settings for one test."""
    url = migrated_sqlite("live.db")
    marker = request.node.get_closest_marker("live_settings")
    overrides = dict(marker.kwargs) if marker else {}
    settings = make_settings(**{
        "database_url": url, "rtmp_enabled": True, "rtmp_host": "127.0.0.1", "rtmp_port": 0,
        "segment_seconds": SEGMENT, "grace_period_seconds": GRACE, "live_window_segments": 3,
        "rtmp_idle_timeout_seconds": 5, "ll_hls": LL_HLS, **overrides,
    })
    app = create_app(settings)
    client = await aiohttp_client(app)
    user = app[DB].transaction(lambda s: accounts.create_user(s, "prof", "prof-password", "lecturer"))
    account = Account(user.id, "prof", "prof-password", "lecturer")
    return Live(client, app, settings, account, await login(client, account))


async def event_state_is(live: Live, event: dict[str, Any], state: str) -> bool:
    return (await live.event(event["id"]))["state"] == state
