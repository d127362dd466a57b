"""WHIP wire formats: offer checks on captured offers (ffmpeg, Chromium, GStreamer) and broken or mutated ones,
the answer's refused sections, Link headers, trickle."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.whip.sdp import (
    IceServer, OfferError, ice_server_link, inspect_offer, parse_ice_server, parse_trickle_fragment, reject_sections,
)
from tests.ingest.whip.offers import DATA, FFMPEG_OFFER, mutate

CHROMIUM_OFFER = (DATA / "chromium_offer.sdp").read_bytes().decode()


def _drop(offer: str, pattern: str) -> str:
    return "\r\n".join(line for line in offer.splitlines() if not re.match(pattern, line)) + "\r\n"


def test_captured_offers_are_accepted() -> None:
    summary = inspect_offer(FFMPEG_OFFER)
    assert (summary.video, summary.audio, summary.kinds) == ("h264", "opus", ("video", "audio"))
    assert inspect_offer(CHROMIUM_OFFER).video == "h264"  # Chromium lists VP8 first; H.264 is kept as is


def test_vp8_only_offer_is_transcoded_or_refused() -> None:
    vp8_only = _drop(CHROMIUM_OFFER, r"a=(rtpmap|fmtp):(10[2-9]|11[4-9]|39|40|4[5-6]|98|99|100|101) ")
    assert inspect_offer(vp8_only).video == "vp8"
    with pytest.raises(OfferError) as err:
        inspect_offer(vp8_only, allow_vp8=False)
    assert err.value.status == 422 and err.value.message == (
        "unsupported video codecs (vp8); offer H.264 (packetization-mode=1, baseline profile)")


@pytest.mark.parametrize(("offer", "status", "message"), [
    ("", 400, "malformed SDP: an offer starts with the line v=0"),
    ("hello", 400, "malformed SDP: an offer starts with the line v=0"),
    ("v=0\r\nthis is not sdp\r\n", 400, "malformed SDP: line 2 is not <type>=<value>: 'this is not sdp'"),
    ("v=0\r\nm=video x\r\n", 400, "malformed SDP: bad media line 'm=video x'"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 422,
     "the offer sends no audio or video (no sendonly/sendrecv audio or video section)"),
])
def test_broken_offers_get_exact_errors(offer: str, status: int, message: str) -> None:
    with pytest.raises(OfferError) as err:
        inspect_offer(offer)
    assert (err.value.status, err.value.message) == (status, message)


def test_unusable_offers_say_what_to_change() -> None:
    cases = {
        FFMPEG_OFFER.replace("a=sendonly", "a=recvonly"): "the offer sends no audio or video",
        FFMPEG_OFFER.replace("opus/48000/2", "PCMU/8000"): "unsupported audio codecs (pcmu); offer Opus",
        FFMPEG_OFFER.replace("profile-level-id=42000c", "profile-level-id=64001f"): "unsupported video codecs (h264)",
        FFMPEG_OFFER.replace("packetization-mode=1", "packetization-mode=0"): "unsupported video codecs (h264)",
        _drop(FFMPEG_OFFER, "a=rtcp-mux"): "the audio section must use a=rtcp-mux",
        _drop(FFMPEG_OFFER, "a=ice-pwd"): "malformed SDP: the audio section has no a=ice-ufrag/a=ice-pwd",
        _drop(FFMPEG_OFFER, "a=fingerprint"): "malformed SDP: the audio section has no a=fingerprint (DTLS)",
        FFMPEG_OFFER + FFMPEG_OFFER[FFMPEG_OFFER.index("m=video"):].replace("a=mid:1", "a=mid:2"): "more than one video section",
    }
    for offer, message in cases.items():
        with pytest.raises(OfferError) as err:
            inspect_offer(offer)
        assert message in err.value.message


def test_oversized_offer_is_refused() -> None:
    with pytest.raises(OfferError, match="exceeds 65536 bytes"):
        inspect_offer(FFMPEG_OFFER + "a=x:" + "y" * 70_000 + "\r\n")


def test_ice_server_links() -> None:
    assert ice_server_link(parse_ice_server("stun:stun.example.edu:3478")) == '<stun:stun.example.edu:3478>; rel="ice-server"'
    turn = parse_ice_server("turns:turn.example.edu:5349?transport=tcp", "lect", 'pa"ss')
    assert turn == IceServer("turns:turn.example.edu:5349?transport=tcp", "lect", 'pa"ss')
    assert ice_server_link(turn) == ('<turns:turn.example.edu:5349?transport=tcp>; rel="ice-server"; '
                                     'username="lect"; credential="pa\\"ss"; credential-type="password"')
    with pytest.raises(ValueError, match="is not a stun:"):
        parse_ice_server("http://turn.example.edu")


def test_trickle_fragment() -> None:
    fragment = parse_trickle_fragment(
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=end-of-candidates\r\n"
    )
    assert fragment.ice_ufrag == "EsAw" and fragment.end_of_candidates
    assert fragment.candidates == [("0", "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0")]
    with pytest.raises(OfferError, match="malformed SDP fragment"):
        parse_trickle_fragment("garbage")
    for bad in ("a=candidate:garbage", "a=candidate:1 1 udp ² 192.0.2.1 9 typ host", "a=candidate:1 1 udp 1 192.0.2.1 9 typ"):
        with pytest.raises(OfferError, match="bad candidate line"):
            parse_trickle_fragment(bad)
    raddr = "a=candidate:2 1 udp 1686052607 198.51.100.7 61765 typ srflx raddr 192.0.2.1 rport 61764 generation 0"
    assert parse_trickle_fragment(raddr).candidates == [(None, raddr[2:])]


# --------------------------------------------------------------------------- BUNDLE (RFC 8843, JSEP)

GSTREAMER_MAX_BUNDLE = (DATA / "gstreamer_max_bundle_offer.sdp").read_bytes().decode()  # audio: port 0 + a=bundle-only
CHROMIUM_MAX_BUNDLE = (DATA / "chromium_max_bundle_offer.sdp").read_bytes().decode()  # video: port 9, no candidates
CHROMIUM_BALANCED = (DATA / "chromium_balanced_offer.sdp").read_bytes().decode()


@pytest.mark.parametrize("offer", [GSTREAMER_MAX_BUNDLE, CHROMIUM_MAX_BUNDLE, CHROMIUM_BALANCED, FFMPEG_OFFER])
def test_every_bundle_policy_sends_audio_and_video(offer: str) -> None:
    summary = inspect_offer(offer)
    assert (summary.video, summary.audio, summary.ignored_mids) == ("h264", "opus", ())


def test_bundle_only_section_sends_only_inside_a_bundle_group() -> None:
    assert re.search(r"m=audio 0 .*\r\n(.*\r\n)*a=bundle-only", GSTREAMER_MAX_BUNDLE)
    outside = GSTREAMER_MAX_BUNDLE.replace("a=group:BUNDLE video0 audio1", "a=group:BUNDLE video0")
    with pytest.raises(OfferError) as err:  # it would get a transport of its own that nobody connects
        inspect_offer(outside)
    assert (err.value.status, err.value.message) == (422, "the offer's audio section (a=mid:audio1) sends nothing and is "
                                                          "outside the BUNDLE group; leave it out of the offer or bundle it")
    disabled = _drop(GSTREAMER_MAX_BUNDLE, "a=bundle-only")  # port 0 without bundle-only: RFC 3264 "disabled"
    assert (inspect_offer(disabled).audio, inspect_offer(disabled).ignored_mids) == (None, ("audio1",))
    recvonly = CHROMIUM_BALANCED.replace("a=sendonly", "a=recvonly", 1)  # the audio section (first) receives only
    assert (inspect_offer(recvonly).audio, inspect_offer(recvonly).ignored_mids) == (None, ("0",))


def test_dtls_role_is_ours_only_when_every_section_says_actpass() -> None:
    assert inspect_offer(GSTREAMER_MAX_BUNDLE).dtls_role_ours and inspect_offer(CHROMIUM_MAX_BUNDLE).dtls_role_ours
    assert not inspect_offer(FFMPEG_OFFER).dtls_role_ours  # ffmpeg offers passive: the server must be client
    assert not inspect_offer(CHROMIUM_BALANCED.replace("a=setup:actpass", "a=setup:passive", 1)).dtls_role_ours


ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE video0 audio1\r\na=msid-semantic:WMS *\r\n"
    "m=video 40954 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\na=mid:video0\r\na=rtpmap:102 H264/90000\r\n"
    "m=audio 40954 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=recvonly\r\na=mid:audio1\r\na=rtpmap:111 opus/48000/2\r\n"
)


def test_bundle_group_names_only_sections_of_the_offer() -> None:
    with pytest.raises(OfferError) as err:
        inspect_offer(FFMPEG_OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 1"))
    assert (err.value.status, err.value.message) == (
        400, "malformed SDP: a=group:BUNDLE names '7', which is the a=mid of no m= section")
    with pytest.raises(OfferError, match="two m= sections have the same a=mid"):
        inspect_offer(FFMPEG_OFFER.replace("a=mid:1", "a=mid:0"))


def test_answer_refuses_the_sections_not_taken() -> None:
    assert reject_sections(ANSWER, ()) == ANSWER
    refused = reject_sections(ANSWER, ("audio1",))
    assert refused == ANSWER.replace("BUNDLE video0 audio1", "BUNDLE video0").replace(
        "m=audio 40954", "m=audio 0").replace("a=recvonly\r\na=mid:audio1", "a=inactive\r\na=mid:audio1")


# --------------------------------------------------------------------------- numbers, Unicode, fuzz

@pytest.mark.parametrize(("line", "message"), [
    ("m=video ² UDP/TLS/RTP/SAVPF 96", "malformed SDP: bad media line 'm=video ² UDP/TLS/RTP/SAVPF 96'"),
    ("m=video ٩ UDP/TLS/RTP/SAVPF 96", "malformed SDP: bad media line 'm=video ٩ UDP/TLS/RTP/SAVPF 96'"),
    ("m=video 99999 UDP/TLS/RTP/SAVPF 96", "malformed SDP: bad media line 'm=video 99999 UDP/TLS/RTP/SAVPF 96'"),
    ("m=video " + "9" * 5000 + " UDP/TLS/RTP/SAVPF 96", "malformed SDP: bad media line 'm=video " + "9" * 72 + "'"),
    ("a=rtpmap:¹¹¹ opus/48000/2", "malformed SDP: bad a=rtpmap line 'a=rtpmap:¹¹¹ opus/48000/2'"),
    ("a=fmtp:１０２ packetization-mode=1", "malformed SDP: bad a=fmtp line 'a=fmtp:１０２ packetization-mode=1'"),
    ("a=rtpmap:300 opus/48000/2", "malformed SDP: bad a=rtpmap line 'a=rtpmap:300 opus/48000/2'"),
    ("ª=x", "malformed SDP: line 2 is not <type>=<value>: 'ª=x'"),
])
def test_numbers_are_ascii_digits_in_range(line: str, message: str) -> None:
    with pytest.raises(OfferError) as err:
        inspect_offer(f"v=0\r\n{line}\r\n" if line.startswith("ª") else FFMPEG_OFFER + line + "\r\n")
    assert (err.value.status, err.value.message) == (400, message)


FIXTURES = [FFMPEG_OFFER, CHROMIUM_OFFER, GSTREAMER_MAX_BUNDLE, CHROMIUM_MAX_BUNDLE]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fixture=st.sampled_from(FIXTURES), seed=st.integers(0, 2**32), count=st.integers(1, 8))
def test_mutated_offers_raise_only_offer_errors(fixture: str, seed: int, count: int) -> None:
    text = mutate(fixture, seed, count)
    try:
        summary = inspect_offer(text)
    except OfferError as exc:
        assert exc.status in (400, 422) and exc.message
        return
    assert summary.kinds  # accepted offers always send something we take
    try:
        parse_trickle_fragment(text)
    except OfferError as exc:
        assert exc.status == 400
