"""What the live-event hub shows its taps (captions, recorder): a frozen view of one live run.

Taps get a ``LiveRun`` instead of the hub's runtime object, so they cannot reach into the
packager or the publish sessions; what they add or read goes through ``RunMedia``, a small
interface the hub offers (the subtitles rendition, the listed segments, whether media flows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, Sequence

from formats.m3u8 import Segment, SubtitleRendition
from ingest.packaging.options import PackagerOptions

__all__ = ["LiveRun", "RunMedia"]


class RunMedia(Protocol):
    """What a tap may ask of a run's media while it lasts."""

    def playlist_segments(self, rendition: str) -> list[Segment]:
        """The segments the rendition's live playlist lists now (recovered ones included)."""
        ...

    def target_duration(self, rendition: str) -> int | None: ...

    def reference_rendition(self) -> str:
        """The rendition recordings and captions follow: the first one encoded (an ABR event skips the
        rungs taller than its source, chosen at the transcoder's first start)."""
        ...

    def set_subtitles(self, subtitles: Sequence[SubtitleRendition]) -> None:
        """Add (or, with an empty list, withdraw) subtitle renditions in the master playlist."""
        ...

    def is_publishing(self) -> bool:
        """Whether a publisher feeds the run right now (false in the grace period)."""
        ...


@dataclass(frozen=True)
class LiveRun:
    """One live run of one event (first publish to the end of its grace period), as taps see it.

    A run outlives reconnects: ``started_at`` identifies it; ``protocol`` is the current publish's.
    """

    event_id: int
    slug: str
    started_at: datetime
    folder: Path
    options: PackagerOptions
    protocol: str
    media: RunMedia
