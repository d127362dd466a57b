"""Issue 17 (8): live DVR writes have the same disk guard as recordings; readiness reports the disk.

Free space is the real file system's. The floor (``recording_min_free_mb``) is set 3 GiB below
what is free when the test starts (the rest of a parallel suite writes to the same disk meanwhile: a
smaller margin was crossed by them before the test's own filler). The tests that fill the real disk
hold one lock across processes from before the floor is read until their filler is gone, so one
case's filler never crosses another case's floor whatever worker runs it; a 6 GiB file allocated in the media
folder (``posix_fallocate``: no data written) takes the disk below it, and deleting it frees the space again, as an operator
would. Playlist write errors are injected at the file-system boundary (``tempfile.mkstemp``, how
every playlist is written), as in test_end_on_full_disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Iterator
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from formats.m3u8 import parse_media_playlist
from ingest.live import LIVE
from tests.ingest.live import BOTH_PACKAGERS, Live, event_state_is, wait_for
from tests.media import FFMPEG, source_args, stop
from tests.support import fill_disk_under

MARGIN = 3 * 2**30


DISK_LOCK = Path("/tmp/live-server-tests-real-disk.lock")


@pytest.fixture
def real_disk_to_myself() -> Iterator[None]:
    """Serialise the tests that fill the real disk, across xdist workers and other checkouts."""
    with DISK_LOCK.open("a") as handle:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another test held {DISK_LOCK} for 10 minutes") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def floor_below_free(request: pytest.FixtureRequest, tmp_path: Path, real_disk_to_myself: None) -> int:
    free = shutil.disk_usage(tmp_path).free
    if free < 4 * MARGIN:
        pytest.skip("needs 12 GiB free on the test disk")
    floor_mb = (free - MARGIN) // 2**20
    request.node.add_marker(pytest.mark.live_settings(recording_min_free_mb=floor_mb))
    return floor_mb


async def push_fast(url: str, seconds: float) -> asyncio.subprocess.Process:
    """ffmpeg publishing at 4x real time: the test is about disk space, not timing."""
    args = source_args(seconds=seconds)
    assert args[0] == "-re"
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-readrate", "4", *args[1:], "-f", "flv", url,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


def playlist(folder: Path, name: str) -> tuple[int, list[str], str]:
    """(media sequence, segment names, text) of one of the run's media playlists."""
    try:
        text = (folder / "source" / name).read_text()
    except FileNotFoundError:
        return -1, [], ""
    found = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
    names = [segment.uri for segment in parse_media_playlist(text).playlist.segments] if text else []
    return (int(found.group(1)) if found else -1), names, text


async def health(live: Live, event: dict[str, Any]) -> dict[str, Any]:
    return (await live.event(event["id"]))["stream"]["health"] or {}


@BOTH_PACKAGERS  # each packager keeps its own DVR window and deletes its own segments
async def test_a_low_disk_keeps_the_stream_live_stops_the_dvr_and_recovers(floor_below_free: int, live: Live, packaging: str) -> None:
    event = await live.create_event()
    pusher = await push_fast(live.publish_url(event), seconds=80)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        folder = live.folder(event["id"])
        await wait_for(lambda: _true(len(playlist(folder, "dvr.m3u8")[1]) >= 8), 15, "a DVR of 8 segments")
        _, (first, *_), text = playlist(folder, "dvr.m3u8")
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text
        assert (await live.client.get("/readyz")).status == 200
        assert (await health(live, event))["disk_low"] is False

        filler = live.settings.media_dir / "filler.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, 2 * MARGIN)
        finally:
            os.close(fd)
        try:
            low = await wait_for(lambda: _if(health(live, event), lambda v: v["disk_low"]), 5, "disk_low")
            assert "almost full" in low["disk_message"], low
            ready = await live.client.get("/readyz")
            body = await ready.json()
            assert ready.status == 503 and body["checks"]["media_disk"].startswith("low:"), body
            assert "live_recording_disk_low 1.0" in await (await live.client.get("/metrics")).text()

            live_seq = playlist(folder, "live.m3u8")[0]
            # The DVR drops to the live window and what leaves it is deleted, DVR on or not.
            await wait_for(lambda: _true(len(playlist(folder, "dvr.m3u8")[1]) == 3
                                         and not (folder / "source" / first).exists()), 5, "the DVR to shrink")
            await wait_for(lambda: _true(playlist(folder, "live.m3u8")[0] >= live_seq + 4), 5, "the live stream to go on")
            sequence, names, text = playlist(folder, "dvr.m3u8")
            assert "PLAYLIST-TYPE:EVENT" not in text and names == playlist(folder, "live.m3u8")[1]
            on_disk = len(list((folder / "source").glob(f"seg_*{live.segment_suffix}")))
            assert on_disk <= 8, on_disk  # twice the live window, and the segment being written
            assert (await health(live, event))["recording_paused"] is True
        finally:
            filler.unlink()

        await wait_for(lambda: _if(health(live, event), lambda v: not v["disk_low"]), 5, "the disk to recover")
        await wait_for(lambda: _true(len(playlist(folder, "dvr.m3u8")[1]) >= 8), 10, "the DVR to grow again")
        sequence_after, _, text = playlist(folder, "dvr.m3u8")
        assert sequence_after >= sequence  # the DVR never goes back before what it had dropped
        assert (await live.client.get("/readyz")).status == 200
        assert "live_recording_disk_low 0.0" in await (await live.client.get("/metrics")).text()
        await wait_for(lambda: _if(health(live, event), lambda v: v["recording_paused"] is False), 5, "recording resumed")
    finally:
        await stop(pusher)
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    recordings = (await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json())["recordings"]
    assert [(r["state"], r["discontinuities"] >= 1) for r in recordings] == [("ready", True)], recordings  # the paused gap


@BOTH_PACKAGERS  # each packager writes its own playlists and counts its own failures
async def test_a_playlist_write_error_does_not_stop_the_packager(live: Live, monkeypatch: pytest.MonkeyPatch, packaging: str) -> None:
    event = await live.create_event(dvr=False)
    pusher = await push_fast(live.publish_url(event), seconds=80)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        folder = live.folder(event["id"])
        packager = live.app[LIVE].events[event["id"]].packager
        pid = getattr(packager, "pid", None)  # the LL packager runs no process
        assert (pid is None) == (packaging == "ll")
        fill_disk_under(monkeypatch, live.settings.media_dir)
        listed = packager.segments
        await wait_for(lambda: _true(packager.segments >= listed + 3), 5, "segments listed while writes fail")
        frozen = playlist(folder, "live.m3u8")[0]
        monkeypatch.undo()
        await wait_for(lambda: _true(playlist(folder, "live.m3u8")[0] > frozen), 5, "playlists written again")
        state = await health(live, event)
        assert state["playlist_write_errors"] >= 3 and state["packager_restarts"] == 0 and not state["packager_failed"]
        assert getattr(packager, "pid", None) == pid  # the same ffmpeg: the supervisor never noticed
        metrics = await (await live.client.get("/metrics")).text()
        assert re.search(r"^live_media_write_errors_total [1-9]", metrics, re.M), metrics
    finally:
        await stop(pusher)


async def _true(value: bool) -> bool:
    return value


async def _if(awaitable: Any, predicate: Any) -> Any:
    value = await awaitable
    return value if predicate(value) else None
