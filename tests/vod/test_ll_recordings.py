"""Recordings of LL-HLS runs (``ll_hls`` and ``recording_enabled`` both on): the fMP4 segments live viewers
got become the replay and the MP4 download, with no re-mux step at the end of the live.

ffmpeg pushes RTMP faster than real time (time is not the subject); ffmpeg reads the replay over HTTP as a
player that knows nothing of us, hls.js plays it in Chromium across a reconnect that changed the picture size.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from typing import Any

import av
import pytest

from tests.ingest.live import LONG_GRACE, Live, event_state_is, wait_for
from tests.media import FAST, FFMPEG, push_rtmp
from tests.vod.recordings import folder_of, recordings_of

LL = pytest.mark.live_settings(ll_hls=True, recording_enabled=True)


async def _read_over_http(url: str) -> tuple[int, float, str]:
    """(video packets, seconds they span, ffmpeg's complaints) of a playlist read through HTTP, stream copy."""
    reader = await asyncio.create_subprocess_exec(
        FFMPEG, "-v", "error", "-i", url, "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(reader.communicate(), 60)
    assert reader.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    timebase = next(line.split()[-1] for line in lines if line.startswith("#tb 0:"))
    num, den = (int(x) for x in timebase.split("/"))
    packets = [[int(x) for x in line.split(",")[1:4]] for line in lines if line and not line.startswith("#")]
    span = (max(pts + duration for _, pts, duration in packets) - min(pts for _, pts, _ in packets)) * num / den
    return len(packets), span, err.decode()


def _strict_decode(path: Any) -> str:
    out = subprocess.run([FFMPEG, "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    return out.stderr if out.returncode == 0 else out.stderr or f"exit {out.returncode}"


@LL
async def test_an_ll_hls_run_is_live_then_ready_replayed_over_http_and_downloaded(live: Live) -> None:
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), frames=60, readrate=FAST)  # 6 s of media, 10 fps, 1 s GOP
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")

    async def ll_playlist() -> str | None:
        resp = await live.client.get(f"/live/{event['slug']}/source/live.m3u8")
        text = await resp.text()
        return text if resp.status == 200 and "#EXT-X-PART:" in text else None

    text = await wait_for(ll_playlist, 10, "the LL-HLS playlist")
    assert '#EXT-X-MAP:URI="init_1.mp4"' in text and "CAN-BLOCK-RELOAD=YES" in text  # live viewers get LL-HLS
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")

    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready" and recording["discontinuities"] == 0  # ready when the event reads ended
    assert recording["duration_seconds"] == pytest.approx(6.0, abs=0.15), recording
    folder = folder_of(live, recording)
    vod = (folder / "vod.m3u8").read_text()
    assert vod.startswith("#EXTM3U\n#EXT-X-VERSION:6\n") and "#EXT-X-PLAYLIST-TYPE:VOD" in vod
    assert vod.count('#EXT-X-MAP:URI="init_1.mp4"') == 1 and "#EXT-X-PART" not in vod
    segments = re.findall(r"^(seg_\d+\.m4s)$", vod, re.M)
    assert len(segments) >= 5
    # The live run's own files: hard links, no copy and no re-mux.
    live_folder = live.folder(event["id"]) / "source"
    assert (folder / segments[0]).stat().st_ino == (live_folder / segments[0]).stat().st_ino

    frames, span, err = await _read_over_http(str(live.client.make_url(f"/vod/{recording['id']}/master.m3u8")))
    print(f"replay over HTTP: {frames} video packets spanning {span:.3f} s")
    assert (frames, err) == (60, "") and span == pytest.approx(6.0, abs=0.15)

    mp4 = await live.client.get(f"/api/v1/recordings/{recording['id']}/download.mp4")
    assert mp4.status == 200 and mp4.headers["Content-Type"] == "video/mp4"
    saved = folder.parent / "saved.mp4"
    saved.write_bytes(await mp4.read())
    assert _strict_decode(saved) == ""
    assert not list(folder.glob(".remux-*"))  # the remux's inputs are gone


@pytest.mark.live_settings(ll_hls=True, recording_enabled=True, grace_period_seconds=LONG_GRACE)
async def test_a_reconnect_with_another_picture_size_replays_in_hls_js_with_its_own_init(live: Live, browser: Any) -> None:
    event = await live.create_event()
    url = live.publish_url(event)
    first = await push_rtmp(url, frames=30, readrate=FAST)  # 3 s at 160x120
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    assert await asyncio.wait_for(first.wait(), 20) == 0
    second = await push_rtmp(url, frames=30, readrate=FAST, size="320x240")  # the encoder came back, reconfigured
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end of the event")

    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready" and recording["discontinuities"] == 1
    folder = folder_of(live, recording)
    vod = (folder / "vod.m3u8").read_text()
    assert vod.count("#EXT-X-MAP:") == 2 and '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init_2.mp4"\n' in vod
    second_start = sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),\n(?=(?:.*\n)*?#EXT-X-DISCONTINUITY)", vod))
    assert second_start == pytest.approx(3.0, abs=0.15)

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/recordings/{recording['id']}")))
    await page.evaluate("() => { const v = document.getElementById('replay'); v.muted = true; v.play(); }")
    await page.wait_for_function(
        "() => { const v = document.getElementById('replay'); return v.readyState >= 3 && v.currentTime > 0.5; }",
        timeout=20_000)
    assert await page.evaluate("document.getElementById('replay').videoWidth") == 160
    await page.evaluate(f"() => {{ document.getElementById('replay').currentTime = {second_start + 0.5}; }}")
    await page.wait_for_function(
        f"() => {{ const v = document.getElementById('replay'); return v.readyState >= 3 && v.currentTime > {second_start + 1.2}"
        " && v.videoWidth === 320; }", timeout=20_000)
    duration = await page.evaluate("document.getElementById('replay').duration")
    # The whole recording, give or take the audio an encoder sends after its last video frame (-frames:v).
    assert recording["duration_seconds"] - 0.2 < duration < recording["duration_seconds"] + 0.5
    assert errors == []

    mp4 = await live.client.get(f"/api/v1/recordings/{recording['id']}/download.mp4")
    saved = folder.parent / "saved.mp4"
    saved.write_bytes(await mp4.read())
    assert mp4.status == 200 and _strict_decode(saved) == ""  # both picture sizes, one sample description each


@pytest.mark.live_settings(ll_hls=True, recording_enabled=True, grace_period_seconds=LONG_GRACE)
async def test_a_reconnect_at_another_audio_sample_rate_downloads_at_the_right_duration(live: Live) -> None:
    """44.1 kHz, then the encoder comes back at 48 kHz: the MP4 lasts what the media lasts (it ran 9.8 s for
    9 s when the second piece's AAC was copied into a track declared 44.1 kHz)."""
    event = await live.create_event()
    url = live.publish_url(event)
    first = await push_rtmp(url, seconds=4.5, readrate=FAST)  # 4.5 s of each stream, AAC at 44.1 kHz
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    assert await asyncio.wait_for(first.wait(), 20) == 0
    second = await push_rtmp(url, seconds=4.5, readrate=FAST, sample_rate=48000)
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end of the event")

    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready" and recording["discontinuities"] == 1
    assert recording["duration_seconds"] == pytest.approx(9.0, abs=0.2), recording
    mp4 = await live.client.get(f"/api/v1/recordings/{recording['id']}/download.mp4")
    assert mp4.status == 200
    saved = folder_of(live, recording).parent / "saved.mp4"
    saved.write_bytes(await mp4.read())
    assert _strict_decode(saved) == ""
    with av.open(str(saved)) as container:  # libavformat, as ffprobe reads it
        assert container.duration is not None
        duration = container.duration / 1_000_000
        streams = {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration is not None}
        rate = container.streams.audio[0].sample_rate
    print(f"MP4 of a 44.1 -> 48 kHz recording: {duration:.3f} s, streams {streams}, audio at {rate} Hz")
    assert duration == pytest.approx(recording["duration_seconds"], abs=0.2)
    assert streams["audio"] == pytest.approx(streams["video"], abs=0.2) and rate == 48000
    assert not list(folder_of(live, recording).glob(".*piece*")) and not list(saved.parent.glob(".*piece*"))
