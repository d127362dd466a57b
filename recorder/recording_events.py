"""What the recorder tells the catalog: a recording started, a segment reached disk, the publisher
left or came back, it finished.

The recorder owns the media files; the catalog (``vod/``) owns the rows. These events are the only
thing that crosses between them (as in MediaMTX, whose recorder only emits segment events): the
catalog even knows where "now" of the live stream falls on the recording (chapters marked live)
from them alone, without asking the recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class RecordingStarted:
    """A live run began; ``media_path`` is the recording folder relative to the media folder.

    ``segment_seconds``: the run's configured segment length (how far past the last recorded
    segment the live stream may be while the next one is being cut).
    """

    event_id: int
    started_at: datetime
    media_path: str
    segment_seconds: float


@dataclass(frozen=True)
class SegmentCompleted:
    """Segment number ``index`` (0-based, in recording order) is on disk and in the journal.

    ``media_end``: the wall clock at which its media ends (its program date time plus its
    duration), None when the packager knew no wall clock for it. ``init``: the init section an
    fMP4 segment is read with (on disk beside it), None for MPEG-TS.
    """

    recording_id: int
    index: int
    path: Path
    start_seconds: float
    duration: float
    size_bytes: int
    discontinuity: bool
    media_end: datetime | None = None
    init: Path | None = None


@dataclass(frozen=True)
class PublisherChanged:
    """The run's publisher left (``publishing`` False: within the grace period) or came back."""

    recording_id: int
    publishing: bool


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

    def publisher_changed(self, changed: PublisherChanged) -> None:
        """Called on the event loop when the publisher leaves or reconnects; must not block."""

    async def recording_finished(self, finished: RecordingFinished) -> None:
        """The recording is playable as VOD: persist its figures and make it ready."""
