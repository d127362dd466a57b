"""A small test-local reader of MP4 boxes (independent of the muxer in formats/cmaf.py): box walking, box trees, and
an fMP4 fragment's moof read back (sequence number, track runs, where mdat's payload starts)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}
# Sample entries and stsd: bytes before their child boxes.
PREFIX = {b"stsd": 8, b"avc1": 78, b"mp4a": 28, b"dref": 8}


def boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each box in ``data``; a size that does not fit fails the test."""
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert 8 <= size <= len(data) - pos, f"box {kind!r} of {size} bytes at {pos} overruns {len(data)}"
        yield kind, data[pos + 8 : pos + size]
        pos += size


def tree(data: bytes) -> list[object]:
    """Nested box types: ``[b"ftyp", [b"moov", [...]], ...]``."""
    out: list[object] = []
    for kind, payload in boxes(data):
        if kind in CONTAINERS or kind in PREFIX:
            out.append([kind, tree(payload[PREFIX.get(kind, 0):])])
        else:
            out.append(kind)
    return out


def find(data: bytes, *path: bytes) -> list[bytes]:
    """Payloads of every box at ``path`` (``b"moof", b"traf", b"trun"``)."""
    found = []
    for kind, payload in boxes(data):
        if kind == path[0]:
            found.extend([payload] if len(path) == 1 else find(payload[PREFIX.get(kind, 0):], *path[1:]))
    return found


@dataclass
class Trun:
    track_id: int
    base: int
    version: int
    flags: int
    data_offset: int
    samples: list[tuple[int, int, int | None, int | None]]  # duration, size, flags, composition offset


def read_fragment(part: bytes) -> tuple[int, list[Trun], int]:
    """mfhd sequence number, one Trun per traf, and where mdat's payload starts (from moof's start)."""
    (moof, _), (mdat_kind, _) = list(boxes(part))
    assert (moof, mdat_kind) == (b"moof", b"mdat")
    moof_payload = find(part, b"moof")[0]
    (sequence,) = struct.unpack(">I", find(moof_payload, b"mfhd")[0][4:8])
    runs = []
    for traf in find(moof_payload, b"traf"):
        tfhd, tfdt, trun = find(traf, b"tfhd")[0], find(traf, b"tfdt")[0], find(traf, b"trun")[0]
        assert struct.unpack(">I", tfhd[:4])[0] == 0x020000  # default-base-is-moof, nothing else
        assert tfdt[0] == 1
        version, flags = trun[0], int.from_bytes(trun[1:4], "big")
        count, offset = struct.unpack(">Ii", trun[4:12])
        pos, samples = 12, []
        for _ in range(count):
            duration, size = struct.unpack(">II", trun[pos : pos + 8])
            pos += 8
            sample_flags = cto = None
            if flags & 0x400:
                (sample_flags,) = struct.unpack(">I", trun[pos : pos + 4])
                pos += 4
            if flags & 0x800:
                (cto,) = struct.unpack(">i" if version else ">I", trun[pos : pos + 4])
                pos += 4
            samples.append((duration, size, sample_flags, cto))
        assert pos == len(trun)
        runs.append(Trun(struct.unpack(">I", tfhd[4:8])[0], struct.unpack(">Q", tfdt[4:12])[0], version, flags,
                         offset, samples))
    moof_size = struct.unpack(">I", part[:4])[0]
    return sequence, runs, moof_size + 8
