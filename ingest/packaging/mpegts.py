"""MPEG-TS continuity counters across ffmpeg processes: read them, and shift a segment's to follow on.

Within one ffmpeg process the counters run on from segment to segment (one muxer per rendition,
see ``ffmpeg_args``). A new process (reconnect, restart after a crash) starts every PID's
counter at 0 again, right after an ``EXT-X-DISCONTINUITY``. hls.js resets its demuxer there,
but ffmpeg's and GStreamer's HLS readers feed the whole playlist to one MPEG-TS demuxer, which
flags the packet in progress at the joint as corrupt (``-xerror`` stops, ``+discardcorrupt``
drops a frame). Shifting the new process's counters by a constant per PID makes the joint look
like any other segment boundary; timestamps still jump there, as the discontinuity says.

Pure code on bytes; the packager does the file I/O in a thread before it lists the segment.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["TS_PACKET", "last_counters", "counter_offsets", "shift_counters"]

TS_PACKET = 188
_SYNC = 0x47
_NULL_PID = 0x1FFF


def _packets(data: bytes | bytearray) -> range:
    if len(data) % TS_PACKET:
        raise ValueError(f"not whole MPEG-TS packets: {len(data)} bytes")
    return range(0, len(data), TS_PACKET)


def _pid(data: bytes | bytearray, offset: int) -> int:
    if data[offset] != _SYNC:
        raise ValueError(f"lost MPEG-TS sync at byte {offset}")
    return ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]


def last_counters(data: bytes | bytearray) -> dict[int, int]:
    """Each PID's continuity counter in its last packet (what a demuxer expects to continue)."""
    last: dict[int, int] = {}
    for offset in _packets(data):
        pid = _pid(data, offset)
        if pid != _NULL_PID:
            last[pid] = data[offset + 3] & 0x0F
    return last


def counter_offsets(previous: Mapping[int, int], data: bytes | bytearray) -> dict[int, int]:
    """Per-PID shifts that make ``data``'s counters continue ``previous`` (a PID's last counter).

    A packet with a payload must carry the previous counter + 1; one without (adaptation field
    only) repeats it. PIDs new in ``data`` need no shift.
    """
    offsets: dict[int, int] = {}
    for offset in _packets(data):
        pid = _pid(data, offset)
        if pid == _NULL_PID or pid in offsets:
            continue
        if pid in previous:
            has_payload = bool(data[offset + 3] & 0x10)
            expected = (previous[pid] + (1 if has_payload else 0)) & 0x0F
            offsets[pid] = (expected - (data[offset + 3] & 0x0F)) & 0x0F
        else:
            offsets[pid] = 0
        if len(offsets) == len(previous) and all(p in offsets for p in previous):
            break
    return {pid: shift for pid, shift in offsets.items() if shift}


def shift_counters(data: bytearray, offsets: Mapping[int, int]) -> None:
    """Add ``offsets[pid]`` (mod 16) to every packet's counter of those PIDs, in place."""
    if not offsets:
        return
    for offset in _packets(data):
        shift = offsets.get(_pid(data, offset))
        if shift:
            byte = data[offset + 3]
            data[offset + 3] = (byte & 0xF0) | ((byte + shift) & 0x0F)
