"""Rolling restart of an ingest node: it refuses new publishes and lets the current lecture finish."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
from sqlalchemy import select

from live_server.db import Database
from live_server.models import BroadcastSession, Event

from tests.ingest.live import wait_for
from tests.media import push_rtmp
from tests.processes import ServerProcess, base_env, cli, create_event, free_port


@pytest.fixture
def ingest_node(tmp_path: Path) -> Iterator[ServerProcess]:
    rtmp_port = free_port()
    env = base_env(tmp_path, role="both", rtmp_host="127.0.0.1", rtmp_port=rtmp_port, segment_seconds=1,
                   grace_period_seconds=30, ingest_drain_seconds=25)
    cli(env, "db", "upgrade")
    cli(env, "users", "create", "--username", "prof", "--role", "lecturer", "--password", "prof-password-1")
    server = ServerProcess(env, free_port(), tmp_path / "server.log", extra={"rtmp_port": rtmp_port})
    yield server
    server.stop()


async def _is_live(server: ServerProcess, slug: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/v1/events/{slug}") as resp:
        return resp.status == 200 and (await resp.json())["state"] == "live"


async def test_sigterm_drains_the_ingest_node(ingest_node: ServerProcess) -> None:
    env, rtmp = ingest_node.env, ingest_node.extra["rtmp_port"]
    lecture = create_event(env, "prof", "Running lecture")
    late = create_event(env, "prof", "Late lecture")
    await ingest_node.start()
    pusher = await push_rtmp(f"rtmp://127.0.0.1:{rtmp}/live/{lecture['stream']['stream_key']}", seconds=6)
    await wait_for(lambda: _is_live(ingest_node, lecture["slug"]), 15, "the lecture to be live")
    ingest_node.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    refused = await push_rtmp(f"rtmp://127.0.0.1:{rtmp}/live/{late['stream']['stream_key']}", seconds=2)
    assert await asyncio.wait_for(refused.wait(), 15) != 0  # the draining node takes no new publish ...
    assert pusher.returncode is None  # ... while the lecture still runs (refused by the drain, not a closed node)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0  # the running lecture was not cut
    # The event ends as soon as its publisher leaves (no 30 s grace while draining); then the node exits.
    assert await ingest_node.wait(timeout=20) == 0
    log = ingest_node.log.read_text()
    assert "draining" in log and "Traceback" not in log
    db = Database(f"sqlite:///{env['LIVE_DATA_DIR']}/live.db")
    try:
        states = db.transaction(lambda s: {e.slug: e.state.value for e in s.scalars(select(Event))})
        reasons = db.transaction(lambda s: [b.end_reason for b in s.scalars(select(BroadcastSession))])
    finally:
        db.close()
    assert states == {lecture["slug"]: "ended", late["slug"]: "scheduled"}
    assert len(reasons) == 1 and "server" not in reasons[0]  # ended by the publisher, not cut by shutdown
    media = Path(env["LIVE_MEDIA_DIR"]) / "live" / str(lecture["id"])
    live_playlist = next(media.glob("*/source/live.m3u8")).read_text()
    assert live_playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert not (Path(env["LIVE_MEDIA_DIR"]) / "live" / str(late["id"])).exists()
