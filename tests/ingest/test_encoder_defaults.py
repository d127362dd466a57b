"""Encoders as people leave them: default keyframe intervals (10 s, 20 s) go live and play.

ffmpeg's libx264 and GStreamer's ``x264enc`` both default to a keyframe every 250 frames (10 s at
25 fps). Segments cannot be shorter than that, so they are 10 s long: the event must go live at
the first of them, stay live, advertise one TARGETDURATION for the whole playlist, and tell the
lecturer what to change. Media is pushed faster than real time (``-readrate``): what is measured
(keyframe intervals, segment durations) is media time, not wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest.live import LIVE
from ingest.rtmp.server import RTMP
from tests.ingest.live import BOTH_PACKAGERS, SEGMENT, Live, event_state_is, wait_for
from tests.ingest.rtmp.rtmp_captures import AAC_SEQ, AVC_SEQ, metadata_message, publish_preamble, raw_chunks
from tests.media import FFMPEG, count_video_frames, push_with_defaults

pytestmark = pytest.mark.slow


def strict_decode(playlist: Path) -> str:
    """Decode a whole playlist, stopping at the first error; corrupt packets are dropped and logged."""
    out = subprocess.run(
        [FFMPEG, "-v", "warning", "-xerror", "-fflags", "+discardcorrupt", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )
    return out.stderr if out.returncode != 0 else "\n".join(
        line for line in out.stderr.splitlines() if "corrupt" in line.lower() or "error" in line.lower())


class PlaylistWatcher:
    """Reads an event's live playlist over HTTP while it runs: every TARGETDURATION a player saw."""

    def __init__(self, live: Live, slug: str) -> None:
        self.live, self.slug = live, slug
        self.targets: list[int] = []
        self.health: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self, event_id: int) -> None:
        while True:
            resp = await self.live.client.get(f"/live/{self.slug}/source/live.m3u8")
            if resp.status == 200:
                self.targets += [int(t) for t in re.findall(r"#EXT-X-TARGETDURATION:(\d+)", await resp.text())]
            health = (await self.live.event(event_id))["stream"].get("health")
            if health and health.get("publishing"):
                self.health.append(health)
            await asyncio.sleep(0.2)

    def start(self, event_id: int) -> None:
        self._task = asyncio.create_task(self._run(event_id))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def dvr_durations(folder: Path) -> tuple[int, list[float]]:
    text = (folder / "source" / "dvr.m3u8").read_text()
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    return target, [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text)]


def hung_kills(packager: Any) -> int:
    """ffmpeg's watchdog kills; the LL packager runs no process, so it has none to kill."""
    return int(getattr(packager, "hung_kills", 0))


async def test_ffmpeg_without_g_goes_live_at_its_first_segment_and_plays(live: Live) -> None:
    """libx264 defaults at 25 fps: a keyframe every 10 s. Live at the first 10 s segment, playable."""
    event = await live.create_event(dvr=True)
    watcher = PlaylistWatcher(live, event["slug"])
    watcher.start(event["id"])
    pusher = await push_with_defaults(live.publish_url(event), seconds=21)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "the event to go live")
        packager = live.app[LIVE].events[event["id"]].packager
        assert 1 <= packager.segments <= 2  # live at its first segment (a second may follow meanwhile)
        assert await asyncio.wait_for(pusher.wait(), 30) == 0
    finally:
        await watcher.stop()
    live_event = live.app[LIVE].events.get(event["id"])
    assert live_event is not None and hung_kills(live_event.packager) == 0 and live_event.packager.restarts == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")

    target, durations = dvr_durations(live.folder(event["id"]))
    assert [round(d) for d in durations] == [10, 10, 1], durations
    assert target == 10 and set(watcher.targets) == {10}, watcher.targets  # decided once, never changed
    folder = live.folder(event["id"])
    assert strict_decode(folder / "source" / "dvr.m3u8") == ""
    assert count_video_frames(folder / "source" / "dvr.m3u8") == 21 * 25

    # The lecturer sees the measured interval and what to set instead.
    health = watcher.health[-1]
    assert health["keyframe_interval_seconds"] == pytest.approx(10.0, abs=0.05)
    assert health["recommended_keyframe_interval_seconds"] == SEGMENT
    assert health["recommendation"] == f"set the keyframe interval to {SEGMENT:g} s for lower delay"
    assert all(h["healthy"] for h in watcher.health), [h for h in watcher.health if not h["healthy"]]


async def test_a_20_second_keyframe_interval_goes_live_and_stays_live(live: Live) -> None:
    event = await live.create_event(dvr=True)
    watcher = PlaylistWatcher(live, event["slug"])
    watcher.start(event["id"])
    pusher = await push_with_defaults(live.publish_url(event), seconds=25, fps=10, readrate=5.0, keyframe_frames=200)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "the event to go live")
        assert await asyncio.wait_for(pusher.wait(), 30) == 0
    finally:
        await watcher.stop()
    packager = live.app[LIVE].events[event["id"]].packager
    assert hung_kills(packager) == 0 and packager.restarts == 0 and packager.failed_reason is None
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")
    target, durations = dvr_durations(live.folder(event["id"]))
    assert [round(d) for d in durations] == [20, 5], durations
    assert target == 20 and set(watcher.targets) == {20}, watcher.targets
    assert strict_decode(live.folder(event["id"]) / "source" / "dvr.m3u8") == ""


def gstreamer_pipeline(url: str, seconds: int, fps: int = 25) -> list[str]:
    """GStreamer as a lecture-hall box would run it: x264enc and voaacenc with their defaults."""
    audio_buffers = seconds * 44100 // 1024 + 1
    return [
        "gst-launch-1.0", "-q", "-e",
        "flvmux", "name=mux", "streamable=true", "!", "rtmp2sink", f"location={url}", "sync=false",
        "videotestsrc", f"num-buffers={seconds * fps}", "!",
        f"video/x-raw,width=160,height=120,framerate={fps}/1", "!", "x264enc", "!", "h264parse", "!", "mux.",
        "audiotestsrc", f"num-buffers={audio_buffers}", "!", "audio/x-raw,rate=44100,channels=1", "!",
        "voaacenc", "!", "aacparse", "!", "mux.",
    ]


async def test_gstreamer_x264enc_with_its_defaults_goes_live(live: Live) -> None:
    """``x264enc`` without ``key-int-max`` (x264's 250 frames) through ``flvmux ! rtmp2sink``.

    The sink does not wait for the clock (``sync=false``, the pacing, not an encoder setting):
    the media is timestamped at 25 fps and pushed in a second or two.
    """
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("gst-launch-1.0 is missing (Debian gstreamer1.0-tools, see SYSTEM_PACKAGES)")
    event = await live.create_event(dvr=True)
    pusher = await asyncio.create_subprocess_exec(
        *gstreamer_pipeline(live.publish_url(event), seconds=21),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live")
    _, stderr = await asyncio.wait_for(pusher.communicate(), 60)
    assert pusher.returncode == 0, stderr.decode(errors="replace")
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end of the event")
    target, durations = dvr_durations(live.folder(event["id"]))
    assert [round(d) for d in durations[:-1]] == [10, 10], durations
    assert target == 10
    folder = live.folder(event["id"])
    assert strict_decode(folder / "source" / "dvr.m3u8") == ""
    assert count_video_frames(folder / "source" / "dvr.m3u8") == 21 * 25


@BOTH_PACKAGERS
@pytest.mark.live_settings(grace_period_seconds=3)  # the reconnect must land within it on a loaded machine too
async def test_dvr_with_a_reconnect_decodes_without_corrupt_packets(live: Live, packaging: str) -> None:
    """ffmpeg reads the whole DVR playlist as one stream with ``-xerror`` and drops nothing: plain HLS's
    MPEG-TS continuity counters run on across segments and across the reconnect's discontinuity (joined across
    ffmpeg processes by us), and LL-HLS's fMP4 segments decode across it too."""
    event = await live.create_event(dvr=True)
    for _ in range(2):
        pusher = await push_with_defaults(live.publish_url(event), seconds=5, fps=10, readrate=4.0, keyframe_frames=10)
        assert await asyncio.wait_for(pusher.wait(), 30) == 0
        await asyncio.sleep(0.5)
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")
    dvr = live.folder(event["id"]) / "source" / "dvr.m3u8"
    assert dvr.read_text().count("#EXT-X-DISCONTINUITY\n") == 1
    assert strict_decode(dvr) == ""
    assert count_video_frames(dvr) == 100


async def test_a_publisher_that_sends_no_media_starts_no_packager(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """A real RTMP client that connects, publishes, sends metadata and codec headers, then nothing."""
    caplog.set_level(logging.INFO)
    event = await live.create_event()
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", live.app[RTMP].port))
    try:
        preamble = publish_preamble(key=event["stream"]["stream_key"])
        headers = (metadata_message() + raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=0, msid=1)
                   + raw_chunks(0, 4, AAC_SEQ, type_id=8, ts=0, msid=1))
        await loop.run_in_executor(None, sock.sendall, preamble + headers)

        async def publishing() -> bool:
            health = (await live.event(event["id"]))["stream"].get("health")
            return bool(health and health["publishing"])
        await wait_for(publishing, 5, "the publish to be accepted")
        await asyncio.sleep(1.5)
        packager = live.app[LIVE].events[event["id"]].packager
        assert getattr(packager, "pid", None) is None  # no media, no ffmpeg (the LL packager never has one)
        assert packager.segments == 0
    finally:
        sock.close()
    await wait_for(lambda: _gone(live, event["id"]), 10, "the event's run to end after the grace period")
    assert (await live.event(event["id"]))["state"] == "scheduled"  # it never went live
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "accepted" in logged
    assert "ffmpeg" not in logged and "codec parameters" not in logged, logged


async def _gone(live: Live, event_id: int) -> bool:
    return event_id not in live.app[LIVE].events
