"""The DTLS choices made for aiortc: applied on the tested version, said once and skipped on any other."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import SRTP_PROFILES
from OpenSSL import SSL

from ingest.whip.dtls import TESTED_AIORTC, DtlsPolicy, RsaCapableCertificate

ROOT = Path(__file__).parents[3]
FFMPEG_OFFER = (Path(__file__).parent / "data" / "ffmpeg_offer.sdp").read_bytes().decode()  # a=setup:passive


def _ciphers(pc: RTCPeerConnection) -> list[str]:
    (certificate,) = pc._RTCPeerConnection__certificates  # type: ignore[attr-defined]
    return SSL.Connection(certificate._create_ssl_context(srtp_profiles=SRTP_PROFILES)).get_cipher_list()


def test_pyproject_pins_the_tested_minor_version() -> None:
    major, minor = TESTED_AIORTC.split(".")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aiortc>={TESTED_AIORTC},<{major}.{int(minor) + 1}" in deps
    assert aiortc.__version__.startswith(TESTED_AIORTC + ".")


async def test_tested_version_takes_rsa_servers_and_chooses_the_server_role() -> None:
    policy = DtlsPolicy()
    assert policy.unsupported is None
    pc = RTCPeerConnection()
    try:
        policy.prepare(pc)
        assert "ECDHE-RSA-AES128-GCM-SHA256" in _ciphers(pc) and "ECDHE-ECDSA-AES128-GCM-SHA256" in _ciphers(pc)
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setRemoteDescription(RTCSessionDescription(FFMPEG_OFFER, "offer"))
        # ffmpeg offers passive (it is DTLS server): the server stays client whatever it is told.
        assert policy.choose_server_role(pc, offer_lets_us_choose=False) == ["client"]
        answer = await pc.createAnswer()
        assert "a=setup:active" in answer.sdp
    finally:
        await pc.close()
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setRemoteDescription(RTCSessionDescription(FFMPEG_OFFER.replace("a=setup:passive", "a=setup:actpass"), "offer"))
        assert policy.choose_server_role(pc, offer_lets_us_choose=True) == ["server"]
        answer = await pc.createAnswer()
        assert "a=setup:passive" in answer.sdp and "a=setup:active" not in answer.sdp
    finally:
        await pc.close()


@pytest.mark.parametrize("version", ["1.15.2", "1.17.0", "2.0.0"])
async def test_other_versions_keep_aiortc_defaults_and_say_so_once(version: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.whip.dtls"):
        policy = DtlsPolicy(version)
        pc = RTCPeerConnection()
        try:
            policy.prepare(pc)
            pc.addTransceiver("video", direction="recvonly")
            await pc.setRemoteDescription(RTCSessionDescription(FFMPEG_OFFER.replace("a=setup:passive", "a=setup:actpass"), "offer"))
            assert policy.choose_server_role(pc, offer_lets_us_choose=True) == ["client"]
        finally:
            await pc.close()
    assert not isinstance(pc._RTCPeerConnection__certificates[0], RsaCapableCertificate)  # type: ignore[attr-defined]
    # (only what the version check says: a previous test's session may still log its own end meanwhile)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("WHIP: aiortc")] == [
        f"WHIP: aiortc {version} is not the tested {TESTED_AIORTC}.x; keeping aiortc's DTLS defaults (DTLS client, "
        "ECDSA suites only): peers with RSA certificates (e.g. GStreamer webrtcbin) may fail with 'no shared cipher'"
    ]
