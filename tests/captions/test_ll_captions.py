"""The live WebVTT caption rendition of an LL-HLS event sits on the fMP4 timeline: hls.js in Chromium shows
each cue at the media time the captioner gave it (stream time = media time), also when the publisher's own
timestamps do not start at zero (its ``X-TIMESTAMP-MAP`` maps to the segments' ``tfdt``, not to zero), and with
the ABR ladder (the rendition follows the transcoder's first rendition).

espeak-ng Korean speech is pushed over RTMP at real-time speed (the recognizer's input); hls.js then plays the
run's DVR playlists, served as files, as a finished stream (media time 0 = stream time 0).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from formats.cmaf import fragment_start_90khz
from formats.webvtt import parse as parse_webvtt
from ingest.packaging.options import DEFAULT_LADDER, ladder_for_source
from live_server.db import DB
from live_server.models import CaptionSegment
from tests.captions.speech import Speech, push_track, speech_track
from tests.ingest.live import Live, event_state_is, wait_for

HLS_JS = Path(__file__).resolve().parents[2] / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PAGE = """<!doctype html><html><body><video id="v" muted></video><script src="/hls.min.js"></script><script>
const hls = window.hls = new Hls({subtitleDisplay: false}); window.hlsErrors = [];
hls.on(Hls.Events.ERROR, (_, d) => window.hlsErrors.push(d.details)); hls.loadSource('/run/master-dvr.m3u8');
hls.attachMedia(document.getElementById('v'));
hls.on(Hls.Events.MANIFEST_PARSED, () => document.getElementById('v').play());
</script></body></html>"""


# Where the cues land is the subject, not how soon: no audio dropped on a loaded machine, time to catch up.
# With the ABR ladder, the rendition follows the first one encoded, whose times are the transcoder's (they
# start near zero, not at the publisher's 100 s): for this 160x120 publisher, 240p (no rung taller than
# the source is encoded, the lowest one at least), then the audio-only rendition.
LADDER = ladder_for_source(DEFAULT_LADDER, 120)
@pytest.mark.parametrize("abr", [False, True], ids=["source", "ladder"])
@pytest.mark.live_settings(ll_hls=True, caption_queue_seconds=120, caption_finish_seconds=60)
async def test_ll_hls_caption_cues_land_at_their_media_time_in_hls_js(
        captioned: Live, ko_speech: Speech, browser: Any, tmp_path: Path, abr: bool) -> None:
    live = captioned
    event = await live.create_event(dvr=True, caption_language="ko", abr=abr)
    rendition = LADDER[0].name if abr else "source"
    track = speech_track(ko_speech, [1.0], 11.0, tmp_path)
    pusher = await push_track(live.publish_url(event), track, ts_offset=100.0)  # FLV time starts at 100 s
    await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
    assert await asyncio.wait_for(pusher.wait(), 40) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 60, "the event to end")  # its captions finished
    rows = live.app[DB].transaction(
        lambda s: [(r.start_seconds, r.end_seconds) for r in s.scalars(select(CaptionSegment)
                                                                         .order_by(CaptionSegment.start_seconds))])
    assert rows, "no caption was recognised"

    # The rendition's X-TIMESTAMP-MAP: LOCAL = the segment's stream time, MPEGTS = its first tfdt at 90 kHz.
    run = live.folder(event["id"])
    video = (run / rendition / "dvr.m3u8").read_text()
    assert "#EXT-X-MAP:" in video and ".m4s" in video
    init = (run / rendition / "init_1.mp4").read_bytes()
    first = next((run / "subtitles" / "ko").glob("seg_000001.vtt"))
    tsmap, _ = parse_webvtt(first.read_text())
    assert tsmap is not None
    expected = fragment_start_90khz(init, (run / rendition / "seg_000001.m4s").read_bytes())
    assert expected is not None and (abr or expected >= 100 * 90_000) and tsmap.mpegts == expected
    if abr:  # every variant of the ladder lists the caption rendition
        master = (run / "master-dvr.m3u8").read_text()
        assert master.count('SUBTITLES="subs"') == len(LADDER) == 2 and 'URI="subtitles/ko/dvr.m3u8"' in master

    async def page_html(_: web.Request) -> web.StreamResponse:
        return web.Response(text=PAGE, content_type="text/html")

    async def hls_js(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(HLS_JS)

    app = web.Application()
    app.router.add_get("/", page_html)
    app.router.add_get("/hls.min.js", hls_js)
    app.router.add_static("/run/", run)
    server = TestServer(app)
    await server.start_server()
    try:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(str(server.make_url("/")))
        cues = await page.wait_for_function("""(count) => {
            const t = [...document.getElementById('v').textTracks].find(t => t.kind === 'captions' || t.kind === 'subtitles');
            if (t && t.mode === 'disabled') t.mode = 'hidden';  // hls.js follows: it loads the rendition
            if (!t || !t.cues || t.cues.length < count) return null;
            return JSON.stringify([...t.cues].map(c => [c.startTime, c.endTime]));
        }""", arg=len(rows), timeout=30_000)
        shown = sorted(json.loads(await cues.json_value()))
    finally:
        await server.close()
    print(f"cues: stream time {rows}, shown by hls.js at {shown}")
    assert len(shown) == len(rows)
    for (start, end), (shown_start, shown_end) in zip(rows, shown):
        assert shown_start == pytest.approx(start, abs=0.05) and shown_end == pytest.approx(end, abs=0.05)
    assert errors == []
