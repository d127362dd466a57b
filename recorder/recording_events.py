"""What the recorder tells the catalog: a recording started, a segment reached disk, it finished.

The recorder owns the media files; the catalog (``vod/``) owns the rows. These events are the only
thing that crosses between them (as in MediaMTX, whose recorder only emits segment events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class RecordingStarted:
    """A live run began; ``media_path`` is the recording folder relative to the media folder."""

    event_id: int
    started_at: datetime
    media_path: str


@dataclass(frozen=True)
class SegmentCompleted:
    """Segment number ``index`` (0-based, in recording order) is on disk and in the journal."""

    recording_id: int
    index: int
    path: Path
    start_seconds: float
    duration: float
    size_bytes: int
    discontinuity: bool


@dataclass(frozen=True)
class RecordingFinished:
    """The run ended (or was recovered after a crash) and the VOD playlists are written."""

    recording_id: int
    ended_at: datetime
    segments: int
    duration_seconds: float
    size_bytes: int
    discontinuities: int
    error: str | None = None


class RecordingSink(Protocol):
    """Where recording events go (the VOD catalog)."""

    async def recording_started(self, started: RecordingStarted) -> int | None:
        """Create the catalog entry and return its id; None when this event is not to be recorded."""

    def segment_completed(self, completed: SegmentCompleted) -> None:
        """Called on the event loop for every recorded segment; must not block."""

    async def recording_finished(self, finished: RecordingFinished) -> None:
        """The recording is playable as VOD: persist its figures and make it ready."""
