"""MPEG-TS: the PTS a segment starts with (the ``MPEGTS`` of a WebVTT ``X-TIMESTAMP-MAP``).

Pure code fed a segment's first bytes: the live captions map each subtitle segment to its video segment
with it, and a recording's subtitle renditions map each run of segments between discontinuities.
"""

from __future__ import annotations

__all__ = ["first_pts", "TS_PACKET"]

TS_PACKET = 188


def _pes_pts(payload: bytes) -> int | None:
    if len(payload) < 14 or payload[:3] != b"\x00\x00\x01":
        return None
    stream_id = payload[3]
    if not (0xC0 <= stream_id <= 0xEF):  # audio or video elementary streams
        return None
    if not payload[7] & 0x80:
        return None
    p = payload[9:14]
    return (((p[0] >> 1) & 0x07) << 30) | (p[1] << 22) | ((p[2] >> 1) << 15) | (p[3] << 7) | (p[4] >> 1)


def first_pts(data: bytes) -> int | None:
    """Smallest PTS among the first PES packets of each stream of a TS segment (90 kHz units)."""
    seen: dict[int, int] = {}
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[offset: offset + TS_PACKET]
        if packet[0] != 0x47 or not packet[1] & 0x40:  # sync byte, payload_unit_start
            continue
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if pid in seen:
            continue
        adaptation = (packet[3] >> 4) & 0x3
        start = 4
        if adaptation & 0x2:
            start += 1 + packet[4]
        if not adaptation & 0x1 or start >= TS_PACKET:
            continue
        pts = _pes_pts(packet[start:])
        if pts is not None:
            seen[pid] = pts
    return min(seen.values()) if seen else None
