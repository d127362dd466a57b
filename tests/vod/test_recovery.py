"""Kill the server process mid-stream and start it again: the recording is finalised from disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from recorder.storage import RecordingFiles
from tests.ingest.live import wait_for
from tests.media import FAST, count_video_frames, decode_errors, push_rtmp, stop
from tests.processes import cli
from tests.support import hls_mode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "live_server.cli", "run", "--host", "127.0.0.1",
                                                "--port", str(port), env=env, stdin=asyncio.subprocess.DEVNULL)

    async def healthy() -> bool:
        assert proc.returncode is None, "the server exited"
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(healthy, 30, "the server to start")
    return proc


async def test_recording_left_by_a_killed_server_is_recovered_at_start(tmp_path: Path) -> None:
    port, rtmp_port = _free_port(), _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LIVE_DATA_DIR": str(tmp_path), "LIVE_MEDIA_DIR": str(tmp_path / "media"),
        "LIVE_RTMP_HOST": "127.0.0.1", "LIVE_RTMP_PORT": str(rtmp_port), "LIVE_SEGMENT_SECONDS": "1",
        "LIVE_GRACE_PERIOD_SECONDS": "2", "LIVE_LOG_LEVEL": "WARNING",
        **{f"LIVE_{name.upper()}": str(value).lower() for name, value in hls_mode().items()},  # the run's HLS mode
    }
    # The operator's set-up commands, run in this process (``tests.processes.cli``); the server is a real process.
    cli(env, "db", "upgrade")
    cli(env, "users", "create", "--username", "prof", "--role", "lecturer", "--password", "prof-password")
    event: dict[str, Any] = json.loads(cli(env, "events", "create", "--title", "Crash course", "--owner", "prof", "--json"))
    server = await _start(env, port)
    pusher = await push_rtmp(f"rtmp://127.0.0.1:{rtmp_port}/live/{event['stream']['stream_key']}", seconds=30,
                            readrate=FAST)
    folders = tmp_path / "media" / "recordings" / str(event["id"])

    async def recorded_segments() -> int:
        runs = list(folders.iterdir()) if folders.exists() else []
        return len(RecordingFiles(runs[0]).journal_segments()) if runs else 0

    try:
        await wait_for(lambda: _at_least(recorded_segments, 4), 20, "a few recorded segments")
        server.send_signal(signal.SIGKILL)  # no shutdown: the recording stays in "recording"
        await server.wait()
    finally:
        await stop(pusher)
    on_disk = await recorded_segments()

    server = await _start(env, port)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/v1/recordings?event={event['id']}") as resp:
                [recording] = (await resp.json())["recordings"]
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 30)
    assert recording["state"] == "ready"
    [folder] = list(folders.iterdir())
    vod = (folder / "vod.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod and vod.rstrip().endswith("#EXT-X-ENDLIST")
    assert vod.count("#EXTINF") == on_disk  # everything that reached disk, nothing less
    assert abs(recording["duration_seconds"] - on_disk) <= 0.5
    assert count_video_frames(folder / "vod.m3u8") >= on_disk * 10 - 2  # 10 fps
    assert decode_errors(folder / "vod.m3u8") == ""


async def _at_least(counter: Any, n: int) -> bool:
    return await counter() >= n
