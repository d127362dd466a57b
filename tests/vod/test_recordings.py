"""Live runs become replays: real ffmpeg publishers, the real recorder and catalog, HTTP viewers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import func, select

from live_server.db import DB
from live_server.models import Chapter, Recording
from tests.ingest.live import LONG_GRACE, SEGMENT, Live, event_state_is, wait_for
from tests.media import FAST, count_video_frames, decode_errors, push_rtmp
from tests.vod.recordings import folder_of, mp4_video_frames, recordings_of


async def add_chapter(live: Live, event: dict[str, Any], title: str) -> dict[str, Any]:
    resp = await live.client.post(f"/api/v1/events/{event['id']}/chapters", json={"title": title},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 201, await resp.text()
    return await resp.json()


@__import__("pytest").mark.live_settings(grace_period_seconds=LONG_GRACE)
async def test_push_reconnect_end_gives_a_ready_vod_with_chapters(live: Live) -> None:
    event = await live.create_event()
    url = live.publish_url(event)
    first = await push_rtmp(url, frames=40)  # 4 s at 10 fps, 1 s GOP
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "the event to go live")
    intro = await add_chapter(live, event, "Introduction")
    assert await asyncio.wait_for(first.wait(), 20) == 0
    await asyncio.sleep(0.5)  # disconnected, inside the grace period
    second = await push_rtmp(url, frames=30)
    await asyncio.sleep(1.5)
    part = await add_chapter(live, event, "Second part")
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")

    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready"  # already when the event is marked ended
    assert recording["title"] == "Lecture" and recording["discontinuities"] == 1
    assert abs(recording["duration_seconds"] - 7.0) <= SEGMENT, recording
    folder = folder_of(live, recording)
    vod = (folder / "vod.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod and vod.rstrip().endswith("#EXT-X-ENDLIST")
    assert vod.count("#EXT-X-DISCONTINUITY\n") == 1
    assert count_video_frames(folder / "vod.m3u8") == 70
    assert decode_errors(folder / "vod.m3u8", across_discontinuities=True) == ""
    assert recording["size_bytes"] > 10_000
    mp4 = await live.client.get(f"/api/v1/recordings/{recording['id']}/download.mp4")  # across the reconnect
    saved = folder.parent / "saved.mp4"
    saved.write_bytes(await mp4.read())
    assert mp4_video_frames(saved) == 70 and decode_errors(saved) == ""

    master = await live.client.get(f"/vod/{recording['id']}/master.m3u8")
    assert master.status == 200 and master.headers["Cache-Control"] == "public, no-cache"  # its text tracks can change
    assert "vod.m3u8" in await master.text() and 'CODECS="avc1.' in await master.text()
    segment = re.search(r"^(seg_\d+\.(ts|m4s))$", vod, re.M).group(1)  # type: ignore[union-attr]
    seg = await live.client.get(f"/vod/{recording['id']}/{segment}")
    assert seg.status == 200 and seg.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    if segment.endswith(".m4s"):  # LL-HLS: each publish session's init section is listed and served too
        inits = re.findall(r'^#EXT-X-MAP:URI="(init_\d+\.mp4)"$', vod, re.M)
        assert inits == ["init_1.mp4", "init_2.mp4"]
        init = await live.client.get(f"/vod/{recording['id']}/{inits[1]}")
        assert init.status == 200 and (await init.read())[4:8] == b"ftyp"
        assert init.headers["Content-Type"] == "video/mp4"
    download = await live.client.get(f"/vod/{recording['id']}/download.mp4")  # owners get it through the API only
    assert download.status == 404

    # Chapters marked during the live, at the stream time: the second one after the first session.
    assert 0 <= intro["offset"] < 4.0 <= part["offset"] < recording["duration_seconds"]
    vtt = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/chapters.vtt")).text()
    assert vtt.startswith("WEBVTT") and "Introduction" in vtt and "Second part" in vtt
    starts = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3}) --> ", vtt, re.M)
    assert len(starts) == 2 and starts[0] < starts[1]
    # ...and stay editable afterwards.
    resp = await live.client.patch(f"/api/v1/recordings/{recording['id']}/chapters/{part['id']}",
                                   json={"title": "Part two"}, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200
    replay = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/replay")).json()
    assert [c["title"] for c in replay["chapters"]] == ["Introduction", "Part two"]

    thumb = await wait_for(lambda: _thumbnail(live, recording["id"]), 10, "the thumbnail")
    assert thumb[:2] == b"\xff\xd8"  # JPEG


async def _thumbnail(live: Live, recording_id: int) -> bytes | None:
    body = await (await live.client.get(f"/api/v1/recordings/{recording_id}")).json()
    if not body["thumbnail_url"]:
        return None
    resp = await live.client.get(f"/vod/{recording_id}/thumbnail.jpg")
    return await resp.read() if resp.status == 200 else None


async def test_trim_download_and_delete(live: Live) -> None:
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), frames=60, readrate=FAST)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    await add_chapter(live, event, "Start")
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "ended")
    [recording] = await recordings_of(live, event)
    rid, folder = recording["id"], folder_of(live, recording)
    headers = {"X-CSRF-Token": live.csrf}

    mp4 = await live.client.get(f"/api/v1/recordings/{rid}/download.mp4")
    assert mp4.status == 200 and mp4.headers["Content-Type"] == "video/mp4"
    saved = folder.parent / "saved.mp4"
    saved.write_bytes(await mp4.read())
    assert mp4_video_frames(saved) == 60 == count_video_frames(folder / "vod.m3u8")
    assert decode_errors(saved) == ""

    before = (folder / "vod.m3u8").read_text()
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"trim_start": 2.2, "trim_end": 4.5, "title": "Cut"},
                                   headers=headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    after = (folder / "vod.m3u8").read_text()
    assert after != before and after.count("#EXTINF") == 3 and "#EXT-X-ENDLIST" in after
    assert body["title"] == "Cut" and abs(body["trim_start"] - 2.0) <= 0.1 and abs(body["duration_seconds"] - 3.0) <= 0.2
    assert re.findall(r"seg_\d+\.ts", after) == re.findall(r"seg_\d+\.ts", before)[2:5]
    # Issue 17 (3): the trim does not only hide; only what the view lists is served, under any playlist name.
    kept, every = re.findall(r"seg_\d+\.ts", after), re.findall(r"seg_\d+\.ts", before)
    for name in every:
        status = (await live.client.get(f"/vod/{rid}/{name}")).status
        assert status == (200 if name in kept else 404), name
    for name in ("index.m3u8", "import.m3u8", "dvr.m3u8", "live.m3u8"):
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 404, name
    assert (folder / "index.m3u8").exists()  # the journal stays: a later trim can widen the view again
    mp4 = await live.client.get(f"/api/v1/recordings/{rid}/download.mp4")
    saved.write_bytes(await mp4.read())
    assert mp4_video_frames(saved) == count_video_frames(folder / "vod.m3u8") == 30
    assert (await live.client.patch(f"/api/v1/recordings/{rid}", json={"trim_start": 99}, headers=headers)).status == 422

    resp = await live.client.delete(f"/api/v1/recordings/{rid}", headers=headers)
    assert resp.status == 204
    assert not folder.exists()
    counts = await live.app[DB].run(lambda s: (s.scalar(select(func.count()).select_from(Recording)),
                                               s.scalar(select(func.count()).select_from(Chapter))))
    assert counts == (0, 0)
    assert (await live.client.get(f"/vod/{rid}/master.m3u8")).status == 404
    assert (await live.client.get(f"/api/v1/recordings/{rid}")).status == 404


async def test_private_recording_media_needs_access(live: Live, aiohttp_client: Any) -> None:
    event = await live.create_event(visibility="password", password="open sesame")
    pusher = await push_rtmp(live.publish_url(event), frames=30, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    [recording] = await recordings_of(live, event)
    rid = recording["id"]
    assert recording["visibility"] == "password"  # inherited from the event
    assert (await live.client.get(f"/vod/{rid}/master.m3u8")).status == 200  # the owner

    stranger = await aiohttp_client(live.client.server)
    media = f"/vod/{rid}/vod.m3u8"
    assert (await stranger.get(media)).status == 403
    assert (await stranger.get(f"/api/v1/recordings/{rid}/replay")).status == 404
    page = await (await stranger.get(f"/recordings/{rid}")).text()
    assert 'name="password"' in page and "data-src" not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    wrong = await stranger.post(f"/recordings/{rid}/unlock", data={"password": "guess", "csrf_token": token})
    assert wrong.status == 403 and (await stranger.get(media)).status == 403
    right = await stranger.post(f"/recordings/{rid}/unlock", data={"password": "open sesame", "csrf_token": token})
    assert right.status == 200 and "data-src" in await right.text()
    resp = await stranger.get(media)
    assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert (await stranger.get(f"/api/v1/recordings/{rid}/replay")).status == 200


@__import__("pytest").mark.live_settings(recording_min_free_mb=10**9)
async def test_low_disk_refuses_to_record_and_alerts(live: Live) -> None:
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), frames=20, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    assert await recordings_of(live, event) == []
    metrics = await (await live.client.get("/metrics")).text()
    assert "live_recording_disk_low 1.0" in metrics
    assert 'live_recordings_refused_total{reason="disk_space"} 1.0' in metrics
