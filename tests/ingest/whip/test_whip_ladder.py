"""An ABR event published over WHIP by an encoder that scales up early, as a browser's does while it
probes the bandwidth: the ladder's rungs are those of its tallest picture of the first seconds
(``whip_ladder_settle_seconds``), not of its first, and they stay through a transcoder restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from formats.m3u8 import parse_master
from ingest.live import LIVE
from ingest.packaging.options import DEFAULT_LADDER, ladder_for_source
from tests.ingest.live import Live, event_state_is, wait_for
from tests.ingest.whip.ffmpeg_whip import WHIP_SETTINGS
from tests.media import FFMPEG, stop
from tests.support import REALTIME_SPEECH

# The ladder transcodes in real time: never beside live captioning.
pytestmark = pytest.mark.xdist_group(REALTIME_SPEECH)

FPS = 10


def growing_source(folder: Path, small_seconds: float, tall_seconds: float) -> Path:
    """H.264 (constrained baseline, as WebRTC senders make it) that is 320x240 for ``small_seconds``, then
    640x480 (a new SPS/PPS and an IDR where it scales up), with Opus, in Matroska. ffmpeg cannot change an
    encoder's size mid-stream, so two encodes are joined; the WHIP muxer sends the result as it is."""
    parts = []
    for size, seconds in (("320x240", small_seconds), ("640x480", tall_seconds)):
        part = folder / f"{size}.h264"
        subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
                        "-t", str(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast",
                        "-tune", "zerolatency", "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
                        "-pix_fmt", "yuv420p", "-bf", "0", "-f", "h264", str(part)], check=True, timeout=60)
        parts.append(part.read_bytes())
    joined = folder / "growing.h264"
    joined.write_bytes(b"".join(parts))
    source = folder / "growing.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "h264", "-framerate", str(FPS), "-i", str(joined),
                    "-f", "lavfi", "-t", str(small_seconds + tall_seconds), "-i", "sine=frequency=440:sample_rate=48000",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
                    "-b:a", "64k", str(source)], check=True, timeout=60)
    return source


async def push_whip_file(url: str, token: str, source: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "warning", "-re", "-i", str(source), "-c", "copy",
        "-f", "whip", "-authorization", token, url,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


def scalers(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        args = cmdline.read().split(b"\0")
    return re.findall(r"scale=-2:(\d+)", args[args.index(b"-filter_complex") + 1].decode())


@pytest.mark.parametrize("settle", [pytest.param(0.0, marks=pytest.mark.live_settings(whip_ladder_settle_seconds=0),
                                                  id="first-picture"),
                                     pytest.param(3.0, id="settled")])
@pytest.mark.live_settings(**WHIP_SETTINGS, ll_hls=True)
async def test_whip_ladder_has_the_rungs_of_the_tallest_early_picture(live: Live, tmp_path: Path, settle: float) -> None:
    """By default (``whip_ladder_settle_seconds`` 3) the transcoder starts once the 480-line picture is
    there, with the 480p and 240p rungs; without the wait (0), it would have only the 240p of the first."""
    assert live.settings.whip_ladder_settle_seconds == settle
    event = await live.create_event(abr=True, dvr=True)
    slug = event["slug"]
    first_picture = [r.name for r in ladder_for_source(DEFAULT_LADDER, 240)]  # 240p, audio
    expected = [r.name for r in ladder_for_source(DEFAULT_LADDER, 480)]  # 480p, 240p, audio
    source = growing_source(tmp_path, 1.0, 14.0)
    pusher = await push_whip_file(str(live.client.make_url("/whip")), event["stream"]["whip_bearer_token"], source)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live over WHIP")
        packager = live.app[LIVE].events[event["id"]].packager
        transcoder = packager.transcoder
        first = transcoder.pid
        assert first is not None
        if not settle:
            assert scalers(first) == ["240"] and packager.options.rendition_names == tuple(first_picture)
            return
        assert scalers(first) == ["480", "240"] and transcoder.tallest_height == 480

        async def listed() -> str | None:
            for name in expected:
                resp = await live.client.get(f"/live/{slug}/{name}/live.m3u8")
                if resp.status != 200 or not re.search(r"^seg_\d+\.m4s$", await resp.text(), re.M):
                    return None
            return await (await live.client.get(f"/live/{slug}/master.m3u8")).text()
        master = await wait_for(listed, 20, "segments in every rung")
        assert [v.uri for v in parse_master(master)] == [f"{name}/live.m3u8" for name in expected], master
        assert "RESOLUTION=640x480" in master

        # A crashed transcoder comes back with the same rungs; the master does not change.
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: _async(transcoder.pid not in (None, first)), 10, "the restarted transcoder")
        assert scalers(transcoder.pid) == ["480", "240"] and packager.restarts == 1
        segments = packager.segments
        await wait_for(lambda: _async(packager.segments >= segments + 2), 15, "segments after the restart")
        again = await (await live.client.get(f"/live/{slug}/master.m3u8")).text()
        assert [v.uri for v in parse_master(again)] == [f"{name}/live.m3u8" for name in expected], again
    finally:
        await stop(pusher)


async def _async(value: bool) -> bool:
    return value
