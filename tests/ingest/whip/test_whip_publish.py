"""WHIP through the whole server: ffmpeg's ``whip`` muxer publishing, HLS out, and the refusals."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from live_server.db import DB
from ingest.live import LIVE
from ingest.whip.handlers import WHIP
from live_server.models import BroadcastSession
from tests.ingest.live import LONG_GRACE, Live, event_state_is, wait_for
from tests.ingest.whip.ffmpeg_whip import WHIP_SETTINGS, push_whip
from tests.ingest.whip.media import listed_segment
from tests.media import FFMPEG, count_video_frames, decode_errors, stop

DATA = Path(__file__).parent / "data"
#: A real Chromium offer (H.264/VP8/Opus); its candidates (192.0.2.2, fd00::2) are unreachable from here.
CHROMIUM_OFFER = (DATA / "chromium_offer.sdp").read_bytes().decode()


class Publisher:
    """A WHIP client with no cookies (the test client is logged in as the lecturer; encoders are not)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.http = aiohttp.ClientSession()

    async def __aenter__(self) -> "Publisher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def request(self, method: str, path: str, body: str | bytes | None = None, **headers: str) -> tuple[int, str, Any]:
        data = body.encode() if isinstance(body, str) else body
        async with self.http.request(method, self.live.client.make_url(path), data=data, headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers


def _sessions(live: Live) -> list[Any]:
    return live.app[DB].transaction(lambda s: s.scalars(select(BroadcastSession).order_by(BroadcastSession.id)).all())


def _audio_codec(path: Path) -> str:
    import subprocess

    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30)
    match = re.search(r"Audio: (\w+)", out.stderr)
    return match.group(1) if match else ""


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_ffmpeg_whip_publish_goes_live_plays_and_ends(live: Live, tmp_path: Path) -> None:
    event = await live.create_event(dvr=True)
    assert event["stream"]["whip_url"].endswith("/whip")
    pusher = await push_whip(str(live.client.make_url("/whip")), event["stream"]["whip_bearer_token"], frames=75, fps=15)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "the event to go live over WHIP")
        health = (await live.event(event["id"]))["stream"]["health"]
        assert health["publishing"] and health["protocol"] == "whip"
        master = await (await live.client.get(f"/live/{event['slug']}/master.m3u8")).text()
        assert "RESOLUTION=320x240" in master  # read from the H.264 SPS
        (session,) = live.app[WHIP].sessions.values()
        assert session.summary.video == "h264" and session.health()["announced"] is True
    finally:
        _, stderr = await asyncio.wait_for(pusher.communicate(), 30)
    assert pusher.returncode == 0, stderr.decode()[-2000:]
    # ffmpeg sends DELETE at the end (it logs a failure reading our 200: its quirk); then the grace period.
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the event to end after the grace period")
    assert live.app[WHIP].sessions == {}

    folder = live.folder(event["id"])
    dvr = folder / "source" / "dvr.m3u8"
    assert dvr.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    frames = count_video_frames(dvr)
    assert 70 <= frames <= 75, frames  # H.264 kept as is: frames in = frames out (loopback loses nothing)
    assert decode_errors(dvr) == ""
    assert _audio_codec(listed_segment(dvr, 1, tmp_path)) == "aac"  # Opus → AAC
    (row,) = _sessions(live)
    assert row.protocol == "whip" and row.ended_at is not None and "DELETE" in (row.end_reason or "")


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_bad_requests_get_clear_errors(live: Live) -> None:
    event = await live.create_event()
    key = event["stream"]["whip_bearer_token"]

    async def post(body: str, token: str | None = key, content_type: str = "application/sdp") -> tuple[int, str, Any]:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with Publisher(live) as client:
            return await client.request("POST", "/whip", body, **headers)

    status, text, headers = await post(CHROMIUM_OFFER, token=None)
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "stream key" in text
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, text, _ = await post(CHROMIUM_OFFER, token="0" * 52)
    assert status == 401 and "unknown or revoked stream key" in text
    status, text, _ = await post(CHROMIUM_OFFER, content_type="application/json")
    assert status == 415
    status, text, _ = await post("hello, this is not SDP")
    assert status == 400 and "malformed SDP" in text
    status, text, _ = await post(CHROMIUM_OFFER + "a=x:" + "y" * 70_000 + "\r\n")
    assert status == 413 and "exceeds 65536 bytes" in text
    no_media = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    status, text, _ = await post(no_media)
    assert status == 422 and "no audio or video" in text
    av1_only = re.sub(r"m=video (\d+) (\S+) [\d ]+", r"m=video \1 \2 45", CHROMIUM_OFFER)
    av1_only = "\r\n".join(line for line in av1_only.splitlines()
                           if not re.match(r"a=(rtpmap|fmtp|rtcp-fb):(?!45 |111 |63 |9 |0 |8 |13 |110 |126 )\d+", line))
    status, text, _ = await post(av1_only)
    assert status == 422 and "unsupported video codecs (av1)" in text and "H.264" in text
    metrics = await (await live.client.get("/metrics")).text()
    assert 'live_rejected_publishes_total{protocol="whip",reason="bad_key"} 1.0' in metrics
    assert (await live.event(event["id"]))["state"] == "scheduled"
    assert live.app[WHIP].sessions == {}

    # Session URLs: unknown → 404; GET is not a WHIP method.
    async with Publisher(live) as client:
        assert (await client.request("DELETE", "/whip/session/nope"))[0] == 404
        assert (await client.request("GET", "/whip/session/nope"))[0] == 405


@pytest.mark.live_settings(**WHIP_SETTINGS, grace_period_seconds=LONG_GRACE)
async def test_second_publisher_409_delete_then_grace_ends(live: Live) -> None:
    event = await live.create_event()
    key = event["stream"]["whip_bearer_token"]
    pusher = await push_whip(str(live.client.make_url("/whip")), key, seconds=30)
    client = Publisher(live)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        status, text, _ = await client.request("POST", "/whip", CHROMIUM_OFFER, **{
            "Content-Type": "application/sdp", "Authorization": f"Bearer {key}"})
        assert status == 409 and "already has a publisher" in text
        (session,) = live.app[WHIP].sessions.values()
        url = f"/whip/session/{session.id}"
        assert (await client.request("DELETE", url, Authorization="Bearer wrong"))[0] == 401
        status, _, headers = await client.request("PATCH", url, "a=end-of-candidates\r\n", **{"Content-Type": "text/plain"})
        assert status == 415 and headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        for bad in ("a=candidate:garbage", "a=candidate:1 1 udp ² 127.0.0.1 9 typ host"):
            status, text, _ = await client.request("PATCH", url, bad + "\r\n", **{"Content-Type": "application/trickle-ice-sdpfrag"})
            assert status == 400 and "malformed SDP fragment" in text, (bad, status, text)
        frag = "a=ice-ufrag:restart1\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
        status, text, _ = await client.request("PATCH", url, frag, **{"Content-Type": "application/trickle-ice-sdpfrag"})
        assert status == 422 and "ICE restarts are not supported" in text
        status, _, _ = await client.request("DELETE", url, Authorization=f"Bearer {key}")
        assert status == 200
        assert live.app[WHIP].sessions == {}
        health = (await live.event(event["id"]))["stream"]["health"]
        assert health["in_grace_period"] and not health["publishing"]
        assert (await live.event(event["id"]))["state"] == "live"  # within the grace period (LONG_GRACE)
        await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end after the grace period")
    finally:
        await client.http.close()
        await stop(pusher)
    rows = _sessions(live)
    assert [r.protocol for r in rows] == ["whip"] and "DELETE" in (rows[0].end_reason or "")
    metrics = await (await live.client.get("/metrics")).text()
    assert 'live_rejected_publishes_total{protocol="whip",reason="already_live"} 1.0' in metrics


# No transcription worker: idle, it waits for jobs 5 s at a time, each wait a new task, which a test longer
# than that on a loaded machine would count as left behind.
@pytest.mark.live_settings(**WHIP_SETTINGS, transcription_workers=0)
async def test_peer_that_never_connects_is_closed_and_leaves_nothing(live: Live) -> None:
    event = await live.create_event()
    before = set(asyncio.all_tasks())
    async with Publisher(live) as client:
        status, answer, headers = await client.request("POST", "/whip", CHROMIUM_OFFER, **{
            "Content-Type": "application/sdp", "Authorization": f"Bearer {event['stream']['whip_bearer_token']}"})
    assert status == 201, answer
    assert "a=candidate:" in answer and "127.0.0.1" in answer  # all candidates gathered, on the configured address
    assert re.search(r"a=rtpmap:\d+ H264/90000", answer) and "VP8" not in answer.split("m=video")[1].split("a=rtpmap")[1]
    assert headers["Location"].startswith("/whip/session/")
    assert headers["Content-Type"] == "application/sdp"
    assert live.app[WHIP].sessions
    (session,) = live.app[WHIP].sessions.values()
    health = (await live.event(event["id"]))["stream"]["health"]
    assert (health["bytes_in"], health["video_frames"], health["audio_frames"]) == (0, 0, 0)
    assert session.health()["announced"] is False  # no metadata either: nothing reaches the sink before a frame

    await wait_for(lambda: _no_sessions(live), 10, "the ICE timeout (3 s) to close the session")
    (row,) = _sessions(live)
    assert "not connected after 3 s" in (row.end_reason or "")
    await wait_for(lambda: _no_live_events(live), 10, "the grace period to end the run")
    await asyncio.sleep(0.2)
    leftover = [t for t in set(asyncio.all_tasks()) - before if not t.done() and t is not asyncio.current_task()]
    assert leftover == [], leftover  # no peer-connection, ICE, converter or packager task is left
    # No converter ("whip-…") or aiortc decoder ("video-decoder") thread either (the catalog's pool may grow).
    assert not [t.name for t in threading.enumerate() if t.name.startswith("whip-") or t.name.endswith("-decoder")]
    assert (await live.event(event["id"]))["state"] == "scheduled"  # it never went live
    async with Publisher(live) as client:
        assert (await client.request("DELETE", headers["Location"]))[0] == 404


async def _no_sessions(live: Live) -> bool:
    return not live.app[WHIP].sessions


async def _no_live_events(live: Live) -> bool:
    return not live.app[LIVE].events


@pytest.mark.live_settings(whip_ice_servers="stun:stun.example.edu:3478,turn:turn.example.edu:3478?transport=udp",
                           whip_turn_username="lecturer", whip_turn_credential="s3cret")
async def test_options_answers_cors_and_ice_servers(live: Live) -> None:
    resp = await live.client.options("/whip", headers={"Origin": "https://studio.example.org",
                                                       "Access-Control-Request-Method": "POST"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Accept-Post"] == "application/sdp"
    assert resp.headers.getall("Link") == [
        '<stun:stun.example.edu:3478>; rel="ice-server"',
        '<turn:turn.example.edu:3478?transport=udp>; rel="ice-server"; username="lecturer"; credential="s3cret"; '
        'credential-type="password"',
    ]
    resp = await live.client.options("/whip/session/x")
    assert resp.status == 204 and "DELETE" in resp.headers["Access-Control-Allow-Methods"]


#: Lines our offer check passes on to aiortc's parser: numbers and names only aiortc reads.
AIORTC_LINES = ["a=setup:bogus", "a=ssrc:² cname:x", "a=rtcp:² IN IP4 0.0.0.0", "a=extmap:² urn:x",
                "a=candidate:1 1 udp ² 127.0.0.1 9 typ host", "a=candidate:1 1 udp 1 127.0.0.1 ² typ host",
                "a=fmtp:105 apt=²", "a=rtcp-fb:² nack", "a=ssrc-group:FID ² ³", "c=IN IP4 ²", "a=sctp-port:²",
                "a=candidate:garbage", "a=ice-ufrag:", "a=fingerprint:sha-256 ZZ", "a=fingerprint:md5 00", "a=mid:"]


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_mutated_offers_get_4xx_and_no_traceback(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    from tests.ingest.whip.offers import FFMPEG_OFFER as FFMPEG_SDP, mutate

    caplog.set_level(logging.INFO)
    event = await live.create_event()
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {event['stream']['whip_bearer_token']}"}
    offers = [mutate(base, seed, 1 + seed % 4) for seed in range(24) for base in (FFMPEG_SDP, CHROMIUM_OFFER)]
    offers += [FFMPEG_SDP.replace("a=mid:1\r\n", f"a=mid:1\r\n{line}\r\n") for line in AIORTC_LINES]
    statuses: list[int] = []
    async with Publisher(live) as client:
        for offer in offers:
            status, text, resp_headers = await client.request("POST", "/whip", offer.encode("utf-8", "surrogatepass"), **headers)
            statuses.append(status)
            assert status == 201 or 400 <= status < 500, (status, text, offer)
            if status == 201:
                assert (await client.request("DELETE", resp_headers["Location"]))[0] == 200
    assert statuses.count(201) < len(statuses) // 2 and 400 in statuses and 422 in statuses, statuses
    problems = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert problems == [], [r.getMessage() for r in problems]
    assert live.app[WHIP].sessions == {}


@pytest.mark.live_settings(**WHIP_SETTINGS, whip_max_sessions=20)
async def test_concurrent_posts_respect_the_session_limit(live: Live) -> None:
    events = [await live.create_event(title=f"Lecture {n}") for n in range(40)]
    async with Publisher(live) as client:
        results = await asyncio.gather(*(client.request("POST", "/whip", CHROMIUM_OFFER, **{
            "Content-Type": "application/sdp", "Authorization": f"Bearer {e['stream']['whip_bearer_token']}"})
            for e in events))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [201] * 20 + [503] * 20, statuses
        assert len(live.app[WHIP].sessions) == 20 and live.app[WHIP].reserved == 0
        assert all(h["Retry-After"] == "5" for status, _, h in results if status == 503)
        for status, _, headers in results:
            if status == 201:
                assert (await client.request("DELETE", headers["Location"]))[0] == 200
    assert live.app[WHIP].sessions == {}


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_section_the_server_does_not_take_is_refused_in_the_answer(live: Live) -> None:
    """aiortc as a third publisher: video plus a bundled receive-only audio section, which the answer refuses."""
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

    event = await live.create_event()
    publisher = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
        publisher.addTransceiver("audio", direction="recvonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        async with Publisher(live) as client:
            status, answer, _ = await client.request("POST", "/whip", publisher.localDescription.sdp, **{
                "Content-Type": "application/sdp", "Authorization": f"Bearer {event['stream']['whip_bearer_token']}"})
            assert status == 201, answer
            assert re.search(r"^m=audio 0 ", answer, re.M) and "a=group:BUNDLE 0\r\n" in answer, answer
            await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live from aiortc")
            (session,) = live.app[WHIP].sessions.values()
            assert (session.summary.video, session.summary.audio) == ("h264", None)
            # Unbundled, the same unused section would get a transport nobody connects: refused up front.
            unbundled = publisher.localDescription.sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")
            status, text, _ = await client.request("POST", "/whip", unbundled, **{
                "Content-Type": "application/sdp", "Authorization": f"Bearer {event['stream']['whip_bearer_token']}"})
            assert status == 422 and "outside the BUNDLE group" in text
    finally:
        await publisher.close()
