"""One long-lived ffmpeg packager per live event: FLV in, HLS out, supervised.

The asyncio shell around the pure parts (``feed``, ``timeline``,
``playlist``, ``ffmpeg_args``).  ffmpeg reads FLV on stdin and reports each
completed segment on a pipe; we list it in our own playlists, then tell the
listener.  A supervisor restarts ffmpeg when it dies mid-session.

No media, no packager: ffmpeg starts at a session's first audio/video frame,
so a peer that publishes and sends nothing leaves no process and no probe
errors behind.  The watchdog judges "hung" from the media fed: a keyframe that
must close a segment arrived and nothing was listed since, so an encoder with
a 10 or 20 s keyframe interval is waited for, not killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from formats.flv import is_keyframe, is_sequence_header
from formats.m3u8 import PlaylistParseError, Segment, SubtitleRendition, parse_media_playlist, render_master
from live_server.files import write_atomic
from live_server.layout import MASTER_PLAYLIST

from .feed import FlvFeed, publisher_has_audio, publisher_source_height
from .ffmpeg_args import SegmentListEntry, build_ffmpeg_args, encoded_renditions, parse_segment_list_line
from .mpegts import counter_offsets, last_counters, shift_counters
from .options import PackagerOptions, chosen_for_source, ladder_wait_seconds
from .supervisor import FfmpegRun, Supervised, Supervisor, spawn_ffmpeg
from .timeline import AlignmentLost, EventTimeline, ListedSegment
from .variants import MEDIA_PLAYLIST, build_variants

__all__ = ["LivePackager", "Packager", "PackagerListener", "DVR_PLAYLIST", "DVR_MASTER_PLAYLIST"]

log = logging.getLogger(__name__)

DVR_PLAYLIST = "dvr.m3u8"
DVR_MASTER_PLAYLIST = "master-dvr.m3u8"


class PackagerListener(Protocol):
    """What the packager tells the rest of the server (recorder, captions, metrics)."""

    def on_segment(self, rendition: str, segment: Segment) -> None:
        """A segment was listed: called after the playlists listing it were written."""

    def on_packager_failed(self, reason: str) -> None:
        """ffmpeg kept dying (or cannot start); the event gets no new segments."""


class LivePackager(Protocol):
    """What the live-event hub drives and its taps read, whichever packager an event has: this
    module's ffmpeg ``Packager`` or the in-process LL-HLS ``ll_packager.LlPackager``."""

    write_errors: int

    @property
    def rendition(self) -> str:
        """The reference rendition: the first one encoded (known for sure once media flows)."""
        ...

    @property
    def restarts(self) -> int: ...

    @property
    def dropped_tags(self) -> int: ...

    @property
    def history_paused(self) -> bool: ...

    @property
    def segment_overdue_seconds(self) -> float: ...

    def pause_history(self, paused: bool) -> None: ...

    def target_duration(self, rendition: str) -> int | None: ...

    def playlist_segments(self, rendition: str) -> list[Segment]: ...

    def set_subtitles(self, subtitles: Sequence[SubtitleRendition]) -> None: ...

    def on_metadata(self, metadata: Mapping[str, Any]) -> None: ...

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None: ...

    async def start(self) -> None: ...

    async def begin_session(self) -> None: ...

    async def end_session(self) -> None: ...

    async def finish(self) -> None: ...

    async def close(self) -> None: ...


class _Run(FfmpegRun):
    """One ffmpeg process, with what the watchdog and the run clock follow."""

    def __init__(self, proc: asyncio.subprocess.Process, transports: Sequence[asyncio.BaseTransport],
                 stderr_lines: int) -> None:
        super().__init__(proc, transports, stderr_lines)
        self.last_listing = time.monotonic()  # spawn, then every segment ffmpeg reports
        self.listed_until = 0.0  # end of the last reported segment, in this process's timeline (s)
        self.clock_set = False  # the run's wall clock is set from the first media frame it is fed


class Packager(Supervised):
    """Packages one live event into HLS under ``output_dir``.

    Layout: ``master.m3u8`` (always, so the player URL never changes),
    ``<rendition>/live.m3u8`` (sliding window), ``<rendition>/dvr.m3u8``
    (EVENT playlist, with ``options.dvr``) and ``<rendition>/seg_NNNNNN.ts``.
    Every broadcast session gets a fresh ffmpeg (publisher timestamps restart
    at each publish); its first segment is marked as a discontinuity.
    """

    def __init__(self, ffmpeg: str, output_dir: Path, options: PackagerOptions,
                 listener: PackagerListener, on_drop: Callable[[], None] = lambda: None,
                 on_write_error: Callable[[], None] = lambda: None) -> None:
        self._ffmpeg = ffmpeg
        self.output_dir = Path(output_dir)
        self.options = options
        self._listener = listener
        self._feed = FlvFeed(options.queue_max_bytes, on_drop)
        self._timeline = EventTimeline(options)
        self._process: Supervisor[_Run] = Supervisor(
            options, self._feed, str(self.output_dir), name="ffmpeg", hang_note="a segment overdue by",
            launch=self._spawn, overdue_since=self._cut_due_since, on_restart=self._timeline.mark_discontinuity,
            on_failed=self._fail, before_write=self._set_run_clock, on_ended=self._remove_unlisted,
            hold=self._ladder_wait)
        self._grace_timer: asyncio.Task[None] | None = None
        self._master_text: dict[str, str] = {}
        # What the master advertises outlives a session (the feed is reset at its end).
        self._advertised_metadata: Mapping[str, Any] | None = None
        self._advertised_headers: dict[str, bytes] = {}
        #: Whether the current (or last) ffmpeg of the session encodes audio; None before it starts.
        self._encodes_audio: bool | None = None
        #: Whether the rungs were chosen for the source (ffmpeg's first start; kept for the packager's life).
        self._ladder_chosen = options.passthrough
        self._subtitles: tuple[SubtitleRendition, ...] = ()
        self._measured_peak_bps = 0
        self._started = False
        self._session_active = False
        self._failed_reason: str | None = None
        self._bytes_in = 0
        self._segments = 0
        self._last_listing_delay: float | None = None
        # (FLV timestamp ms, monotonic arrival) of the tags ffmpeg may cut a segment at: video
        # keyframes in passthrough (audio frames for audio-only streams); any frame, thinned, when
        # the ladder forces keyframes on time. The watchdog's evidence.
        self._cut_points: deque[tuple[int, float]] = deque(maxlen=256)
        self._keyframes: deque[int] = deque(maxlen=9)  # FLV timestamps of the publisher's keyframes
        # Per rendition: the last segment listed before this process (its counters are continued)
        # and the counter shifts found at this process's first segment.
        self._counters_follow: dict[str, str] = {}
        self._counter_shifts: dict[str, dict[int, int]] = {}
        self.write_errors = 0  # playlist writes that failed (full disk, I/O error); retried at the next segment
        self._on_write_error = on_write_error
        self._write_failing = False
        self._doomed: list[tuple[str, str]] = []  # files to delete once the playlists that drop them are written
        # Playlists are rendered on the loop and written by one thread (off the loop, in order).
        self._writer: ThreadPoolExecutor | None = None
        self._last_write: asyncio.Future[None] | None = None

    # -- counters ----------------------------------------------------------
    @property
    def segments(self) -> int:
        """Segments listed (per rendition: renditions are listed in lockstep)."""
        return self._segments

    @property
    def bytes_in(self) -> int:
        """Payload bytes received through ``on_media``, dropped ones included."""
        return self._bytes_in

    @property
    def last_listing_delay(self) -> float | None:
        """Seconds from the ingest of the tag that closed the last segment to its listing."""
        return self._last_listing_delay

    @property
    def session_active(self) -> bool:
        return self._session_active

    @property
    def finished(self) -> bool:
        return self._timeline.ended

    @property
    def failed_reason(self) -> str | None:
        return self._failed_reason

    @property
    def segment_overdue_seconds(self) -> float:
        """How long a segment that the media fed must already have closed has gone unlisted (0: none)."""
        run = self._process.running
        if run is None:
            return 0.0
        since = self._cut_due_since(run)
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    @property
    def keyframe_interval_seconds(self) -> float | None:
        """Longest spacing of the publisher's recent video keyframes (what segment lengths follow)."""
        if not self._feed.has_video:
            return None
        times = list(self._keyframes)
        gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
        return max(gaps[-8:]) / 1000 if gaps else None

    @property
    def overlong_segments(self) -> int:
        """Segments longer than their playlist's TARGETDURATION (the GOP grew after it was decided)."""
        return self._timeline.overlong_segments

    def target_duration(self, rendition: str) -> int | None:
        """``rendition``'s TARGETDURATION, decided at its first segment (None before)."""
        return self._timeline.target_duration(rendition)

    @property
    def history_paused(self) -> bool:
        return self._timeline.history_paused

    def pause_history(self, paused: bool) -> None:
        """Low media disk: keep only the live window's files (DVR drops to it) until resumed."""
        self._timeline.pause_history(paused)

    def playlist_segments(self, rendition: str) -> list[Segment]:
        """Segments currently remembered for ``rendition`` (all of them with DVR)."""
        return list(self._timeline.segments(rendition))

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Create folders, recover from playlists left by a previous run, write playlists."""
        if self._started:
            return
        self._started = True
        for rendition in self.options.rendition_names:
            folder = self.output_dir / rendition
            folder.mkdir(parents=True, exist_ok=True)
            self._recover(rendition, folder)
        self._keep_recovered_ladder()
        await self._write_all_playlists()

    def _keep_recovered_ladder(self) -> None:
        """After a server restart, the run's rungs are those its recovered playlists have segments for: the
        choice made at the first start (:meth:`_choose_ladder`) is kept, not made again from whatever picture
        the publisher sends next (viewers' players hold the master)."""
        if self._ladder_chosen:
            return
        video = [r for r in self.options.ladder if not r.is_audio_only]
        recovered = {r.name for r in video if self._timeline.segments(r.name)}
        if not recovered:
            return
        self._ladder_chosen = True
        kept = dataclasses.replace(self.options, ladder=tuple(r for r in self.options.ladder
                                                  if r.is_audio_only or r.name in recovered))
        if kept.ladder != self.options.ladder:
            log.info("%s: recovered run keeps its rungs %s", self.output_dir, "/".join(kept.rendition_names))
            self.options = kept
            self._timeline.select(kept)

    def _recover(self, rendition: str, folder: Path) -> None:
        for name in (DVR_PLAYLIST, MEDIA_PLAYLIST):
            path = folder / name
            if not path.exists():
                continue
            try:
                parsed = parse_media_playlist(path.read_text(encoding="utf-8"))
            except (OSError, PlaylistParseError) as exc:
                log.warning("%s: cannot recover from %s: %s", self.output_dir, path, exc)
                continue
            self._timeline.restore(rendition, parsed.playlist)
            log.info("%s/%s: recovered %d segments", self.output_dir, rendition,
                     len(parsed.playlist.segments))
            break
        self._timeline.note_existing_files(os.listdir(folder))

    async def begin_session(self) -> None:
        """A publisher started (or reconnected): a fresh ffmpeg starts at its first media frame."""
        if not self._started:
            await self.start()
        if self._session_active:
            await self._stop_session()
        self._cancel_grace_timer()
        if self._timeline.ended:
            self._timeline.reopen()
        else:
            self._timeline.mark_discontinuity()
        self._session_active = True
        self._failed_reason = None
        self._cut_points.clear()
        self._keyframes.clear()
        self._encodes_audio = None
        self._process.begin(f"packager {self.output_dir}")

    async def end_session(self) -> None:
        """The publisher left: flush what was queued, let ffmpeg close the last segment."""
        if not self._session_active:
            return
        await self._stop_session()
        if self.options.endlist_grace_seconds is not None and not self._timeline.ended:
            self._grace_timer = asyncio.create_task(self._finish_after_grace())

    async def _stop_session(self) -> None:
        if not self._session_active:
            return
        self._session_active = False
        await self._process.stop()

    async def finish(self) -> None:
        """The event is over: stop ffmpeg and write ENDLIST in every playlist."""
        if self._grace_timer is not asyncio.current_task():
            self._cancel_grace_timer()
        self._grace_timer = None
        await self._stop_session()
        if not self._started:
            await self.start()
        self._timeline.end()
        try:
            await self._write_all_playlists()
        finally:
            self._stop_writer()

    async def close(self) -> None:
        """Hard stop (server shutdown): kill ffmpeg, cancel tasks, no ENDLIST."""
        self._session_active = False
        self._cancel_grace_timer()
        await self._process.close()
        self._stop_writer()

    async def flush(self) -> None:
        """Wait until every playlist write queued so far is on disk (or has failed)."""
        if self._last_write is not None:
            await asyncio.gather(asyncio.shield(self._last_write), return_exceptions=True)

    async def __aenter__(self) -> "Packager":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.finish()
        else:
            await self.close()

    def _cancel_grace_timer(self) -> None:
        if self._grace_timer is not None and self._grace_timer is not asyncio.current_task():
            self._grace_timer.cancel()
        self._grace_timer = None

    async def _finish_after_grace(self) -> None:
        assert self.options.endlist_grace_seconds is not None
        await asyncio.sleep(self.options.endlist_grace_seconds)
        log.info("%s: no publisher for %.0f s, ending the event", self.output_dir,
                 self.options.endlist_grace_seconds)
        await self.finish()

    def set_subtitles(self, subtitles: Sequence[SubtitleRendition]) -> None:
        """Captions plug in here: list their WebVTT playlists in the master playlists."""
        self._subtitles = tuple(subtitles)
        if self._started:
            self._write_soon(self._master_files())  # the master is retried at the next segment

    # -- ingest side (never blocks) -------------------------------------------
    def on_metadata(self, metadata: Mapping[str, Any]) -> None:
        """onMetaData of the current publisher (sent to ffmpeg, shapes the master playlist)."""
        self._feed.set_metadata(metadata)
        self._process.wake()
        self._advertised_metadata = self._feed.metadata
        if self._started:
            self._write_soon(self._master_files())  # the master is retried at the next segment

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One FLV audio/video payload; queued for ffmpeg or dropped, never blocking."""
        self._bytes_in += len(payload)
        now = time.monotonic()
        queued = self._feed.push(kind, timestamp_ms, payload, time.time())
        self._process.wake()
        if not is_sequence_header(kind, payload):
            self._process.media_arrived()
            key = kind == "video" and is_keyframe(payload)
            if key:
                self._keyframes.append(timestamp_ms)
            if self.options.passthrough and self._feed.has_video:
                cut = key
            else:  # audio-only passthrough cuts at any frame; the ladder cuts on time
                cut = kind == ("video" if self._feed.has_video else "audio") and (
                    not self._cut_points or timestamp_ms - self._cut_points[-1][0] >= 250)
            if cut and queued:  # a dropped keyframe never reaches ffmpeg: it owes nothing for it
                self._cut_points.append((timestamp_ms, now))
        header = self._feed.sequence_headers.get(kind)
        if header is not None and self._advertised_headers.get(kind) != header:
            self._advertised_headers[kind] = header
            if self._started:
                self._write_soon(self._master_files())  # the master is retried at the next segment

    # -- the supervised ffmpeg ---------------------------------------------------
    def _fail(self, reason: str) -> None:
        self._failed_reason = reason
        log.error("%s: packager failed: %s", self.output_dir, reason)
        try:
            self._listener.on_packager_failed(reason)
        except Exception:
            log.exception("%s: on_packager_failed raised", self.output_dir)

    def _ladder_wait(self, waited: float) -> float:
        """How much longer ffmpeg's first start waits for a taller picture (``options.ladder_wait_seconds``)."""
        return 0.0 if self._ladder_chosen else ladder_wait_seconds(self.options, self._feed.tallest_height, waited)

    def _choose_ladder(self) -> None:
        """At ffmpeg's first start: keep only the rungs no taller than the tallest picture the source
        has sent (``options.ladder_for_source``; a WHIP publisher's is waited for:
        :meth:`_ladder_wait`), for this packager's life. A restart after a crash, or a later session
        with another picture size, gets the same renditions (scaled up or down): the master and the
        media playlists stay the same ones."""
        if self._ladder_chosen:
            return
        self._ladder_chosen = True
        chosen = chosen_for_source(self.options, self._feed.tallest_height, str(self.output_dir))
        if chosen is self.options:
            return
        self.options = chosen
        self._timeline.select(chosen)
        self._write_soon(self._master_files())

    @property
    def rendition(self) -> str:
        """The reference rendition (recordings and captions follow it): the first one encoded."""
        return self.options.rendition_names[0]

    async def _spawn(self, resync: bool) -> _Run:
        """Start one ffmpeg, numbering its segments on from the last one listed (the rungs are
        chosen at the first start: :meth:`_choose_ladder`)."""
        self._choose_ladder()
        self._counter_shifts = {}
        self._counters_follow = {r: segments[-1].uri for r in self.options.rendition_names
                                 if (segments := self._timeline.segments(r))}
        # A publisher without audio (as far as its onMetaData and headers tell at its first frame):
        # the video renditions only, or ffmpeg's ``-map 0:a`` would fail at every start.
        has_audio = self._feed.has_audio
        if self._encodes_audio != has_audio:
            self._encodes_audio = has_audio
            self._write_soon(self._master_files())
        renditions = (self.options.rendition_names if self.options.passthrough
                      else tuple(r.name for r in encoded_renditions(self.options, has_audio)))
        start_number = self._timeline.start_run(renditions)
        reader = asyncio.StreamReader()
        proc, transports = await spawn_ffmpeg(
            lambda fds: build_ffmpeg_args(self._ffmpeg, self.options, self.output_dir, start_number, fds[0],
                                          has_audio),
            [asyncio.StreamReaderProtocol(reader)], str(self.output_dir))
        run = _Run(proc, transports, self.options.stderr_lines_kept)
        listing = asyncio.create_task(self._read_segment_list(run, reader))
        run.tasks.append(listing)
        run.readers.append(listing)
        return run

    #: Deletions done on the event loop; more (a whole DVR) go to a thread.
    INLINE_UNLINKS = 32

    #: Slack between our FLV clock and ffmpeg's segment times (audio priming, B-frame delay).
    CUT_TOLERANCE_SECONDS = 0.5

    def _cut_due_since(self, run: _Run) -> float | None:
        """Since when (monotonic) ffmpeg has owed us a segment, judged from the media fed, or None.

        ffmpeg cuts at the first keyframe at least ``segment_seconds`` after its previous cut, so
        a keyframe that far past the end of the last listed segment must have closed one. What
        counts is the later of its arrival and ffmpeg's last listing (progress resets the clock).
        """
        first = self._feed.first_media
        if first is None:
            return None
        due_at = run.listed_until + self.options.segment_seconds + self.CUT_TOLERANCE_SECONDS
        for timestamp_ms, arrived in self._cut_points:
            if (timestamp_ms - first.timestamp_ms) / 1000 >= due_at:
                return max(arrived, run.last_listing)
        return None

    def _remove_unlisted(self, run: _Run) -> None:
        """A process ended: delete the segments it wrote but never reported."""
        files = {r: os.listdir(self.output_dir / r) for r in self.options.rendition_names}
        for rendition, name in self._timeline.end_run(files):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.output_dir / rendition / name)
            log.debug("%s: removed unlisted %s/%s", self.output_dir, rendition, name)

    def _set_run_clock(self, run: _Run) -> None:
        """The run's wall clock starts at the publisher's first frame it is fed."""
        if not run.clock_set and self._feed.first_media is not None:
            self._timeline.set_run_clock(datetime.fromtimestamp(self._feed.first_media.received_at, timezone.utc))
            run.clock_set = True

    async def _read_segment_list(self, run: _Run, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            try:
                entry = parse_segment_list_line(raw.decode("utf-8", "replace"))
            except ValueError as exc:
                log.warning("%s: %s", self.output_dir, exc)
                continue
            await self._continue_counters(entry)
            # The ladder forces keyframes every segment: only passthrough segments follow the GOP.
            self._timeline.keyframe_interval = self.keyframe_interval_seconds if self.options.passthrough else None
            overlong = self._timeline.overlong_segments
            try:
                listed = self._timeline.add(entry)
            except AlignmentLost as exc:
                log.warning("%s: %s; restarting ffmpeg", self.output_dir, exc)
                run.stderr_tail.append(str(exc))
                self._process.kill()
                return
            except ValueError as exc:
                log.warning("%s: %s", self.output_dir, exc)
                continue
            run.last_listing = time.monotonic()
            run.listed_until = max(run.listed_until, entry.end)
            if self._timeline.overlong_segments > overlong and not overlong:
                log.warning("%s: a %.1f s segment is longer than the playlist's target duration %s "
                            "(the encoder's keyframe interval grew); the target stays (RFC 8216)",
                            self.output_dir, entry.duration, self._timeline.target_duration(entry.rendition))
            if listed:
                await self._publish(listed)

    async def _continue_counters(self, entry: SegmentListEntry) -> None:
        """Shift a later process's continuity counters to follow on from the last listed segment."""
        previous = self._counters_follow.get(entry.rendition)
        if previous is None:
            return  # the event's first process: nothing to follow
        folder = self.output_dir / entry.rendition
        try:
            self._counter_shifts[entry.rendition] = await asyncio.get_running_loop().run_in_executor(
                None, _continue_counters, folder / previous, folder / entry.filename,
                self._counter_shifts.get(entry.rendition))
        except (OSError, ValueError) as exc:
            log.warning("%s: continuity counters of %s/%s left as they are: %s", self.output_dir,
                        entry.rendition, entry.filename, exc)
            del self._counters_follow[entry.rendition]

    # -- output ------------------------------------------------------------------
    async def _publish(self, listed: list[ListedSegment]) -> None:
        """Write the playlists that list these segments, then tell the listener."""
        renditions = {item.rendition for item in listed}
        for item in listed:
            self._measure(item)
        self._doomed.extend(self._timeline.trim())
        media = self._submit(self._media_playlist_files(*renditions))
        master_files = self._master_files()
        master = self._submit(master_files)
        written = self._written(await _outcome(media), [])
        written = self._written(await _outcome(master), master_files) and written
        if written:  # files go only once no playlist on disk lists them
            paths = [self.output_dir / rendition / name for rendition, name in self._doomed]
            self._doomed.clear()
            if len(paths) <= self.INLINE_UNLINKS:
                _unlink_all(paths)
            else:  # a DVR dropped at once when the disk ran low (measured: 14,400 files take 0.3 s)
                asyncio.get_running_loop().run_in_executor(None, _unlink_all, paths)
        self._segments += len({item.number for item in listed})
        last = listed[-1].segment
        if last.program_date_time is not None:
            end = last.program_date_time.timestamp() + last.duration
            self._last_listing_delay = time.time() - end
        for item in listed:
            try:
                self._listener.on_segment(item.rendition, item.segment)
            except Exception:
                log.exception("%s: on_segment raised", self.output_dir)

    def _measure(self, item: ListedSegment) -> None:
        if not self.options.passthrough or item.segment.duration <= 0.5:
            return
        try:
            size = os.stat(self.output_dir / item.rendition / item.segment.uri).st_size
        except OSError:
            return
        bps = int(size * 8 / item.segment.duration)
        if bps > self._measured_peak_bps * 1.1:
            self._measured_peak_bps = bps

    def _media_playlist_files(self, *renditions: str) -> list[tuple[Path, str]]:
        """The media playlists of ``renditions`` as they must be on disk now (rendered, not written)."""
        files: list[tuple[Path, str]] = []
        for rendition in renditions:
            playlist = self._timeline.playlists[rendition]
            if playlist.target_duration is None:
                continue  # nothing listed yet: the first segment decides TARGETDURATION, then we write
            folder = self.output_dir / rendition
            files.append((folder / MEDIA_PLAYLIST, playlist.render_live(self.options.window_segments)))
            if self.options.dvr:
                start = self._timeline.dvr_start(rendition)
                if start is None:
                    files.append((folder / DVR_PLAYLIST, playlist.render_event()))
                else:  # the disk ran low: a sliding window from ``start`` (no EVENT promise any more)
                    window = sum(1 for segment in playlist.segments if segment.sequence >= start)
                    files.append((folder / DVR_PLAYLIST, playlist.render_live(max(1, window))))
        return files

    def _master_files(self) -> list[tuple[Path, str]]:
        """The master playlists that changed since last queued (rendered, not written)."""
        has_audio = self._encodes_audio
        if has_audio is None:  # before ffmpeg starts: what the publisher says so far
            has_audio = publisher_has_audio(self._advertised_metadata, self._advertised_headers)
        # Before ffmpeg's first start, the rungs the publisher's tallest picture so far would keep.
        options = self.options if self._ladder_chosen else self.options.for_source_height(
            self._feed.tallest_height or publisher_source_height(self._advertised_metadata, self._advertised_headers))
        variants = build_variants(options, self._advertised_metadata,
                                  self._advertised_headers, self._measured_peak_bps, has_audio)
        targets = {MASTER_PLAYLIST: render_master(variants, self._subtitles)}
        if self.options.dvr:
            dvr_variants = [
                dataclasses.replace(v, uri=v.uri.replace(MEDIA_PLAYLIST, DVR_PLAYLIST))
                for v in variants
            ]
            dvr_subtitles = [
                dataclasses.replace(s, uri=s.uri.replace(MEDIA_PLAYLIST, DVR_PLAYLIST)) for s in self._subtitles
            ]
            targets[DVR_MASTER_PLAYLIST] = render_master(dvr_variants, dvr_subtitles)
        files = [(self.output_dir / name, text) for name, text in targets.items() if self._master_text.get(name) != text]
        for path, text in files:
            self._master_text[path.name] = text
        return files

    def _submit(self, files: list[tuple[Path, str]]) -> "asyncio.Future[None]":
        """Queue writes on this packager's one writer thread: off the event loop, in the order queued
        (a later version of a playlist never lands before an earlier one)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playlists")
        future = asyncio.wrap_future(self._writer.submit(_write_files, files))
        self._last_write = future
        return future

    def _stop_writer(self) -> None:
        """Let the writer thread finish what is queued and go; a later write starts a new one."""
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    def _write_soon(self, files: list[tuple[Path, str]]) -> None:
        """Queue writes nobody waits for (a master change from the ingest side); failures are counted."""
        if files:
            self._submit(files).add_done_callback(
                lambda done: self._written(None if done.cancelled() else done.exception(), files))

    def _written(self, error: BaseException | None, master_files: list[tuple[Path, str]]) -> bool:
        """Account for one queued write: an OSError (ENOSPC, EIO) is logged once per streak and
        counted, and the next segment writes again: the supervisor and the listing go on."""
        if error is None:
            if self._write_failing:
                log.warning("%s: playlists written again after %d failed writes", self.output_dir, self.write_errors)
                self._write_failing = False
            return True
        if not isinstance(error, OSError):
            log.error("%s: writing playlists failed", self.output_dir, exc_info=error)
        for path, text in master_files:  # not on disk: write it again next time
            if self._master_text.get(path.name) == text:
                del self._master_text[path.name]
        self.write_errors += 1
        self._on_write_error()
        if not self._write_failing:
            log.error("%s: cannot write playlists (%s); retrying at the next segment", self.output_dir, error)
        self._write_failing = True
        return False

    async def _write_all_playlists(self) -> None:
        """Every playlist, waited for; an OSError is raised (start and finish report it)."""
        master_files = self._master_files()
        try:
            await self._submit(self._media_playlist_files(*self.options.rendition_names) + master_files)
        except BaseException:
            for path, text in master_files:
                if self._master_text.get(path.name) == text:
                    del self._master_text[path.name]
            raise


async def _outcome(future: "asyncio.Future[None]") -> BaseException | None:
    """The exception a queued write ended with, or None."""
    try:
        await future
    except Exception as exc:
        return exc
    return None


def _write_files(files: list[tuple[Path, str]]) -> None:
    """The writer thread's job: each file atomically, in order; the first failure stops the job."""
    for path, text in files:
        write_atomic(path, text)


def _unlink_all(paths: list[Path]) -> None:
    """Delete segments that no playlist lists any more; a failure is logged, never raised."""
    failed: OSError | None = None
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed = exc
    if failed is not None:
        log.warning("%s: could not delete old segments: %s", paths[0].parent, failed)


def _continue_counters(previous: Path, segment: Path, shifts: dict[int, int] | None) -> dict[int, int]:
    """Blocking part of :meth:`Packager._continue_counters` (before the segment is listed)."""
    data = bytearray(segment.read_bytes())
    if shifts is None:
        shifts = counter_offsets(last_counters(previous.read_bytes()), data)
    if shifts:
        shift_counters(data, shifts)
        with open(segment, "r+b") as handle:
            handle.write(data)
    return shifts
