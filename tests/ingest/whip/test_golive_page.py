"""The lecturer goes live from the event page in Chromium (fake camera and microphone) over WHIP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ingest.whip.handlers import WHIP
from tests.ingest.live import Live, event_state_is, wait_for
from tests.ingest.whip.ffmpeg_whip import WHIP_SETTINGS
from tests.ingest.whip.media import listed_segment, stream_codecs
from tests.media import count_video_frames, decode_errors
from tests.support import REALTIME_SPEECH


async def _owner_page(live: Live, browser: Any, slug: str, init_script: str | None = None) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context()
    cookie = live.client.session.cookie_jar.filter_cookies(live.client.make_url("/"))["live_session"]
    await context.add_cookies([{"name": "live_session", "value": cookie.value, "url": str(live.client.make_url("/"))}])
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/events/{slug}")))
    return context, page, errors


#: The page asks for max-bundle (one transport); the W3C default "balanced" offers a transport per kind.
#: Records the policy each peer connection really has; FORCE overrides the page's choice.
BUNDLE_POLICY = """
const FORCE = %s;
const NativePeerConnection = window.RTCPeerConnection;
window.bundlePolicies = [];
window.RTCPeerConnection = function (config) {
  const pc = new NativePeerConnection(FORCE ? {...(config || {}), bundlePolicy: FORCE} : config);
  window.bundlePolicies.push(pc.getConfiguration().bundlePolicy);
  return pc;
};
window.RTCPeerConnection.prototype = NativePeerConnection.prototype;
"""


@pytest.mark.parametrize("bundle_policy", ["max-bundle", "balanced"])
@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_lecturer_goes_live_from_the_event_page(live: Live, webrtc_browser: Any, bundle_policy: str,
                                                     tmp_path: Path) -> None:
    event = await live.create_event(dvr=True)
    init = BUNDLE_POLICY % ('"balanced"' if bundle_policy == "balanced" else "null")
    context, page, errors = await _owner_page(live, webrtc_browser, event["slug"], init)
    try:
        assert await page.inner_text("#golive-title") == "Go live from this browser"
        await page.click("#golive-preview-button")
        await page.wait_for_function("() => document.getElementById('golive-preview').videoWidth > 0", timeout=10_000)
        assert await page.locator("#golive-camera option").count() >= 1
        await page.click("#golive-start")
        await page.wait_for_function("() => document.getElementById('golive-state').dataset.state === 'live'", timeout=20_000)
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live from the browser")
        (session,) = live.app[WHIP].sessions.values()
        assert session.summary.video in ("h264", "vp8") and session.summary.audio == "opus"
        assert await page.evaluate("() => window.bundlePolicies") == [bundle_policy]
        health = (await live.event(event["id"]))["stream"]["health"]
        assert health["protocol"] == "whip"
        await page.wait_for_timeout(2000)
        assert session.stats.audio_tags_out > 0 and session.stats.video_tags_out > 0
        await page.click("#golive-stop")
        assert await page.get_attribute("#golive-state", "data-state") == "stopped"
        await wait_for(lambda: _no_sessions(live), 10, "the browser's DELETE to end the session")
        await wait_for(lambda: event_state_is(live, event, "ended"), 10, "the end after the grace period")
        assert errors == []
    finally:
        await context.close()
    source = live.folder(event["id"]) / "source"
    assert count_video_frames(source / "dvr.m3u8") >= 30
    assert {"video:h264", "audio:aac"} <= set(stream_codecs(listed_segment(source / "dvr.m3u8", -1, tmp_path)))


async def _no_sessions(live: Live) -> bool:
    return not live.app[WHIP].sessions


DENY_CAMERA = """
navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""
NO_WEBRTC = "delete window.RTCPeerConnection;"


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_clear_messages_when_camera_denied_or_webrtc_blocked(live: Live, webrtc_browser: Any) -> None:
    event = await live.create_event()
    context, page, _ = await _owner_page(live, webrtc_browser, event["slug"], DENY_CAMERA)
    try:
        await page.click("#golive-start")
        await page.wait_for_selector("#golive-message:not([hidden])")
        assert "access was denied" in await page.inner_text("#golive-message")
        assert await page.get_attribute("#golive-state", "data-state") == "failed"
    finally:
        await context.close()
    context, page, _ = await _owner_page(live, webrtc_browser, event["slug"], NO_WEBRTC)
    try:
        assert "WebRTC is turned off or blocked" in await page.inner_text("#golive-message")
        assert await page.is_disabled("#golive-start")
    finally:
        await context.close()
    assert live.app[WHIP].sessions == {}

    # Viewers (not the owner) never see the control.
    anonymous = await webrtc_browser.new_page()
    await anonymous.goto(str(live.client.make_url(f"/events/{event['slug']}")))
    assert await anonymous.locator("#golive").count() == 0
    await anonymous.close()


#: A browser that will not send H.264 (e.g. Firefox without OpenH264): its video offer is VP8 only.
VP8_ONLY = """
const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
  const transceiver = addTransceiver.call(this, trackOrKind, init);
  if ((trackOrKind.kind || trackOrKind) === "video") {
    transceiver.setCodecPreferences(RTCRtpReceiver.getCapabilities("video").codecs.filter(c => /vp8|rtx/i.test(c.mimeType)));
    transceiver.setCodecPreferences = () => {};
  }
  return transceiver;
};
"""


@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_vp8_only_browser_is_transcoded_to_h264(live: Live, webrtc_browser: Any) -> None:
    event = await live.create_event(dvr=True)
    context, page, errors = await _owner_page(live, webrtc_browser, event["slug"], VP8_ONLY)
    try:
        await page.click("#golive-start")
        await page.wait_for_function("() => document.getElementById('golive-state').dataset.state === 'live'", timeout=20_000)
        (session,) = live.app[WHIP].sessions.values()
        assert session.summary.video == "vp8"
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live through the VP8 transcode")
        master = await (await live.client.get(f"/live/{event['slug']}/master.m3u8")).text()
        assert "avc1." in master and "RESOLUTION=" in master
        await page.click("#golive-stop")
        await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end after the grace period")
        assert errors == []
    finally:
        await context.close()
    dvr = live.folder(event["id"]) / "source" / "dvr.m3u8"
    assert count_video_frames(dvr) >= 15
    assert decode_errors(dvr) == ""


@pytest.mark.parametrize("abr", [False, pytest.param(True, marks=pytest.mark.xdist_group(REALTIME_SPEECH))],
                         ids=["source", "ladder"])  # the ladder transcodes in real time: never beside live captions
@pytest.mark.live_settings(**WHIP_SETTINGS, ll_hls=True)
async def test_vp8_only_browser_gets_ll_hls(live: Live, webrtc_browser: Any, abr: bool) -> None:
    """With ``ll_hls`` on, VP8 (transcoded to H.264 in the WHIP session) is packaged as LL-HLS: as it is,
    or through the ladder's transcoder, into the same fMP4 muxer."""
    event = await live.create_event(dvr=True, abr=abr)
    # The ladder keeps the rungs no taller than the tallest picture of the first seconds
    # (whip_ladder_settle_seconds), and a browser's WebRTC encoder may still be below its camera's size then,
    # while it probes the bandwidth (more so on a loaded machine): the master says which.
    rendition = "source"
    context, page, errors = await _owner_page(live, webrtc_browser, event["slug"], VP8_ONLY)
    try:
        await page.click("#golive-start")
        await page.wait_for_function("() => document.getElementById('golive-state').dataset.state === 'live'", timeout=20_000)
        (session,) = live.app[WHIP].sessions.values()
        assert session.summary.video == "vp8"
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "the event to go live through the VP8 transcode")

        async def parts() -> str | None:
            nonlocal rendition
            if abr:
                master = await (await live.client.get(f"/live/{event['slug']}/master.m3u8")).text()
                first = re.search(r"^([A-Za-z0-9_-]+)/live\.m3u8$", master, re.M)
                if first is None or first.group(1) == "audio":
                    return None
                rendition = first.group(1)
            resp = await live.client.get(f"/live/{event['slug']}/{rendition}/live.m3u8")
            text = await resp.text()
            return text if resp.status == 200 and "#EXT-X-PART:" in text else None
        text = await wait_for(parts, 20, "LL parts")
        assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in text and ("#EXT-X-RENDITION-REPORT:" in text) == abr
        master = await (await live.client.get(f"/live/{event['slug']}/master.m3u8")).text()
        assert "avc1." in master and "RESOLUTION=" in master
        await page.click("#golive-stop")
        await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end after the grace period")
        assert errors == []
    finally:
        await context.close()
    dvr = live.folder(event["id"]) / rendition / "dvr.m3u8"
    assert dvr.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert count_video_frames(dvr) >= 15
    assert decode_errors(dvr) == ""
