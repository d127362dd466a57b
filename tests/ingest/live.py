"""A running app with RTMP on a free port and a logged-in lecturer (the ``live`` fixture, for tests of every
package that publish), and waiting for what it does."""

from __future__ import annotations

import asyncio
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


#: For a test of what each packager does on its own (the LL-HLS one, in process, and plain HLS's ffmpeg
#: supervisor): the test runs once with each, whatever the run's mode; its ``packaging`` argument says which.
BOTH_PACKAGERS = pytest.mark.parametrize("packaging", [
    pytest.param("ll", marks=pytest.mark.live_settings(ll_hls=True)),
    pytest.param("plain", marks=pytest.mark.live_settings(ll_hls=False)),
])


def live_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every ``live_settings`` marker of the test, merged: the closest wins a setting named twice (the
    test's own over its module's, a parameter's, a fixture's added marker)."""
    merged: dict[str, Any] = {}
    for marker in request.node.iter_markers("live_settings"):
        for name, value in marker.kwargs.items():
            merged.setdefault(name, value)
    return merged


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
    """A running app, LL-HLS unless the run is plain (``tests.support.PLAIN_HLS``);
    ``@pytest.mark.live_settings(name=value)`` overrides settings for one test (``ll_hls=False``: a test of plain HLS)."""
    url = migrated_sqlite("live.db")
    overrides = live_overrides(request)
    settings = make_settings(**{
        "database_url": url, "rtmp_enabled": True, "rtmp_host": "127.0.0.1", "rtmp_port": 0,
        "segment_seconds": SEGMENT, "grace_period_seconds": GRACE, "live_window_segments": 3,
        "rtmp_idle_timeout_seconds": 5, **overrides,
    })
    app = create_app(settings)
    client = await aiohttp_client(app)
    user = app[DB].transaction(lambda s: accounts.create_user(s, "prof", "prof-password", "lecturer"))
    account = Account(user.id, "prof", "prof-password", "lecturer")
    return Live(client, app, settings, account, await login(client, account))


async def event_state_is(live: Live, event: dict[str, Any], state: str) -> bool:
    return (await live.event(event["id"]))["state"] == state
