"""LL-HLS with the ABR ladder end to end (``ll_hls`` on, an ``abr`` event): ffmpeg pushes RTMP, one
ffmpeg transcodes the default ladder, each rendition's FLV feeds our CMAF muxer; every rendition is
an LL playlist with parts and rendition reports, blocking reloads answer on any rendition, the
transcoder is supervised like the plain packager, and hls.js in Chromium plays the ladder with parts.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import Any

import pytest

from formats.m3u8 import parse_master
from ingest.live import LIVE
from ingest.packaging.options import DEFAULT_LADDER, ladder_for_source
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import FFMPEG, decode_errors, push_rtmp, stop
from tests.support import REALTIME_SPEECH

# The ladder transcodes four renditions in real time: never beside live captioning, which must keep up
# with real time too (two of them at once on two cores measure the machine, not the code).
pytestmark = pytest.mark.xdist_group(REALTIME_SPEECH)

# No rung taller than the source is encoded: a source this tall gets two video renditions (480p, 240p)
# and the audio-only one, enough for rendition reports across renditions and for ABR switching, at a
# publisher's cost kept low (10 fps, x264 ultrafast); 4:3, so that every rung's width is exact.
TALL, TALL_HEIGHT = "640x480", 480
LADDER = ladder_for_source(DEFAULT_LADDER, TALL_HEIGHT)
NAMES = [r.name for r in LADDER]
LL = pytest.mark.live_settings(ll_hls=True)
REPORT = re.compile(r'#EXT-X-RENDITION-REPORT:URI="\.\./([^/"]+)/live\.m3u8",LAST-MSN=(\d+),LAST-PART=(\d+)')


async def _text(live: Live, slug: str, tail: str, **params: Any) -> tuple[int, str]:
    resp = await live.client.get(f"/live/{slug}/{tail}", params=params)
    return resp.status, await resp.text()


async def _ladder_playlists(live: Live, slug: str) -> dict[str, str]:
    """Every rendition's live playlist, once each lists parts and reports the three others."""
    async def ready() -> dict[str, str] | None:
        texts = {}
        for name in NAMES:
            status, text = await _text(live, slug, f"{name}/live.m3u8")
            if status != 200 or "#EXT-X-PART:" not in text or len(REPORT.findall(text)) != len(NAMES) - 1:
                return None
            texts[name] = text
        return texts
    return await wait_for(ready, 30, "LL playlists in every rendition")  # type: ignore[no-any-return]


def _hint(text: str) -> tuple[int, int]:
    match = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"', text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def _master_variants(text: str) -> list[tuple[str, str | None, tuple[int, int] | None]]:
    """(uri, CODECS, RESOLUTION) per variant, read by the ``m3u8`` package when installed (a parser we did
    not write), else by ours."""
    try:
        import m3u8  # type: ignore[import-not-found]
    except ImportError:
        return [(v.uri, v.codecs, v.resolution) for v in parse_master(text)]
    parsed = m3u8.loads(text)
    return [(p.uri, p.stream_info.codecs, p.stream_info.resolution) for p in parsed.playlists]


@LL
async def test_every_rendition_of_the_ladder_is_ll_hls(live: Live) -> None:
    event = await live.create_event(abr=True, dvr=True)
    slug = event["slug"]
    pusher = await push_rtmp(live.publish_url(event), seconds=30, size=TALL, fps=10)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live")
        texts = await _ladder_playlists(live, slug)
        folder = live.folder(event["id"])
        for name, text in texts.items():
            for tag in ("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", "#EXT-X-PART-INF:PART-TARGET=0.33400",
                        "#EXT-X-MAP:URI=\"init_1.mp4\"", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-PROGRAM-DATE-TIME"):
                assert tag in text, (name, tag)
            reported = {other for other, _, _ in REPORT.findall(text)}
            assert reported == set(NAMES) - {name}
            for other, msn, part in REPORT.findall(text):  # every report names a part that exists
                assert (folder / other / f"part_{int(msn):06d}_{part}.m4s").exists(), (name, other, msn, part)

        status, master = await _text(live, slug, "master.m3u8")
        assert status == 200
        variants = _master_variants(master)
        assert [uri for uri, _, _ in variants] == [f"{name}/live.m3u8" for name in NAMES]
        width, height = (int(n) for n in TALL.split("x"))
        for (uri, codecs, resolution), rendition in zip(variants, LADDER):
            if rendition.is_audio_only:
                assert codecs == "mp4a.40.2" and resolution is None
            else:  # what x264's avcC says (High profile), and the source's picture scaled as ffmpeg's -2:H does
                assert rendition.height is not None
                scaled = (rendition.height * width + height) // (2 * height) * 2
                assert codecs is not None and re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", codecs), codecs
                assert resolution == (scaled, rendition.height), (uri, resolution)

        # A blocking reload on a rendition other than the first answers once the part exists.
        for _ in range(3):
            _, text = await _text(live, slug, "240p/live.m3u8")
            msn, index = _hint(text)
            candidates = [folder / "240p" / f"part_{msn:06d}_{index}.m4s", folder / "240p" / f"part_{msn + 1:06d}_0.m4s"]
            resp = await live.client.get(f"/live/{slug}/240p/live.m3u8", params={"_HLS_msn": msn, "_HLS_part": index})
            existing = [path for path in candidates if path.exists()]
            assert existing, "answered before the part existed"
            body = await resp.text()
            assert resp.status == 200 and f'URI="{existing[0].name}"' in body

        # The transcoder dies: restarted, a discontinuity in every rendition, still the same numbers.
        packager = live.app[LIVE].events[event["id"]].packager
        assert packager.transcoder is not None
        os.kill(packager.transcoder.pid, signal.SIGKILL)
        await wait_for(lambda: _async(packager.restarts == 1), 15, "the transcoder restart")
        segments = packager.segments
        await wait_for(lambda: _async(packager.segments >= segments + 2), 20, "segments after the restart")
        assert all("#EXT-X-DISCONTINUITY" in (folder / name / "dvr.m3u8").read_text() for name in NAMES)
    finally:
        await stop(pusher)

    await wait_for(lambda: event_state_is(live, event, "ended"), 20, "the event to end")
    listed = {}
    for name in NAMES:
        dvr = (folder / name / "dvr.m3u8").read_text()
        assert dvr.rstrip().endswith("#EXT-X-ENDLIST")
        listed[name] = re.findall(r"^seg_(\d+)\.m4s$", dvr, re.M)
    assert len(listed[NAMES[0]]) >= 5 and all(listed[name] == listed[NAMES[0]] for name in NAMES), listed
    assert decode_errors(folder / "480p" / "dvr.m3u8", across_discontinuities=True) == ""


@LL
async def test_a_hung_transcoder_is_killed_and_restarted(live: Live) -> None:
    event = await live.create_event(abr=True)
    pusher = await push_rtmp(live.publish_url(event), seconds=25, size="320x180", fps=10)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live")
        packager = live.app[LIVE].events[event["id"]].packager
        transcoder = packager.transcoder
        frozen = transcoder.pid
        segments = packager.segments
        os.kill(frozen, signal.SIGSTOP)
        health = await wait_for(lambda: _owed(live, event), 10, "health to report the media the transcoder owes")
        assert health["healthy"] is False and health["stalled"] is False  # media flows in; nothing comes out
        await wait_for(lambda: _async(transcoder.hung_kills == 1 and packager.restarts == 1), 15, "the watchdog")
        await wait_for(lambda: _async(packager.segments > segments + 1), 15, "new segments after the restart")
        assert transcoder.pid != frozen and pusher.returncode is None  # the encoder never noticed
    finally:
        await stop(pusher)


@LL
async def test_event_page_plays_the_ladder_with_parts(live: Live, browser: Any) -> None:
    event = await live.create_event(abr=True)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_init_script("""
      (() => { let wrapped;
        Object.defineProperty(window, "Hls", { configurable: true, get() { return wrapped; }, set(original) {
          wrapped = class extends original { constructor(c) { super(c); window.__hls = this; } }; } });
      })();""")
    pusher = await push_rtmp(live.publish_url(event), seconds=40, size=TALL, fps=10)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live")
        await _ladder_playlists(live, event["slug"])
        await page.goto(str(live.client.make_url(f"/events/{event['slug']}")))
        await page.wait_for_function(
            "() => { const v = document.getElementById('player'); return v && v.readyState >= 3 && v.currentTime > 1.5; }",
            timeout=30_000)
        assert await page.evaluate("window.__hls.config.lowLatencyMode") is True
        levels = await page.evaluate("window.__hls.levels.map(l => l.url[0] || l.url)")
        assert len(levels) >= len(NAMES) - 1  # hls.js may leave the audio-only variant out of its video levels
        start = await page.evaluate("document.getElementById('player').currentTime")
        await asyncio.sleep(3)
        details = await page.evaluate("""() => { const h = window.__hls, d = h.levels[h.currentLevel].details;
          return { parts: d.partList ? d.partList.length : 0, reports: (d.renditionReports || []).length,
                   time: document.getElementById('player').currentTime }; }""")
        assert details["parts"] > 0 and details["time"] > start + 2, details
        assert errors == []
    finally:
        await stop(pusher)


async def _owed(live: Live, event: dict) -> dict | None:
    health = (await live.event(event["id"]))["stream"]["health"]
    return health if health and health["segment_overdue_seconds"] > 2.0 else None


async def _async(value: bool) -> bool:
    return value


@pytest.mark.parametrize("ll_hls", [pytest.param(True, marks=LL, id="ll"),
                                    pytest.param(False, marks=pytest.mark.live_settings(ll_hls=False), id="plain")])
async def test_a_publisher_without_audio_gets_the_video_renditions(live: Live, ll_hls: bool) -> None:
    """``ffmpeg -an`` (a capture box without audio, x264's defaults): the ladder encodes the video
    renditions only, ffmpeg is never restarted, and the master advertises neither the audio-only
    rendition nor audio CODECS."""
    event = await live.create_event(abr=True, dvr=True)
    slug = event["slug"]
    video = [r.name for r in ladder_for_source(DEFAULT_LADDER, 180) if not r.is_audio_only]  # 240p alone
    audio_only = [r.name for r in DEFAULT_LADDER if r.is_audio_only]
    pusher = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-readrate", "2",
        "-f", "lavfi", "-i", "testsrc=size=320x180:rate=15", "-t", "12", "-c:v", "libx264", "-an",
        "-f", "flv", live.publish_url(event),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live")
        packager = live.app[LIVE].events[event["id"]].packager

        async def segments_everywhere() -> bool:
            for name in video:
                status, text = await _text(live, slug, f"{name}/live.m3u8")
                if status != 200 or not re.search(r"^seg_\d+\.(m4s|ts)$", text, re.M):
                    return False
                if ll_hls and "#EXT-X-PART:" not in text:
                    return False
            return True
        await wait_for(segments_everywhere, 30, "segments in every video rendition")
        health = (await live.event(event["id"]))["stream"]["health"]
        assert health["packager_restarts"] == 0 and packager.restarts == 0, health

        status, master = await _text(live, slug, "master.m3u8")
        assert status == 200
        variants = _master_variants(master)
        assert [uri for uri, _, _ in variants] == [f"{name}/live.m3u8" for name in video], master
        assert all(codecs is not None and re.fullmatch(r"avc1\.[0-9a-f]{6}", codecs) for _, codecs, _ in variants), master
        for name in audio_only:  # nothing to list: no playlist, or one without segments
            status, text = await _text(live, slug, f"{name}/live.m3u8")
            assert status != 200 or not re.search(r"^seg_", text, re.M), (name, text)
        await asyncio.wait_for(pusher.wait(), 30)  # the whole clip went out
        assert packager.restarts == 0
    finally:
        await stop(pusher)


@pytest.mark.parametrize("ll_hls", [pytest.param(True, marks=LL, id="ll"),
                                    pytest.param(False, marks=pytest.mark.live_settings(ll_hls=False), id="plain")])
async def test_a_small_source_gets_no_rung_taller_than_itself(live: Live, ll_hls: bool) -> None:
    """A 160x120 publisher on an ABR event: upscaling it to 720p and 480p would cost most of the CPU for
    nothing, so ffmpeg scales to 240p only (the lowest rung, as none is as short as the source), and the
    master lists exactly 240p and the audio-only rendition; the skipped rungs never get a segment. A
    reconnect with a taller picture keeps those renditions (the choice is the packager's, once)."""
    event = await live.create_event(abr=True, dvr=True)
    slug = event["slug"]
    pusher = await push_rtmp(live.publish_url(event), seconds=20, size="160x120", fps=10)
    packager = None

    def scalers() -> str:
        assert packager is not None
        pid = packager.transcoder.pid if ll_hls else packager.pid
        assert pid is not None
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
        return " ".join(re.findall(r"scale=-2:\d+", args[args.index(b"-filter_complex") + 1].decode()))
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live")
        packager = live.app[LIVE].events[event["id"]].packager
        assert scalers() == "scale=-2:240"

        async def listed() -> str | None:
            for name in ("240p", "audio"):
                status, text = await _text(live, slug, f"{name}/live.m3u8")
                if status != 200 or not re.search(r"^seg_\d+\.(m4s|ts)$", text, re.M):
                    return None
            status, master = await _text(live, slug, "master.m3u8")
            return master if status == 200 else None
        master = await wait_for(listed, 30, "segments in 240p and audio")
        assert [uri for uri, _, _ in _master_variants(master)] == ["240p/live.m3u8", "audio/live.m3u8"], master
        assert packager.rendition == "240p"  # recordings and captions follow the top rendition encoded
        for name in ("720p", "480p"):
            status, text = await _text(live, slug, f"{name}/live.m3u8")
            assert status != 200 or not re.search(r"^seg_", text, re.M), (name, text)
        if ll_hls:  # 240p reports the audio rendition only
            _, text = await _text(live, slug, "240p/live.m3u8")
            assert {other for other, _, _ in REPORT.findall(text)} == {"audio"}, text

        # The publisher comes back 480 lines tall: the same renditions, 240p scaled down now.
        def pid() -> int | None:
            assert packager is not None
            return packager.transcoder.pid if ll_hls else packager.pid
        first = pid()
        await stop(pusher)
        pusher = await push_rtmp(live.publish_url(event), seconds=20, size="640x480", fps=10)
        await wait_for(lambda: _async(pid() not in (None, first)), 20, "the second session's ffmpeg")
        assert scalers() == "scale=-2:240"
        segments = packager.segments
        await wait_for(lambda: _async(packager.segments >= segments + 2), 20, "segments of the second session")
        _, again = await _text(live, slug, "master.m3u8")
        assert [uri for uri, _, _ in _master_variants(again)] == ["240p/live.m3u8", "audio/live.m3u8"], again
    finally:
        await stop(pusher)
