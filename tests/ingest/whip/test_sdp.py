"""WHIP wire formats: offer checks on captured offers (ffmpeg, Chromium) and broken ones, Link headers, trickle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.whip.sdp import (
    IceServer, OfferError, ice_server_link, inspect_offer, parse_ice_server, parse_trickle_fragment,
)

DATA = Path(__file__).parent / "data"
FFMPEG_OFFER = (DATA / "ffmpeg_offer.sdp").read_bytes().decode()
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
        FFMPEG_OFFER + FFMPEG_OFFER[FFMPEG_OFFER.index("m=video"):]: "more than one video section",
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
