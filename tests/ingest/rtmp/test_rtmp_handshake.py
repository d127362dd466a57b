"""Server handshake: plain and digest (librtmp/OBS/ffmpeg) clients, bad version bytes."""

from __future__ import annotations

import pytest

from ingest.rtmp.handshake import HANDSHAKE_SIZE, HandshakeError, ServerHandshake
from tests.ingest.rtmp.rtmp_captures import CAPTURES, librtmp_c1, plain_handshake, verify_server_response


def respond(c0c1: bytes) -> tuple[bytes, bytes, bytes, ServerHandshake]:
    hs = ServerHandshake()
    out = hs.feed(c0c1)
    assert len(out) == 1 + 2 * HANDSHAKE_SIZE
    return out[:1], out[1 : 1 + HANDSHAKE_SIZE], out[1 + HANDSHAKE_SIZE :], hs


def test_plain_handshake_echoes_c1() -> None:
    c1 = bytes(8) + bytes(range(256)) * 6
    s0, s1, s2, hs = respond(b"\x03" + c1[:HANDSHAKE_SIZE])
    assert s0 == b"\x03"
    assert s1[4:8] == b"\0\0\0\0"
    assert s2 == c1[:HANDSHAKE_SIZE]
    assert hs.digest_schema is None and not hs.done
    assert hs.feed(bytes(HANDSHAKE_SIZE) + b"connect...") == b""
    assert hs.done and hs.surplus == b"connect..."


@pytest.mark.parametrize("schema", [0, 1])
def test_digest_captures_get_a_verifiable_answer(schema: int) -> None:
    capture = (CAPTURES / f"digest_c1_schema{schema}.bin").read_bytes()
    c1 = capture[1 : 1 + HANDSHAKE_SIZE]
    _, s1, s2, hs = respond(capture[: 1 + HANDSHAKE_SIZE])
    assert hs.digest_schema == schema
    verify_server_response(c1, s1, s2, schema)
    hs.feed(capture[1 + HANDSHAKE_SIZE :])
    assert hs.done and hs.surplus == b""


def test_real_ffmpeg_c1_is_digest_style() -> None:
    capture = (CAPTURES / "ffmpeg_h264_aac.bin").read_bytes()
    c1 = capture[1 : 1 + HANDSHAKE_SIZE]
    assert c1[4:8] == bytes((9, 0, 124, 2))  # ffmpeg's "Flash Player version"
    _, s1, s2, hs = respond(capture[: 1 + HANDSHAKE_SIZE])
    assert hs.digest_schema == 0
    verify_server_response(c1, s1, s2, 0)


def test_fp9_version_without_digest_gets_plain_answer() -> None:
    c1 = b"\0\0\0\0\x80\x00\x07\x02" + bytes(HANDSHAKE_SIZE - 8)
    _, s1, s2, hs = respond(b"\x03" + c1)
    assert hs.digest_schema is None and s2 == c1


def test_byte_by_byte() -> None:
    data = b"\x03" + librtmp_c1(1, seed=9) + bytes(HANDSHAKE_SIZE) + b"\x02"
    hs = ServerHandshake()
    out = b"".join(hs.feed(data[i : i + 1]) for i in range(len(data)))
    assert len(out) == 1 + 2 * HANDSHAKE_SIZE
    assert hs.done and hs.surplus == b"\x02"


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (b"\x05", "unsupported RTMP version byte 0x05 (expected 0x03)"),
        (b"GET / HTTP/1.1\r\n", "unsupported RTMP version byte 0x47 (expected 0x03)"),
        (b"\x06", "encrypted RTMP (RTMPE, version byte 6) is not supported"),
        (b"\x16\x03\x01", "client sent a TLS handshake (rtmps://) to a plain RTMP port"),
    ],
)
def test_bad_version_fails_on_first_byte(first: bytes, message: str) -> None:
    with pytest.raises(HandshakeError) as excinfo:
        ServerHandshake().feed(first)
    assert str(excinfo.value) == message


def test_plain_preamble_helper_is_a_complete_handshake() -> None:
    hs = ServerHandshake()
    hs.feed(plain_handshake())
    assert hs.done and hs.surplus == b""
