"""The segment history of one live event across ffmpeg processes and broadcast sessions.

Pure state machine fed with ffmpeg's segment-list entries.  It owns:

- file numbering: each ffmpeg process starts after every number already
  used on disk, so a file name is never reused within an event;
- media sequence numbers (contiguous per rendition, as RFC 8216 requires);
- discontinuities (new session, restart after a crash, recovery);
- alignment of renditions: a segment number is listed only once *every*
  rendition reported it, so all renditions list the same segments with the
  same sequence and discontinuity sequence numbers;
- retention: which segments may be forgotten, and which files deleted;
- each playlist's TARGETDURATION, decided once when its first segment is
  listed, from the configured segment length, that segment and the measured
  keyframe interval (an encoder's GOP longer than ``segment_seconds`` makes
  segments as long as its GOP).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

from formats.m3u8 import MediaPlaylist, Segment

from .ffmpeg_args import SegmentListEntry, segment_number
from .options import PackagerOptions

__all__ = ["EventTimeline", "AlignmentLost", "ListedSegment"]


class AlignmentLost(RuntimeError):
    """Renditions of one process drifted apart; the process must be restarted."""


@dataclass(frozen=True)
class ListedSegment:
    rendition: str
    segment: Segment
    number: int


class EventTimeline:
    """Per-rendition playlists of one event plus the rules that extend them."""

    #: Incomplete segment groups tolerated before declaring the renditions misaligned.
    MAX_PENDING_GROUPS = 4

    def __init__(self, options: PackagerOptions) -> None:
        self.options = options
        self.renditions: tuple[str, ...] = options.rendition_names
        self.playlists: dict[str, MediaPlaylist] = {name: MediaPlaylist() for name in self.renditions}
        #: the publisher's keyframe interval as measured from the media (s), set by the packager
        self.keyframe_interval: float | None = None
        self.next_number = 0
        self._pending: dict[int, dict[str, SegmentListEntry]] = {}
        self._discontinuity_pending = False
        self._run_clock: datetime | None = None
        self._run_start_number = 0
        self._run_last_listed: int | None = None
        #: the renditions the current process makes (a publisher without audio: no audio-only one)
        self._run_renditions: tuple[str, ...] = self.renditions
        #: the media disk is low: keep only the live window's files, whatever DVR and keep_segments say
        self.history_paused = False
        #: per rendition, the first sequence the DVR playlist lists since the disk ran low (None: all)
        self._dvr_start: dict[str, int] | None = None

    # -- recovery --------------------------------------------------------
    def restore(self, rendition: str, playlist: MediaPlaylist) -> None:
        """Continue after a server restart from a playlist found on disk."""
        playlist.ended = False  # its target duration was decided when it was first written: kept
        self.playlists[rendition] = playlist
        if playlist.segments:
            self._discontinuity_pending = True
        for segment in playlist.segments:
            number = segment_number(segment.uri)
            if number is not None:
                self.next_number = max(self.next_number, number + 1)

    def note_existing_files(self, filenames: Iterable[str]) -> None:
        """Never hand out a number some file on disk already has."""
        for name in filenames:
            number = segment_number(name)
            if number is not None:
                self.next_number = max(self.next_number, number + 1)

    @property
    def has_segments(self) -> bool:
        return any(p.segments for p in self.playlists.values())

    @property
    def ended(self) -> bool:
        return all(p.ended for p in self.playlists.values())

    def select(self, options: PackagerOptions) -> None:
        """Keep only ``options``' renditions (the rungs chosen for the source at ffmpeg's first start):
        the others are never listed, written nor waited for."""
        names = options.rendition_names
        if not names or set(names) - set(self.renditions):
            raise ValueError(f"cannot keep {names} of {self.renditions}")
        self.options = options
        self.renditions = tuple(r for r in self.renditions if r in names)
        self.playlists = {r: self.playlists[r] for r in self.renditions}
        self._run_renditions = tuple(r for r in self._run_renditions if r in names) or self.renditions

    # -- runs (one ffmpeg process each) ----------------------------------
    def mark_discontinuity(self) -> None:
        """The next listed segment does not continue the previous one's timestamps."""
        if self.has_segments:
            self._discontinuity_pending = True

    def start_run(self, renditions: Iterable[str] | None = None) -> int:
        """A new ffmpeg process starts, making ``renditions`` (default: all); returns its first segment
        number. A group of segments is complete once each of them has its segment."""
        run = self.renditions if renditions is None else tuple(renditions)
        if not run or set(run) - set(self.renditions):
            raise ValueError(f"a run makes some of {self.renditions}, not {run}")
        self._run_renditions = tuple(r for r in self.renditions if r in run)
        self._pending.clear()
        self._run_clock = None
        self._run_start_number = self.next_number
        self._run_last_listed = None
        return self.next_number

    def set_run_clock(self, wall_at_zero: datetime) -> None:
        """Wall clock of output time 0 of the current process (for PROGRAM-DATE-TIME)."""
        self._run_clock = wall_at_zero

    def add(self, entry: SegmentListEntry) -> list[ListedSegment]:
        """Record a completed segment; returns the segments that became listable, in order."""
        if entry.rendition not in self._run_renditions:  # not ours, or not made by this run
            raise ValueError(f"unknown rendition {entry.rendition!r}")
        number = entry.number
        if number is None or number < self._run_start_number:
            raise ValueError(f"unexpected segment file {entry.filename!r}")
        self.next_number = max(self.next_number, number + 1)
        self._pending.setdefault(number, {})[entry.rendition] = entry
        listed: list[ListedSegment] = []
        while self._pending:
            lowest = min(self._pending)
            group = self._pending[lowest]
            if len(group) < len(self._run_renditions):
                break
            del self._pending[lowest]
            self._run_last_listed = lowest
            listed.extend(self._list_group(lowest, group))
        if len(self._pending) > self.MAX_PENDING_GROUPS:
            raise AlignmentLost(
                f"renditions out of step: segments {sorted(self._pending)} incomplete"
            )
        return listed

    def _list_group(self, number: int, group: Mapping[str, SegmentListEntry]) -> list[ListedSegment]:
        discontinuity = self._discontinuity_pending
        self._discontinuity_pending = False
        basis = [self.options.segment_seconds, *(max(0.0, e.duration) for e in group.values())]
        if self.keyframe_interval is not None:
            basis.append(self.keyframe_interval)
        for rendition in self.renditions:
            self.playlists[rendition].decide_target(*basis)  # once per playlist; a no-op after
        out = []
        for rendition in self._run_renditions:
            entry = group[rendition]
            playlist = self.playlists[rendition]
            pdt = None
            if self._run_clock is not None:
                pdt = self._run_clock + timedelta(seconds=entry.start)
            segment = Segment(
                uri=entry.filename,
                duration=max(0.0, entry.duration),
                sequence=playlist.next_sequence,
                discontinuity=discontinuity,
                program_date_time=pdt,
            )
            playlist.append(segment)
            out.append(ListedSegment(rendition, segment, number))
        return out

    def end_run(self, files_on_disk: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
        """The process is gone: drop incomplete groups; returns unlisted files of this run.

        Those files were never visible to anyone (half-written at a crash, or
        reported by only some renditions) and are safe to delete.  Their
        numbers are still never reused.
        """
        self._pending.clear()
        # Groups are listed in number order, so this run listed exactly
        # [run start, last listed]; anything above is unlisted.
        first_unlisted = (
            self._run_last_listed + 1
            if self._run_last_listed is not None
            else self._run_start_number
        )
        orphans = []
        for rendition, names in files_on_disk.items():
            for name in names:
                number = segment_number(name)
                if number is None:
                    continue
                self.next_number = max(self.next_number, number + 1)
                if number >= first_unlisted:
                    orphans.append((rendition, name))
        return sorted(orphans)

    # -- ending and retention ----------------------------------------------
    def end(self) -> None:
        for playlist in self.playlists.values():
            playlist.decide_target(self.options.segment_seconds)  # an event that never listed a segment
            playlist.ended = True

    def target_duration(self, rendition: str) -> int | None:
        """The rendition's TARGETDURATION, None until its first segment is listed."""
        return self.playlists[rendition].target_duration

    @property
    def overlong_segments(self) -> int:
        """Segments longer than their playlist's target duration (the GOP grew after it was decided)."""
        return max((p.overlong_segments for p in self.playlists.values()), default=0)

    def reopen(self) -> None:
        """A new session after ENDLIST (same event restarted): keep listing."""
        for playlist in self.playlists.values():
            playlist.ended = False
        self.mark_discontinuity()

    def trim(self) -> list[tuple[str, str]]:
        """Forget old segments when no DVR playlist needs them; returns files to delete.

        We keep twice the live window: a segment must stay fetchable for a
        while after it leaves the playlist (RFC 8216 6.2.2). While the history
        is paused (low disk) files go too, DVR and ``keep_segments`` notwithstanding.
        """
        if self.options.dvr and not self.history_paused:
            return []
        keep = 2 * self.options.window_segments
        doomed = []
        for rendition, playlist in self.playlists.items():
            for segment in playlist.trim(keep):
                doomed.append((rendition, segment.uri))
        return doomed if self.history_paused or not self.options.keep_segments else []

    def pause_history(self, paused: bool) -> None:
        """The media disk ran low (True) or has room again (False).

        Paused, the DVR playlist lists only the live window (it has lost its EVENT promise for
        the rest of the run); resumed, it grows again from the live window of that moment.
        """
        if paused == self.history_paused:
            return
        self.history_paused = paused
        if paused:
            self._dvr_start = {}
        else:
            self._dvr_start = {r: self._window_start(r) for r in self.renditions}

    def dvr_start(self, rendition: str) -> int | None:
        """The first sequence the DVR playlist lists; None: every segment (an EVENT playlist)."""
        if self.history_paused:
            return self._window_start(rendition)
        return None if self._dvr_start is None else self._dvr_start[rendition]

    def _window_start(self, rendition: str) -> int:
        playlist = self.playlists[rendition]
        window = playlist.segments[-self.options.window_segments:]
        return window[0].sequence if window else playlist.next_sequence

    def segments(self, rendition: str) -> Sequence[Segment]:
        return self.playlists[rendition].segments
