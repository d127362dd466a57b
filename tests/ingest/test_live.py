"""RTMP to HLS through the whole server: real ffmpeg publishers, real HTTP viewers, the real catalog."""

from __future__ import annotations

import asyncio
import re
import os
import signal
import socket
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from formats.m3u8 import parse_media_playlist
from live_server.db import DB
from ingest.live import LIVE
from ingest.rtmp.server import RTMP
from live_server.models import BroadcastSession
from tests.ingest.live import BOTH_PACKAGERS, LONG_GRACE, SEGMENT, Live, event_state_is, wait_for
from tests.media import FAST, count_video_frames, decode_errors, push_rtmp, stop


@BOTH_PACKAGERS  # the whole path, LL-HLS (the default) and plain HLS
async def test_publish_goes_live_plays_and_ends(live: Live, packaging: str) -> None:
    event = await live.create_event(dvr=True)
    assert event["state"] == "scheduled"
    assert (await live.client.get(f"/live/{event['slug']}/master.m3u8")).status == 404  # nothing yet

    pusher = await push_rtmp(f"{live.publish_url(event)}?client=capture-box", seconds=5)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "the event to go live")

    master = await live.client.get(f"/live/{event['slug']}/master.m3u8")
    assert master.status == 200
    assert master.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert master.headers["Cache-Control"] == "public, max-age=1"
    assert master.headers["Access-Control-Allow-Origin"] == "*"
    variant = re.search(r"^(\S+\.m3u8)$", await master.text(), re.M).group(1)  # type: ignore[union-attr]
    playlist = await (await live.client.get(f"/live/{event['slug']}/{variant}")).text()
    first_segment = parse_media_playlist(playlist).playlist.segments[0].uri
    assert first_segment.endswith(live.segment_suffix)
    seg = await live.client.get(f"/live/{event['slug']}/{variant.rsplit('/', 1)[0]}/{first_segment}")
    assert seg.status == 200 and seg.headers["Content-Type"] == ("video/iso.segment" if packaging == "ll" else "video/mp2t")
    assert seg.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    body = await seg.read()
    if packaging == "ll":
        assert body[4:8] in (b"styp", b"moof")  # a CMAF media segment
    else:
        assert body[:1] == b"\x47"  # MPEG-TS sync byte

    body = await live.event(event["id"])
    assert body["viewers"] == 1
    for _ in range(2):  # two more students behind the same campus address, with the same browser
        async with aiohttp.ClientSession(headers={"User-Agent": "same-browser"},
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as student:
            async with student.get(live.client.make_url(f"/live/{event['slug']}/master-dvr.m3u8")) as resp:
                assert len(resp.cookies["live_viewer"].value) == 24
            async with student.get(live.client.make_url(f"/live/{event['slug']}/{variant}")) as resp:
                assert resp.status == 200
    body = await live.event(event["id"])
    assert body["viewers"] == 3
    health = body["stream"]["health"]
    assert health["publishing"] and health["protocol"] == "rtmp"
    await asyncio.sleep(2.5)
    health = (await live.event(event["id"]))["stream"]["health"]
    assert 8 <= health["fps"] <= 12 and health["bitrate_bps"] > 10_000 and health["keyframe_interval_seconds"] == pytest.approx(1.0, abs=0.15)
    metrics = await (await live.client.get("/metrics")).text()
    assert f'live_viewers{{event="{event["id"]}"}} 3.0' in metrics
    assert re.search(rf'live_ingest_fps{{event="{event["id"]}"}} \d', metrics)

    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the event to end after the grace period")
    folder = live.folder(event["id"])
    for name in ("source/live.m3u8", "source/dvr.m3u8"):
        text = (folder / name).read_text()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
    dvr = (folder / "source" / "dvr.m3u8").read_text()
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", dvr)]
    assert len(durations) >= 4
    assert all(abs(d - SEGMENT) <= 0.15 for d in durations[:-1]), durations
    assert decode_errors(folder / "source" / "dvr.m3u8") == ""
    sessions = live.app[DB].transaction(lambda s: s.scalars(select(BroadcastSession)).all())
    assert len(sessions) == 1 and sessions[0].protocol == "rtmp" and sessions[0].ended_at is not None


@pytest.mark.live_settings(grace_period_seconds=LONG_GRACE)
async def test_frames_in_equal_frames_out_across_a_reconnect(live: Live) -> None:
    event = await live.create_event()
    url = live.publish_url(event)
    first = await push_rtmp(url, frames=40, readrate=FAST)
    assert await asyncio.wait_for(first.wait(), 20) == 0
    await asyncio.sleep(0.5)
    assert (await live.event(event["id"]))["state"] == "live"  # inside the grace period
    run = live.folder(event["id"])
    second = await push_rtmp(url, frames=30, readrate=FAST)
    assert await asyncio.wait_for(second.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")

    assert live.folder(event["id"]) == run  # the same run and playlists continue
    dvr = run / "source" / "dvr.m3u8"
    text = dvr.read_text()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert count_video_frames(dvr) == 70
    sessions = live.app[DB].transaction(lambda s: s.scalars(select(BroadcastSession).order_by(BroadcastSession.id)).all())
    assert len(sessions) == 2 and all(s.ended_at for s in sessions)


async def test_wrong_key_and_second_publisher_are_refused(live: Live) -> None:
    event = await live.create_event()
    wrong = await push_rtmp(f"{live.rtmp_base}/{'0' * 52}", seconds=3)
    assert await asyncio.wait_for(wrong.wait(), 15) != 0
    good = await push_rtmp(live.publish_url(event), seconds=6)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    second = await push_rtmp(live.publish_url(event), seconds=3)
    assert await asyncio.wait_for(second.wait(), 15) != 0
    assert good.returncode is None  # the first publisher is untouched
    metrics = await (await live.client.get("/metrics")).text()
    assert 'live_rejected_publishes_total{protocol="rtmp",reason="bad_key"} 1.0' in metrics
    assert 'live_rejected_publishes_total{protocol="rtmp",reason="already_live"} 1.0' in metrics
    assert await asyncio.wait_for(good.wait(), 20) == 0

    # A rotated key stops working for new publishes.
    await live.client.post(f"/api/v1/events/{event['id']}/stream-key", headers={"X-CSRF-Token": live.csrf})
    old = await push_rtmp(live.publish_url(event), seconds=2)
    assert await asyncio.wait_for(old.wait(), 15) != 0


@pytest.mark.live_settings(publish_takeover=True)
async def test_takeover_replaces_the_live_publisher(live: Live) -> None:
    """With takeover on, a second publisher (the backup encoder) replaces the first, which is dropped."""
    event = await live.create_event()
    first = await push_rtmp(live.publish_url(event), seconds=30)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    second = await push_rtmp(live.publish_url(event), seconds=8, readrate=FAST)  # what it sends is checked, not when
    assert await asyncio.wait_for(first.wait(), 10) != 0  # the first encoder lost its connection
    assert await asyncio.wait_for(second.wait(), 20) == 0  # the second published to the end

    async def sessions() -> list[BroadcastSession]:
        return await live.app[DB].run(lambda s: list(s.scalars(select(BroadcastSession).order_by(BroadcastSession.id))))

    # the server closes the second session once it has read the encoder's goodbye (just after ffmpeg exits)
    rows = await wait_for(lambda: _all_ended(sessions), 10, "both broadcast sessions to be closed")
    assert [r.end_reason for r in rows][0] == "taken over"
    assert len(rows) == 2 and rows[1].ended_at is not None
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    playlist = (live.folder(event["id"]) / "source" / "dvr.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY" in playlist and "#EXT-X-ENDLIST" in playlist


@pytest.mark.live_settings(rtmp_idle_timeout_seconds=2.5)  # the slow-loris is closed sooner; the good stream is never silent
async def test_bad_connections_do_not_disturb_a_good_stream(live: Live) -> None:
    event = await live.create_event()
    good = await push_rtmp(live.publish_url(event), seconds=8)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    port = live.app[RTMP].port
    loop = asyncio.get_running_loop()

    garbage = socket.create_connection(("127.0.0.1", port))
    garbage.sendall(b"\x03" + bytes(range(256)) * 40)
    slow = socket.create_connection(("127.0.0.1", port))  # slow-loris: connects, says nothing
    garbage.settimeout(5)
    slow.settimeout(6)
    assert await loop.run_in_executor(None, _drained, garbage)
    assert await loop.run_in_executor(None, _drained, slow)  # closed by the idle timeout

    assert good.returncode is None
    assert await asyncio.wait_for(good.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")
    playlist = live.folder(event["id"]) / "source" / "dvr.m3u8"
    assert "#EXT-X-DISCONTINUITY" not in playlist.read_text()
    assert decode_errors(playlist) == ""


async def test_media_routes_refuse_traversal_and_unknowns(live: Live) -> None:
    event = await live.create_event()
    for path in ("/live/nope/master.m3u8", f"/live/{event['slug']}/../../live.db", f"/live/{event['slug']}/%2e%2e/x.m3u8",
                 f"/live/{event['slug']}/source/seg.exe"):
        assert (await live.client.get(path)).status == 404, path


async def test_private_event_media_needs_a_pass(live: Live, aiohttp_client: Any) -> None:
    event = await live.create_event(visibility="password", password="open sesame")
    pusher = await push_rtmp(live.publish_url(event), seconds=4)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    stranger = await aiohttp_client(live.client.server)
    media = f"/live/{event['slug']}/master.m3u8"
    assert (await stranger.get(media)).status == 403
    page = await (await stranger.get(f"/events/{event['slug']}")).text()
    assert 'name="password"' in page and "data-src" not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    wrong = await stranger.post(f"/events/{event['slug']}/unlock", data={"password": "guess", "csrf_token": token})
    assert wrong.status == 403 and (await stranger.get(media)).status == 403
    right = await stranger.post(f"/events/{event['slug']}/unlock", data={"password": "open sesame", "csrf_token": token})
    assert right.status == 200 and "data-src" in await right.text()
    resp = await stranger.get(media)
    assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert await asyncio.wait_for(pusher.wait(), 20) == 0


async def _all_ended(sessions: Any) -> list[BroadcastSession] | None:
    rows = await sessions()
    return rows if rows and all(r.ended_at is not None for r in rows) else None


def _drained(sock: socket.socket) -> bool:
    """True once the server has closed the connection (reads EOF or a reset)."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    finally:
        sock.close()


@pytest.mark.live_settings(ll_hls=False)  # about ffmpeg's supervisor: the LL packager has no process to crash
async def test_packager_crash_is_restarted(live: Live) -> None:
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), seconds=30)  # stopped once a segment follows the restart
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    packager = live.app[LIVE].events[event["id"]].packager
    old_pid = packager.pid
    os.kill(old_pid, signal.SIGKILL)
    await wait_for(lambda: _restarted(live, event), 10, "the packager restart")
    assert packager.pid != old_pid
    # a segment from the restarted packager follows the discontinuity: the encoder is not needed any longer
    await wait_for(lambda: _segment_after_discontinuity(live, event), 10, "a segment after the restart")
    assert pusher.returncode is None  # the encoder never noticed
    await stop(pusher)
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end of the event")
    dvr = (live.folder(event["id"]) / "source" / "dvr.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY" in dvr  # after the crash, players are told to reset their decoders


async def _segment_after_discontinuity(live: Live, event: dict) -> bool:
    dvr = live.folder(event["id"]) / "source" / "dvr.m3u8"
    text = dvr.read_text() if dvr.exists() else ""
    return "#EXT-X-DISCONTINUITY\n" in text and "#EXTINF" in text.split("#EXT-X-DISCONTINUITY\n", 1)[1]


async def test_a_stalled_encoder_is_reported(live: Live) -> None:
    """Either packager: the encoder hangs but keeps its connection open; then it comes back."""
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), seconds=12)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    await wait_for(lambda: _segments_listed(live, event), 5, "a segment in the health figures")
    pusher.send_signal(signal.SIGSTOP)
    try:
        health = await wait_for(lambda: _stalled(live, event), 8, "the stall to be reported")
        assert health["healthy"] is False and health["publishing"] is True
    finally:
        pusher.send_signal(signal.SIGCONT)
    await wait_for(lambda: _healthy(live, event), 8, "health to come back with the media")
    await stop(pusher)


async def _segments_listed(live: Live, event: dict) -> bool:
    health = (await live.event(event["id"]))["stream"]["health"]
    return bool(health) and health["segments"] > 0 and health["packager_restarts"] == 0


async def _healthy(live: Live, event: dict) -> bool:
    health = (await live.event(event["id"]))["stream"]["health"]
    return bool(health) and health["healthy"] and not health["stalled"]


async def _restarted(live: Live, event: dict) -> bool:
    health = (await live.event(event["id"]))["stream"]["health"]
    return bool(health) and health["packager_restarts"] == 1 and health["segments"] > 0


async def _stalled(live: Live, event: dict) -> dict | None:
    health = (await live.event(event["id"]))["stream"]["health"]
    return health if health and health["stalled"] else None


@pytest.mark.live_settings(ll_hls=False)  # about ffmpeg's watchdog: the LL packager cuts segments itself, none can be owed
async def test_a_hung_packager_is_killed_and_restarted(live: Live) -> None:
    """ffmpeg alive but frozen (stopped here, a blocked disk in real life): the watchdog restarts it."""
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), seconds=16)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    packager = live.app[LIVE].events[event["id"]].packager
    frozen = packager.pid
    segments_before = packager.segments
    os.kill(frozen, signal.SIGSTOP)
    health = await wait_for(lambda: _owed(live, event), 10, "health to report the segment ffmpeg owes")
    assert health["healthy"] is False and health["stalled"] is False  # media flows; segments do not
    await wait_for(lambda: _restarted(live, event), 6 + 8, "the watchdog to restart the packager")
    assert packager.pid != frozen and packager.hung_kills == 1
    await wait_for(lambda: _async(packager.segments > segments_before + 1), 8, "new segments after the restart")
    assert pusher.returncode is None  # the encoder never noticed
    await stop(pusher)


async def _owed(live: Live, event: dict) -> dict | None:
    health = (await live.event(event["id"]))["stream"]["health"]
    return health if health and health["segment_overdue_seconds"] > 2.0 else None


async def _async(value: bool) -> bool:
    return value
