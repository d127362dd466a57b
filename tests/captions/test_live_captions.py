"""Live captions end to end: ffmpeg pushes espeak-ng Korean speech over RTMP at known times; a
Socket.IO viewer gets caption events, the HLS master lists a WebVTT rendition fetched over HTTP,
and the catalog holds the whole track when the event ends. Times are media time (HLS timeline).

Recognition of synthetic speech by the small model is poor: we assert timing, structure and that
Hangul comes back, not the exact text.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import socketio
from sqlalchemy import select

from formats.webvtt import parse as parse_webvtt
from live_server.db import DB
from live_server.models import CaptionSegment
from tests.captions.speech import Speech, push_track, speech_track
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp

HANGUL = re.compile(r"[\uac00-\ud7a3]")
SPEECH_AT = (3.0, 10.0)
TRACK_SECONDS = 15.0


async def _viewer(live: Live, event: dict[str, Any]) -> tuple[socketio.AsyncClient, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("caption", lambda data: received.append(data))
    await client.connect(str(live.client.make_url("/")), auth={"event": event["id"]}, transports=["websocket"],
                         socketio_path="socket.io", wait_timeout=10)
    return client, received


async def test_live_captions_reach_viewers_hls_and_the_catalog(captioned: Live, ko_speech: Speech, tmp_path: Any) -> None:
    live = captioned
    event = await live.create_event(dvr=True, caption_language="ko")
    viewer, received = await _viewer(live, event)
    track = speech_track(ko_speech, list(SPEECH_AT), TRACK_SECONDS, tmp_path)
    pusher = await push_track(live.publish_url(event), track)
    onsets = [at + ko_speech.onset for at in SPEECH_AT]
    ends = [at + ko_speech.offset for at in SPEECH_AT]

    await wait_for(lambda: event_state_is(live, event, "live"), 15, "the event to go live")
    master = await (await live.client.get(f"/live/{event['slug']}/master.m3u8")).text()
    # named in its own language, typed as captions (hls.js reads CHARACTERISTICS for the track's kind)
    assert re.search(r'^#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="한국어",LANGUAGE="ko",.*'
                     r'CHARACTERISTICS="public.accessibility.transcribes-spoken-dialog,'
                     r'public.accessibility.describes-music-and-sound",URI="subtitles/ko/live.m3u8"$', master, re.M), master
    assert all('SUBTITLES="subs"' in line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))

    async def first_final() -> Any:
        return next((c for c in received if c["final"]), None)
    await wait_for(first_final, 20, "a final caption over Socket.IO")
    health = (await live.event(event["id"]))["stream"]["health"]["captions"]
    assert health["state"] == "on" and health["language"] == "ko" and health["dropped_chunks"] == 0, health
    assert 0 < health["real_time_factor"] < 2.0

    assert await asyncio.wait_for(pusher.wait(), 40) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 30, "the event to end")
    await viewer.disconnect()

    # 1. Live events: partial and final, Hangul, onset within 1 s of the inserted speech, silence quiet.
    finals = [c for c in received if c["final"]]
    assert any(not c["final"] and c["text"] for c in received), "partial captions while speaking"
    assert all(HANGUL.search(c["text"]) for c in finals)
    for onset in onsets:
        near = [c for c in finals if abs(c["start"] - onset) < 1.0]
        assert near, (onset, [(c["start"], c["end"]) for c in finals])
    silences = [(0.0, onsets[0] - 0.5), (ends[0] + 1.5, onsets[1] - 0.5), (ends[1] + 1.5, TRACK_SECONDS)]
    for lo, hi in silences:
        assert not [c for c in finals if c["start"] < hi and c["end"] > lo], (lo, hi, finals)
    assert all(c["program_date_time"] for c in finals)

    # 2. The WebVTT rendition as the packager left it: segmented like the video, timestamp-mapped.
    # (Once the event has ended its live URLs serve nothing, issue 17 (2): the files are read from disk.)
    async def gone() -> bool:  # the media directory caches an event's location for 2 s
        return (await live.client.get(f"/live/{event['slug']}/subtitles/ko/dvr.m3u8")).status == 404
    await wait_for(gone, 6, "the ended event's live URLs to answer 404")
    run = live.folder(event["id"])

    def read(path: str) -> str:
        return (run / path).read_text(encoding="utf-8")

    video = read("source/dvr.m3u8")
    subs = read("subtitles/ko/dvr.m3u8")
    assert subs.rstrip().endswith("#EXT-X-ENDLIST")
    video_durations = re.findall(r"#EXTINF:([\d.]+),", video)
    # Same durations (the LL-HLS video playlist writes five decimals, the subtitle playlist three).
    assert [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", subs)] == [round(float(d), 3) for d in video_durations]
    names = re.findall(r"^(seg_\d+\.vtt)$", subs, re.M)
    suffix = live.segment_suffix  # .m4s with LL-HLS, whose first segment may start at MPEGTS 0 (its tfdt)
    assert [n.replace(".vtt", suffix) for n in names] == re.findall(rf"^(seg_\d+\{suffix})$", video, re.M)
    hls_cues, start = [], 0.0
    for name, duration in zip(names, video_durations):
        tsmap, cues = parse_webvtt(read(f"subtitles/ko/{name}"))
        assert tsmap is not None and tsmap.local == pytest.approx(start, abs=0.002)
        assert tsmap.mpegts > 0 or (live.settings.ll_hls and start == 0)
        assert all(c.start < start + float(duration) and c.end > start for c in cues)
        hls_cues.extend(c for c in cues if c not in hls_cues)
        start += float(duration)
    assert [(c.start, c.end, c.text) for c in hls_cues] == [(c["start"], c["end"], c["text"]) for c in finals]
    live_subs = read("subtitles/ko/live.m3u8")
    assert "#EXT-X-TARGETDURATION" in live_subs and live_subs.rstrip().endswith("#EXT-X-ENDLIST")
    dvr_master = read("master-dvr.m3u8")
    assert 'URI="subtitles/ko/dvr.m3u8"' in dvr_master

    # 3. The catalog: every final cue, in batches, and a whole-event WebVTT track.
    rows = live.app[DB].transaction(
        lambda s: s.scalars(select(CaptionSegment).order_by(CaptionSegment.start_seconds)).all())
    assert [(r.start_seconds, r.end_seconds, r.text, r.language) for r in rows] == [
        (c["start"], c["end"], c["text"], "ko") for c in finals]
    resp = await live.client.get(f"/api/v1/events/{event['id']}/captions.vtt")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/vtt")
    _, track_cues = parse_webvtt(await resp.text())
    assert [c.start for c in track_cues] == [c["start"] for c in finals]
    assert track_cues[0].start < onsets[0] + 1.0 and track_cues[-1].start > onsets[1] - 1.0
    word = HANGUL.search(finals[0]["text"]).group(0)  # type: ignore[union-attr]
    found = await (await live.client.get(f"/api/v1/events/{event['id']}/transcript", params={"q": word})).json()
    assert found["segments"] and all(word in s["text"] for s in found["segments"])

    metrics = await (await live.client.get("/metrics")).text()
    assert "live_caption_delay_seconds_count" in metrics


async def test_language_without_a_model_goes_live_without_captions(captioned: Live) -> None:
    live = captioned
    french = await live.create_event(caption_language="fr")
    silent = await live.create_event()
    pushers = [await push_rtmp(live.publish_url(e), seconds=4) for e in (french, silent)]
    await wait_for(lambda: event_state_is(live, french, "live"), 15, "the event to go live")
    await wait_for(lambda: event_state_is(live, silent, "live"), 15, "the other event to go live")
    captions = (await live.event(french["id"]))["stream"]["health"]["captions"]
    assert captions["state"] == "unavailable" and captions["language"] == "fr"
    assert "no Vosk model configured for 'fr' (configured: ko)" in captions["message"]
    assert (await live.event(silent["id"]))["stream"]["health"]["captions"]["state"] == "off"
    master = await (await live.client.get(f"/live/{french['slug']}/master.m3u8")).text()
    assert "TYPE=SUBTITLES" not in master
    for pusher in pushers:
        assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, french, "ended"), 20, "the event to end")
