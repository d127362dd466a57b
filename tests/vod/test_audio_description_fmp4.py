"""Audio description of an LL-HLS (fMP4) recording end to end: a live run pushed over RTMP and recorded, the
description spoken by espeak-ng and mixed by ffmpeg, cut by us into fMP4 audio fragments; the recording's muxed
segments split into a video-only variant and the programme's own audio rendition (hls.js cannot switch a muxed
fMP4 variant to alternate audio). Read back over HTTP as a player does, decoded strictly by ffmpeg, measured
window by window, trimmed, switched in hls.js (Chromium), removed and deleted."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from formats.cmaf import track_starts
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401 (fixture)
from tests.media import FAST, FFMPEG
from tests.vod.describing import (
    DESCRIPTIONS, TONE_HZ, assert_described, describe, levels, settled, tone_audio,
    pick_description_with_keyboard,
)
from tests.vod.recordings import folder_of, recordings_of

pytestmark = [pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make system-deps)"),
              pytest.mark.live_settings(ll_hls=True, recording_enabled=True)]

SECONDS = 8


async def recorded(live: Live, seconds: int = SECONDS) -> dict[str, Any]:
    """An LL-HLS run of a test pattern with a steady tone (away from the voice's energy, as in the MPEG-TS test),
    pushed at 4x real time, and its recording once ready."""
    event = await live.create_event()
    pusher = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-readrate", str(FAST),
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
        "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=44100,volume=0.5",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", "20", "-keyint_min", "20", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
        "-b:a", "96k", "-t", str(seconds), "-f", "flv", live.publish_url(event),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(pusher.communicate(), 60)
    assert pusher.returncode == 0, err.decode()
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end of the event")
    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready", recording
    return recording


def _durations(playlist: str) -> list[float]:
    return [float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", playlist)]


def _files(playlist: str) -> tuple[list[str], list[str]]:
    """(init sections, segments) a playlist names, in order."""
    return re.findall(r'#EXT-X-MAP:URI="([^"]+)"', playlist), re.findall(r"^([^#\s][^\s]*)$", playlist, re.M)


async def _get(live: Live, rid: int, name: str) -> bytes:
    resp = await live.client.get(f"/vod/{rid}/{name}")
    assert resp.status == 200, (name, resp.status)
    return await resp.read()


async def _rendition(live: Live, rid: int, playlist: str, target: Path) -> tuple[str, bytes, list[bytes]]:
    """A rendition fetched over HTTP: its playlist, init section and segments; written joined to ``target``."""
    text = (await _get(live, rid, playlist)).decode()
    [init_name], names = _files(text)
    init = await _get(live, rid, init_name)
    segments = [await _get(live, rid, name) for name in names]
    target.write_bytes(init + b"".join(segments))
    return text, init, segments


def _streams(path: Path) -> list[str]:
    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return re.findall(r"Stream #0:\d+[^:]*: (Video|Audio):", out)


def _strict_decode(path: Path) -> str:
    out = subprocess.run([FFMPEG, "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    return out.stderr if out.returncode == 0 else out.stderr or f"exit {out.returncode}"


async def test_an_fmp4_recording_gets_a_described_rendition_beside_its_split_tracks_trimmed_together(
        live: Live, tmp_path: Path) -> None:
    recording = await recorded(live)
    rid = recording["id"]
    folder = folder_of(live, recording)
    view = await (await live.client.get(f"/vod/{rid}/vod.m3u8")).text()
    assert "#EXT-X-MAP:" in view and ".m4s" in view  # an fMP4 recording
    before = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    assert "TYPE=AUDIO" not in before and "vod.m3u8" in before.splitlines()  # without a description: as it was
    assert (await live.client.get(f"/vod/{rid}/video.m3u8")).status == 404

    asked = time.monotonic()
    resp = await describe(live, rid)
    assert resp.status == 202, await resp.text()
    track = await settled(live, rid)
    print(f"an {SECONDS} s fMP4 recording with two descriptions described in {time.monotonic() - asked:.1f} s")
    assert track["state"] == "ready", track

    master = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    audio = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(audio) == 2, master
    original = next(line for line in audio if "DEFAULT=YES" in line)
    described = next(line for line in audio if "DEFAULT=NO" in line)
    assert 'URI="audio.m3u8"' in original and 'NAME="Original audio"' in original  # the programme's own rendition
    assert 'CHARACTERISTICS="public.accessibility.describes-video"' in described and 'URI="ad-en.m3u8"' in described
    variants = [line for line in master.splitlines() if line and not line.startswith("#")]
    assert variants == ["video.m3u8"], master  # the variant is video only
    assert all('AUDIO="aud"' in line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))

    video_text, video_init, video_segments = await _rendition(live, rid, "video.m3u8", tmp_path / "video.mp4")
    audio_text, audio_init, audio_segments = await _rendition(live, rid, "audio.m3u8", tmp_path / "audio.mp4")
    ad_text, ad_init, ad_segments = await _rendition(live, rid, "ad-en.m3u8", tmp_path / "described.mp4")
    assert _durations(video_text) == _durations(audio_text) == _durations(ad_text) == _durations(view)
    assert len(_durations(view)) >= 3
    assert _streams(tmp_path / "video.mp4") == ["Video"]
    assert _streams(tmp_path / "audio.mp4") == ["Audio"] and _streams(tmp_path / "described.mp4") == ["Audio"]
    for name in ("video.mp4", "audio.mp4", "described.mp4"):
        assert _strict_decode(tmp_path / name) == "", name

    # Each described fragment starts where the programme's audio of its segment starts (within an AAC frame),
    # and where its video segment starts (the muxer's audio leads a part by less than a frame too).
    for video, programme, ad in zip(video_segments, audio_segments, ad_segments):
        (v_time, v_scale), = track_starts(video_init, video).values()
        (p_time, p_scale), = track_starts(audio_init, programme).values()
        (a_time, a_scale), = track_starts(ad_init, ad).values()
        assert p_scale == a_scale and abs(a_time - p_time) <= 1024, (p_time, a_time)
        assert abs(a_time / a_scale - v_time / v_scale) < 0.05, (a_time / a_scale, v_time / v_scale)

    # Loudness on the video's clock: louder where a description is spoken, the programme ducked under it,
    # as it was elsewhere.
    zero = track_starts(video_init, video_segments[0])[b"vide"][0] / 90_000
    shift = lambda series: [(t - zero, v) for t, v in series]  # noqa: E731
    before_all, after_all = shift(levels([tmp_path / "audio.mp4"], False)), shift(levels([tmp_path / "described.mp4"], False))
    before_tone = shift(levels([tmp_path / "audio.mp4"], True))
    after_tone = shift(levels([tmp_path / "described.mp4"], True))
    assert_described(before_all, after_all, before_tone, after_tone, "fMP4 description")

    # Only listed names are served: an unlisted split name or another playlist is not.
    assert (await live.client.get(f"/vod/{rid}/video-seg_999999.m4s")).status == 404
    assert (await live.client.get(f"/vod/{rid}/video-vod.m3u8")).status == 404

    # A trim: the three renditions follow the view, segment for segment; cut files are no longer served.
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"trim_start": 2.5}, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200, await resp.text()
    trimmed = await (await live.client.get(f"/vod/{rid}/vod.m3u8")).text()
    renditions = {name: await (await live.client.get(f"/vod/{rid}/{name}")).text()
                  for name in ("video.m3u8", "audio.m3u8", "ad-en.m3u8")}
    assert len(_durations(trimmed)) < len(_durations(view))
    assert all(_durations(text) == _durations(trimmed) for text in renditions.values()), renditions
    first = _files(trimmed)[1][0]
    assert [_files(text)[1][0] for text in renditions.values()] == [
        f"video-{first}", f"audio-{first}", f"ad-en_{_version(ad_text)}_{first}"]
    for name in (_files(video_text)[1][0], _files(audio_text)[1][0], _files(ad_text)[1][0]):
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 404, name
    # What is left still decodes, from the trimmed view's first segment on.
    for name in renditions:
        await _rendition(live, rid, name, tmp_path / "trimmed.mp4")
        assert _strict_decode(tmp_path / "trimmed.mp4") == "", name

    # Removing the description: the master is the muxed view again and the split files are gone from disk.
    resp = await live.client.delete(f"/api/v1/recordings/{rid}/audio-description?language=en",
                                    headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200
    master = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    assert "TYPE=AUDIO" not in master and "vod.m3u8" in master.splitlines()
    for name in ("video.m3u8", "audio.m3u8", "ad-en.m3u8", _files(renditions["video.m3u8"])[1][0]):
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 404, name
    assert not [p.name for p in folder.iterdir() if p.name.startswith(("video", "audio", "ad-"))]


def _version(ad_playlist: str) -> str:
    return re.findall(r"^ad-en_(\d+)_", ad_playlist, re.M)[0]


async def test_a_private_fmp4_recordings_split_tracks_follow_its_access_and_go_with_it(live: Live, tmp_path: Path) -> None:
    recording = await recorded(live, seconds=4)
    rid = recording["id"]
    folder = folder_of(live, recording)
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"visibility": "authenticated"},
                                   headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200, await resp.text()
    # An uploaded, already mixed track this time (48 kHz: made at the programme's 44.1 kHz).
    resp = await describe(live, rid, language="fr", descriptions=None, audio=tone_audio(tmp_path / "described.m4a", 4.5))
    assert resp.status == 202, await resp.text()
    track = await settled(live, rid, "fr")
    assert track["state"] == "ready" and track["source"] == "upload", track
    await _rendition(live, rid, "ad-fr.m3u8", tmp_path / "uploaded.mp4")
    assert _streams(tmp_path / "uploaded.mp4") == ["Audio"] and _strict_decode(tmp_path / "uploaded.mp4") == ""
    names = ["master.m3u8", "video.m3u8", "audio.m3u8", "ad-fr.m3u8"]
    for playlist in ("video.m3u8", "audio.m3u8", "ad-fr.m3u8"):
        inits, segments = _files((await _get(live, rid, playlist)).decode())
        names += [*inits, segments[0]]
    for name in names:
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 200, name
    async with aiohttp.ClientSession(base_url=str(live.client.make_url("/"))) as anonymous:
        for name in names:
            assert (await anonymous.get(f"/vod/{rid}/{name}")).status == 403, name

    resp = await live.client.delete(f"/api/v1/recordings/{rid}", headers={"X-CSRF-Token": live.csrf})
    assert resp.status in (200, 204), await resp.text()
    for name in names:
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 404, name
    assert not folder.exists()


async def test_hls_js_plays_the_split_tracks_and_switches_to_the_description(live: Live, browser: Any, tmp_path: Path) -> None:
    from tests.web.browsing import check_page, new_page, open_context

    recording = await recorded(live)
    rid = recording["id"]
    resp = await describe(live, rid, descriptions=DESCRIPTIONS)
    assert resp.status == 202, await resp.text()
    assert (await settled(live, rid))["state"] == "ready"

    context = await open_context(browser, str(live.client.make_url("/")), live.lecturer, locale="fr-FR")
    page, errors = await new_page(context)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"/recordings/{rid}")
    await page.wait_for_selector("#audio-tracks:not([hidden])", timeout=20_000)
    options = await page.eval_on_selector_all("#audio-track option", "os => os.map(o => o.textContent)")
    assert options == ["Son original", "Audiodescription (anglais)"]
    await page.evaluate("() => { const v = document.getElementById('replay'); v.muted = true; v.play(); }")
    await page.wait_for_function("() => document.getElementById('replay').currentTime > 0.5", timeout=20_000)
    # The original sound plays from its own rendition, the picture from the video-only variant.
    assert any(re.search(r"/audio-seg_\d+\.m4s$", url) for url in requested), requested
    assert any(re.search(r"/video-seg_\d+\.m4s$", url) for url in requested), requested
    assert not any(re.search(r"/ad-en_\d+_seg_\d+\.m4s$", url) for url in requested)

    # Keyboard only: Tab reaches the Sound menu, an arrow picks the description; hls.js switches its audio track.
    await pick_description_with_keyboard(page)
    await wait_for(lambda: _async(any(re.search(r"/ad-en_\d+_(seg_\d+\.m4s|init_\d+\.mp4)$", url) for url in requested)),
                   20, "hls.js to load the described sound")
    await page.wait_for_function("() => { const v = document.getElementById('replay'); return v.currentTime > 2.5 && "
                                 "!v.paused && v.readyState >= 3; }", timeout=20_000)
    assert await page.evaluate("localStorage.getItem('audio-description')") == "en"
    # The player's own report: the description is the track playing now, its sound buffered.
    assert await page.evaluate("document.getElementById('audio-track').value") == "1"
    found = await check_page(page, tmp_path / "screenshots", "replay-audio-description-fmp4")
    assert found == {}, found
    assert errors == []
    await context.close()


async def _async(value: Any) -> Any:
    return value
