"""Replay beacons as pure code: the JSON body a player sends, validated into watched ranges, and the
heatmap buckets those ranges cover. No I/O, so every refusal is a table test."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

MAX_POSITION = 7 * 24 * 3600.0  # no recording is longer than a week; beyond it a position is garbage


class BeaconError(ValueError):
    """A beacon that cannot be counted; the message says why (sent back with a 4xx)."""


@dataclass(frozen=True)
class Beacon:
    ranges: tuple[tuple[float, float], ...]

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.ranges)


def parse_beacon(raw: bytes, max_ranges: int, max_seconds: float) -> Beacon:
    """``{"ranges": [[start, end], ...]}`` in media seconds: at most ``max_ranges`` ranges, each
    0 <= start < end, together at most ``max_seconds`` (what a player can play between two beacons)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BeaconError("malformed JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("ranges"), list):
        raise BeaconError('send {"ranges": [[start, end], ...]}')
    items = body["ranges"]
    if not items:
        raise BeaconError("no ranges")
    if len(items) > max_ranges:
        raise BeaconError(f"at most {max_ranges} ranges per beacon")
    ranges: list[tuple[float, float]] = []
    for item in items:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)):
            raise BeaconError("each range is [start, end] in seconds")
        start, end = float(item[0]), float(item[1])
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end > MAX_POSITION or end <= start:
            raise BeaconError("each range needs 0 <= start < end")
        ranges.append((start, end))
    beacon = Beacon(tuple(ranges))
    if beacon.seconds > max_seconds:
        raise BeaconError(f"more than {max_seconds:.0f} s of media in one beacon")
    return beacon


def bucket_counts(ranges: tuple[tuple[float, float], ...] | list[tuple[float, float]], bucket_seconds: int) -> Counter[int]:
    """Start second of each bucket a range overlaps (by more than an instant) -> times watched.

    Ranges are half-open, so playback reported as [0, 30) then [30, 60) counts the bucket at 30 once.
    """
    counts: Counter[int] = Counter()
    for start, end in ranges:
        first = int(start // bucket_seconds)
        last = math.ceil(end / bucket_seconds)  # exclusive
        for index in range(first, last):
            counts[index * bucket_seconds] += 1
    return counts
