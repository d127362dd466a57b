"""Unauthenticated RTMP memory attacks (tiny chunks, many chunk streams at the floor chunk size), shared by
the memory test and ``bench/rtmp_attack.py``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.ingest.rtmp.rtmp_captures import basic_header, command, control, plain_handshake

ATTACK_BYTES = 16 * 2**20  # what each attacker tries to send, by default


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1))


def message_header(csid: int, length: int) -> bytes:
    """A type-0 header opening a video message of ``length`` bytes on ``csid``."""
    return basic_header(0, csid) + bytes(3) + length.to_bytes(3, "big") + b"\x09" + (1).to_bytes(4, "little")


def tiny_chunks() -> tuple[bytes, bytes]:
    """The issue's attack: Set Chunk Size 1, then one big message in 1-byte chunks (2 bytes each)."""
    return plain_handshake() + control(1, (1).to_bytes(4, "big")) + message_header(6, 8_000_000), b"\xc6\x00" * 65536


def floor_chunks() -> tuple[bytes, bytes]:
    """The same at the smallest chunk size allowed (128), spread over 60 chunk streams, after connect."""
    opening = plain_handshake() + command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://x/live"})
    opening += b"".join(message_header(csid, 8_000_000) + bytes(128) for csid in range(4, 64))
    repeat = b"".join(basic_header(3, csid) + bytes(128) for csid in range(4, 64))
    return opening, repeat


async def attack(port: int, opening: bytes, repeat: bytes, budget: int = ATTACK_BYTES) -> int:
    """Send ``opening`` then ``repeat`` until ``budget`` bytes or the server closes; bytes the socket took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(opening)
        await writer.drain()
        sent = len(opening)
        while sent < budget:
            writer.write(repeat)
            await asyncio.wait_for(writer.drain(), 10)
            sent += len(repeat)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
    return sent
