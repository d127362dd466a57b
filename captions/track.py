"""The WebVTT subtitle rendition of a live run: one ``.vtt`` per video segment, listed like the video.

Each video segment gets a WebVTT segment covering the same media interval, with the same media
sequence number, discontinuities and PROGRAM-DATE-TIME, and an ``X-TIMESTAMP-MAP`` tying its
cue times (media seconds) to the video segment's first MPEG-TS PTS (for an fMP4 segment of LL-HLS,
its first ``tfdt`` on the 90 kHz clock), so hls.js and native players place cues exactly on the
video. A subtitle segment is written once recognition has settled past its end (or after ``max_lag`` seconds), so the subtitle playlist trails the video
by a second or two, which players tolerate (viewers sit segments behind the live edge).
The playlists take the video playlist's TARGETDURATION (decided once, at its first segment), so
they are first written when the first video segment is listed.
Playlists are rendered by ``formats.m3u8`` (as the packager's are) and replaced with ``live_server.files.write_atomic``.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from formats import webvtt
from formats.m3u8 import MediaPlaylist, Segment
from live_server.files import write_atomic

from .cues import Cue, to_webvtt

log = logging.getLogger(__name__)

__all__ = ["SubtitleTrack", "PendingSegment", "LIVE_PLAYLIST", "DVR_PLAYLIST"]

LIVE_PLAYLIST = "live.m3u8"
DVR_PLAYLIST = "dvr.m3u8"


@dataclass
class PendingSegment:
    sequence: int
    name: str
    start: float
    end: float
    discontinuity: bool
    program_date_time: datetime | None
    pts: int | None
    listed_at: float


class SubtitleTrack:
    """Cues of one language and the subtitle playlists/segments derived from them."""

    def __init__(self, folder: Path, window_segments: int, dvr: bool, target_duration: int,
                 max_lag_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.window = window_segments
        self.dvr = dvr
        self.max_lag = max_lag_seconds
        self._clock = clock
        self.fallback_target = max(1, target_duration)  # when no video target is given
        self.playlist = MediaPlaylist()
        self.cues: list[Cue] = []
        self._starts: list[float] = []
        self.pending: list[PendingSegment] = []
        self.segments_written = 0

    # -- cues ------------------------------------------------------------------
    def add_cue(self, cue: Cue) -> None:
        index = bisect.bisect_right(self._starts, cue.start)
        self._starts.insert(index, cue.start)
        self.cues.insert(index, cue)

    def cues_between(self, start: float, end: float) -> list[Cue]:
        """Cues overlapping [start, end): cues spanning a boundary go in both segments (players dedupe)."""
        # Cues last at most a few seconds: look back a bounded distance from ``start``.
        first = bisect.bisect_left(self._starts, start - 30.0)
        return [c for c in self.cues[first:] if c.start < end and c.end > start]

    # -- segments ----------------------------------------------------------------
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_playlists()

    def video_segment(self, sequence: int, name: str, start: float, end: float, discontinuity: bool,
                      program_date_time: datetime | None, pts: int | None,
                      target_duration: int | None = None) -> None:
        """A video segment was listed; its subtitle segment will follow once recognition settles.

        ``target_duration``: the video playlist's; the subtitle playlists take it (once).
        """
        if self.playlist.target_duration is None:
            self.playlist.decide_target(target_duration or self.fallback_target)
            self._write_playlists()
        self.pending.append(PendingSegment(sequence, name, start, end, discontinuity, program_date_time,
                                           pts, self._clock()))

    def advance(self, settled_until: float | None, force: bool = False) -> int:
        """Write the subtitle segments that are complete; returns how many were written."""
        written = 0
        now = self._clock()
        while self.pending:
            seg = self.pending[0]
            ready = force or (settled_until is not None and settled_until >= seg.end) or now - seg.listed_at >= self.max_lag
            if not ready:
                break
            self.pending.pop(0)
            self._write_segment(seg)
            written += 1
        if written:
            self._write_playlists()
        return written

    def end(self) -> None:
        """The run is over: everything pending is written and the playlists end."""
        self.advance(None, force=True)
        self.playlist.decide_target(self.fallback_target)
        self.playlist.ended = True
        self._write_playlists()

    def _write_segment(self, seg: PendingSegment) -> None:
        tsmap = webvtt.TimestampMap(seg.pts, seg.start) if seg.pts is not None else None
        write_atomic(self.folder / seg.name, webvtt.render(to_webvtt(self.cues_between(seg.start, seg.end)), tsmap))
        if self.playlist.segments and seg.sequence != self.playlist.next_sequence:
            log.warning("captions: subtitle sequence jumps from %d to %d", self.playlist.next_sequence, seg.sequence)
            seg.discontinuity = True
            self.playlist = MediaPlaylist(target_duration=self.playlist.target_duration,
                                          discontinuity_sequence=self.playlist.discontinuity_sequence)
        self.playlist.append(Segment(seg.name, seg.end - seg.start, seg.sequence, seg.discontinuity,
                                     seg.program_date_time))
        self.segments_written += 1
        if not self.dvr:
            for old in self.playlist.trim(2 * self.window):
                try:
                    os.unlink(self.folder / old.uri)
                except FileNotFoundError:
                    pass

    def _write_playlists(self) -> None:
        if self.playlist.target_duration is None:
            return  # no video segment yet
        write_atomic(self.folder / LIVE_PLAYLIST, self.playlist.render_live(self.window))
        if self.dvr:
            write_atomic(self.folder / DVR_PLAYLIST, self.playlist.render_event())
