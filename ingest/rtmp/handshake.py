"""Server side of the RTMP handshake (C0/C1/C2 -> S0/S1/S2), without I/O.

Two flavours exist in the wild. The plain one from the spec (random bytes, S2 echoes C1)
and the "digest" one introduced with Flash Player 9 that librtmp, OBS and ffmpeg use: C1
carries an HMAC-SHA256 at a position derived from four bytes of C1 itself, either in the
first half (schema 0: offset from bytes 8..11) or the second half (schema 1: offset from
bytes 772..775). When C1 has such a digest we answer in kind, so clients that verify the
server (ffmpeg when playing, librtmp with a SWF hash) are satisfied; otherwise we answer
plainly. C2 is not checked, as clients differ in what they put there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final

__all__ = [
    "HANDSHAKE_SIZE",
    "HandshakeError",
    "ServerHandshake",
    "CLIENT_KEY",
    "SERVER_KEY",
    "digest_offset",
    "find_digest",
    "make_digest",
    "imprint_digest",
]

RTMP_VERSION: Final = 3
HANDSHAKE_SIZE: Final = 1536
DIGEST_SIZE: Final = 32

_KEY_TAIL: Final = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
#: Flash Player key; its first 30 bytes sign C1.
CLIENT_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
#: Flash Media Server key; its first 36 bytes sign S1, all 68 derive the S2 key.
SERVER_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
_SERVER_VERSION: Final = bytes((0x0D, 0x0E, 0x0A, 0x0D))


class HandshakeError(Exception):
    """The peer did not speak the RTMP handshake we support; close the connection."""


def digest_offset(block: bytes, schema: int) -> int:
    """Where the 32-byte digest sits in a 1536-byte C1/S1 for schema 0 or 1."""
    base = 8 if schema == 0 else 772
    return sum(block[base : base + 4]) % 728 + base + 4


def make_digest(block: bytes, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of ``block`` without the 32 bytes at ``offset``."""
    mac = hmac.new(key, block[:offset], hashlib.sha256)
    mac.update(block[offset + DIGEST_SIZE :])
    return mac.digest()


def find_digest(block: bytes, key: bytes) -> tuple[int, int] | None:
    """Return (schema, offset) if ``block`` carries a valid digest for ``key``."""
    for schema in (0, 1):
        offset = digest_offset(block, schema)
        expected = make_digest(block, offset, key)
        if hmac.compare_digest(expected, block[offset : offset + DIGEST_SIZE]):
            return schema, offset
    return None


def imprint_digest(block: bytes, schema: int, key: bytes) -> bytes:
    """Return ``block`` with its digest for ``schema``/``key`` written in place."""
    offset = digest_offset(block, schema)
    digest = make_digest(block, offset, key)
    return block[:offset] + digest + block[offset + DIGEST_SIZE :]


class ServerHandshake:
    """Feed client bytes, send back what ``feed`` returns, until ``done``.

    Bytes that arrive after C2 (clients often send ``connect`` right behind it) are kept
    in ``surplus`` for the chunk reader.
    """

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random = random_bytes
        self._buf = bytearray()
        self._sent_response = False
        self.done = False
        self.surplus = b""
        #: digest schema (0/1) the client used, or None for the plain handshake
        self.digest_schema: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume client bytes (copied: ``data`` may be the caller's reused buffer); return bytes to send."""
        if self.done:
            self.surplus += data
            return b""
        self._buf += data
        if self._buf and not self._sent_response:
            _check_version(self._buf[0])
        if not self._sent_response:
            if len(self._buf) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buf[1 : 1 + HANDSHAKE_SIZE])
            del self._buf[: 1 + HANDSHAKE_SIZE]
            self._sent_response = True
            response = bytes((RTMP_VERSION,)) + self._respond(c1)
        else:
            response = b""
        if len(self._buf) >= HANDSHAKE_SIZE:
            self.surplus = bytes(self._buf[HANDSHAKE_SIZE:])
            self._buf.clear()
            self.done = True
        return response

    def _respond(self, c1: bytes) -> bytes:
        found = find_digest(c1, CLIENT_KEY[:30]) if c1[4:8] != b"\0\0\0\0" else None
        if found is None:
            s1 = b"\0" * 8 + self._random(HANDSHAKE_SIZE - 8)
            return s1 + c1
        schema, offset = found
        self.digest_schema = schema
        s1 = imprint_digest(
            b"\0" * 4 + _SERVER_VERSION + self._random(HANDSHAKE_SIZE - 8), schema, SERVER_KEY[:36]
        )
        c1_digest = c1[offset : offset + DIGEST_SIZE]
        s2_key = hmac.new(SERVER_KEY, c1_digest, hashlib.sha256).digest()
        s2_body = self._random(HANDSHAKE_SIZE - DIGEST_SIZE)
        s2 = s2_body + hmac.new(s2_key, s2_body, hashlib.sha256).digest()
        return s1 + s2


def _check_version(version: int) -> None:
    if version == RTMP_VERSION:
        return
    if version in (6, 8, 9):
        raise HandshakeError(f"encrypted RTMP (RTMPE, version byte {version}) is not supported")
    if version == 0x16:
        raise HandshakeError("client sent a TLS handshake (rtmps://) to a plain RTMP port")
    raise HandshakeError(f"unsupported RTMP version byte 0x{version:02x} (expected 0x03)")
