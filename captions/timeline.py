"""Where a moment of the publisher's audio sits on the player's timeline.

Pure code. The player's media time (and the recording's) is the HLS timeline: segment ``k``
starts at the sum of the EXTINF durations before it, across reconnects and packager
restarts. The packager stamps each segment with the wall clock of its first sample
(PROGRAM-DATE-TIME = wall clock at the first tag of its ffmpeg run + the segment's start),
so wall clock is the common ground:

- a publish maps its FLV timestamps to wall clock linearly from its first media tag (exactly
  as the packager does);
- each listed segment is an anchor (timeline start, wall clock start);
- a wall-clock instant maps through the latest anchor at or before it.

Before a publish has any listed segment, its anchor is (timeline end so far, first tag).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

from formats.mpegts import first_pts  # re-exported: the captioner's X-TIMESTAMP-MAP

__all__ = ["MediaClock", "Anchor", "first_pts", "PTS_HZ"]

PTS_HZ = 90_000


@dataclass(frozen=True, order=True)
class Anchor:
    wall: float
    media: float


@dataclass
class MediaClock:
    """Maps a publish's FLV timestamps to media seconds on the event's HLS timeline."""

    #: media seconds listed so far (end of the last listed segment)
    listed_until: float = 0.0
    anchors: list[Anchor] = field(default_factory=list)
    _publish_ts0: int | None = None
    _publish_wall0: float = 0.0
    max_anchors: int = 4096

    def publish_started(self, first_timestamp_ms: int, received_at: float) -> None:
        """First media tag of a new publish (its FLV timestamps restart)."""
        self._publish_ts0 = first_timestamp_ms
        self._publish_wall0 = received_at
        self._add(Anchor(received_at, self.listed_until))

    def publish_ended(self) -> None:
        """The next publish re-anchors (its timestamps restart)."""
        self._publish_ts0 = None

    @property
    def publishing(self) -> bool:
        return self._publish_ts0 is not None

    def wall_of(self, timestamp_ms: float) -> float:
        """Wall clock the packager attributes to a tag of the current publish."""
        if self._publish_ts0 is None:
            raise ValueError("no publish started")
        return self._publish_wall0 + (timestamp_ms - self._publish_ts0) / 1000.0

    def segment_listed(self, duration: float, program_date_time: datetime | None) -> tuple[float, float]:
        """A segment of the reference rendition was listed; returns its (start, end) media time."""
        start = self.listed_until
        self.listed_until = start + max(0.0, duration)
        if program_date_time is not None:
            self._add(Anchor(program_date_time.timestamp(), start))
        return start, self.listed_until

    def media_of_wall(self, wall: float) -> float:
        if not self.anchors:
            return max(0.0, self.listed_until)
        index = bisect.bisect_right(self.anchors, Anchor(wall, float("inf"))) - 1
        anchor = self.anchors[max(0, index)]
        return max(0.0, anchor.media + (wall - anchor.wall))

    def media_of(self, timestamp_ms: float) -> float:
        """Media seconds of an FLV timestamp of the current publish."""
        return self.media_of_wall(self.wall_of(timestamp_ms))

    def wall_of_media(self, media: float) -> float | None:
        """Inverse mapping (for PROGRAM-DATE-TIME of captions): latest anchor at or before ``media``."""
        best = None
        for anchor in self.anchors:
            if anchor.media <= media + 1e-6 and (best is None or anchor.wall >= best.wall):
                best = anchor
        return None if best is None else best.wall + (media - best.media)

    def _add(self, anchor: Anchor) -> None:
        bisect.insort(self.anchors, anchor)
        if len(self.anchors) > self.max_anchors:
            del self.anchors[: len(self.anchors) - self.max_anchors]
