"""One long-lived ffmpeg packager per live event: FLV in, HLS out, supervised.

The asyncio shell around the pure parts (``feed``, ``timeline``,
``playlist``, ``ffmpeg_args``).  ffmpeg reads FLV on stdin and reports each
completed segment on a pipe; we list it in our own playlists, then tell the
listener.  A supervisor restarts ffmpeg when it dies mid-session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from .feed import FlvFeed
from .ffmpeg_args import build_ffmpeg_args, parse_segment_list_line
from .options import PackagerOptions
from .playlist import (
    PlaylistParseError,
    Segment,
    SubtitleRendition,
    parse_media_playlist,
    render_master,
    write_atomic,
)
from .timeline import AlignmentLost, EventTimeline, ListedSegment
from .variants import MEDIA_PLAYLIST, build_variants

__all__ = ["Packager", "PackagerListener", "DVR_PLAYLIST", "MASTER_PLAYLIST", "DVR_MASTER_PLAYLIST"]

log = logging.getLogger(__name__)

DVR_PLAYLIST = "dvr.m3u8"
MASTER_PLAYLIST = "master.m3u8"
DVR_MASTER_PLAYLIST = "master-dvr.m3u8"


class PackagerListener(Protocol):
    """What the packager tells the rest of the server (recorder, captions, metrics)."""

    def on_segment(self, rendition: str, segment: Segment) -> None:
        """A segment was listed: called after the playlists listing it were written."""

    def on_packager_failed(self, reason: str) -> None:
        """ffmpeg kept dying (or cannot start); the event gets no new segments."""


class _Run:
    """One ffmpeg process and the tasks that serve it."""

    def __init__(self, proc: asyncio.subprocess.Process, list_transport: asyncio.ReadTransport,
                 list_reader: asyncio.StreamReader, stderr_lines: int) -> None:
        self.proc = proc
        self.list_transport = list_transport
        self.list_reader = list_reader
        self.stderr_tail: deque[str] = deque(maxlen=stderr_lines)
        self.tasks: list[asyncio.Task[None]] = []
        self.last_listing = time.monotonic()  # spawn, then every segment ffmpeg reports


class Packager:
    """Packages one live event into HLS under ``output_dir``.

    Layout: ``master.m3u8`` (always, so the player URL never changes),
    ``<rendition>/live.m3u8`` (sliding window), ``<rendition>/dvr.m3u8``
    (EVENT playlist, with ``options.dvr``) and ``<rendition>/seg_NNNNNN.ts``.
    Every broadcast session gets a fresh ffmpeg (publisher timestamps restart
    at each publish); its first segment is marked as a discontinuity.
    """

    def __init__(self, ffmpeg: str, output_dir: Path, options: PackagerOptions,
                 listener: PackagerListener, on_drop: Callable[[], None] = lambda: None) -> None:
        self._ffmpeg = ffmpeg
        self.output_dir = Path(output_dir)
        self.options = options
        self._listener = listener
        self._feed = FlvFeed(options.queue_max_bytes, on_drop)
        self._timeline = EventTimeline(options)
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._run: _Run | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.Task[None] | None = None
        self._restart_times: deque[float] = deque()
        self._master_text: dict[str, str] = {}
        # What the master advertises outlives a session (the feed is reset at its end).
        self._advertised_metadata: Mapping[str, Any] | None = None
        self._advertised_headers: dict[str, bytes] = {}
        self._subtitles: tuple[SubtitleRendition, ...] = ()
        self._measured_peak_bps = 0
        self._started = False
        self._session_active = False
        self._failed_reason: str | None = None
        self._restarts = 0
        self._bytes_in = 0
        self._segments = 0
        self._last_listing_delay: float | None = None
        self._last_media_at = 0.0
        self.hung_kills = 0

    # -- counters ----------------------------------------------------------
    @property
    def segments(self) -> int:
        """Segments listed (per rendition: renditions are listed in lockstep)."""
        return self._segments

    @property
    def restarts(self) -> int:
        """ffmpeg restarts after crashes (not the fresh process of each session)."""
        return self._restarts

    @property
    def bytes_in(self) -> int:
        """Payload bytes received through ``on_media``, dropped ones included."""
        return self._bytes_in

    @property
    def last_listing_delay(self) -> float | None:
        """Seconds from the ingest of the tag that closed the last segment to its listing."""
        return self._last_listing_delay

    @property
    def dropped_tags(self) -> int:
        """Tags dropped because ffmpeg could not keep up or was being restarted."""
        return self._feed.dropped_tags

    @property
    def pid(self) -> int | None:
        """Pid of the running ffmpeg, if any (tests kill it to exercise restarts)."""
        run = self._run
        return run.proc.pid if run is not None and run.proc.returncode is None else None

    @property
    def session_active(self) -> bool:
        return self._session_active

    @property
    def finished(self) -> bool:
        return self._timeline.ended

    @property
    def failed_reason(self) -> str | None:
        return self._failed_reason

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
        self._write_all_playlists()

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
        """A publisher started (or reconnected): start a fresh ffmpeg."""
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
        self._stop_requested.clear()
        first: _Run | None = None
        try:
            first = await self._spawn(resync=False)
        except OSError as exc:
            self._fail(f"cannot start ffmpeg: {exc}")
        self._supervisor = asyncio.create_task(
            self._supervise(first), name=f"packager {self.output_dir}"
        )

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
        self._stop_requested.set()
        self._wakeup.set()
        supervisor = self._supervisor
        if supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), self.options.stop_timeout_seconds)
            except asyncio.TimeoutError:
                log.warning("%s: ffmpeg did not stop in time, killing it", self.output_dir)
                self._kill_current()
                await supervisor
            self._supervisor = None
        self._feed.reset()

    async def finish(self) -> None:
        """The event is over: stop ffmpeg and write ENDLIST in every playlist."""
        if self._grace_timer is not asyncio.current_task():
            self._cancel_grace_timer()
        self._grace_timer = None
        await self._stop_session()
        if not self._started:
            await self.start()
        self._timeline.end()
        self._write_all_playlists()

    async def close(self) -> None:
        """Hard stop (server shutdown): kill ffmpeg, cancel tasks, no ENDLIST."""
        self._session_active = False
        self._stop_requested.set()
        self._cancel_grace_timer()
        self._kill_current()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor

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
            self._write_master()

    # -- ingest side (never blocks) -------------------------------------------
    def on_metadata(self, metadata: Mapping[str, Any]) -> None:
        """onMetaData of the current publisher (sent to ffmpeg, shapes the master playlist)."""
        self._feed.set_metadata(metadata)
        self._wakeup.set()
        self._advertised_metadata = self._feed.metadata
        if self._started:
            self._write_master()

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One FLV audio/video payload; queued for ffmpeg or dropped, never blocking."""
        self._bytes_in += len(payload)
        self._last_media_at = time.monotonic()
        self._feed.push(kind, timestamp_ms, payload, time.time())
        self._wakeup.set()
        header = self._feed.sequence_headers.get(kind)
        if header is not None and self._advertised_headers.get(kind) != header:
            self._advertised_headers[kind] = header
            if self._started:
                self._write_master()

    # -- supervisor ------------------------------------------------------------
    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restart_times and now - self._restart_times[0] > 60.0:
            self._restart_times.popleft()
        return len(self._restart_times) < self.options.max_restarts_per_minute

    async def _supervise(self, first: _Run | None) -> None:
        """Serve ffmpeg processes until the session stops; restart on crashes."""
        if first is None:
            return  # could not even start; already reported
        run: _Run | None = first
        try:
            while True:
                if run is None:
                    try:
                        run = await self._spawn(resync=True)
                    except OSError as exc:
                        self._fail(f"cannot start ffmpeg: {exc}")
                        return
                returncode = await self._serve(run)
                if self._stop_requested.is_set():
                    if returncode not in (0, None):
                        log.warning("%s: ffmpeg exited with %s while stopping: %s", self.output_dir,
                                    returncode, " | ".join(run.stderr_tail))
                    return
                tail = " | ".join(run.stderr_tail) or "(no output)"
                log.warning("%s: ffmpeg exited with %s during a session: %s", self.output_dir,
                            returncode, tail)
                if not self._may_restart():
                    self._fail(
                        f"ffmpeg died {self.options.max_restarts_per_minute + 1} times within a "
                        f"minute; last exit {returncode}: {tail}"
                    )
                    return
                backoff = min(5.0, self.options.restart_backoff_seconds * 2 ** len(self._restart_times))
                self._restart_times.append(time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), backoff)
                if self._stop_requested.is_set():
                    return
                self._restarts += 1
                self._timeline.mark_discontinuity()
                run = None
        finally:
            self._kill_current()
            leftover = self._run
            if leftover is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(leftover.proc.wait())
                await self._cleanup_run(leftover)

    def _fail(self, reason: str) -> None:
        self._failed_reason = reason
        log.error("%s: packager failed: %s", self.output_dir, reason)
        try:
            self._listener.on_packager_failed(reason)
        except Exception:
            log.exception("%s: on_packager_failed raised", self.output_dir)

    def _kill_current(self) -> None:
        run = self._run
        if run is not None and run.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.kill()

    async def _spawn(self, resync: bool) -> _Run:
        start_number = self._timeline.start_run()
        read_fd, write_fd = os.pipe()
        try:
            args = build_ffmpeg_args(self._ffmpeg, self.options, self.output_dir, start_number, write_fd)
            log.debug("%s: starting %s", self.output_dir, args)
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        run = _Run(proc, transport, reader, self.options.stderr_lines_kept)
        self._run = run
        self._feed.new_process(resync=resync)
        run.tasks = [
            asyncio.create_task(self._write_stdin(run)),
            asyncio.create_task(self._read_stderr(run)),
            asyncio.create_task(self._read_segment_list(run)),
            asyncio.create_task(self._watchdog(run)),
        ]
        return run

    async def _watchdog(self, run: _Run) -> None:
        """A live ffmpeg that takes media but lists no segment is hung (seen: blocked output disk,
        stopped process): kill it, and the supervisor restarts it after a discontinuity."""
        limit = self.options.hung_after
        while run.proc.returncode is None:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            media_flowing = now - self._last_media_at < min(2.0, limit / 2)
            if media_flowing and now - run.last_listing > limit:
                log.warning("%s: ffmpeg listed no segment for %.0f s while media arrives; killing it",
                            self.output_dir, now - run.last_listing)
                run.stderr_tail.append(f"hung: no segment for {now - run.last_listing:.0f} s")
                self.hung_kills += 1
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
                return

    async def _serve(self, run: _Run) -> int | None:
        """Wait for the process to exit and for its last segment reports."""
        returncode = await run.proc.wait()
        # The list pipe reaches EOF once ffmpeg (its only writer) is gone.
        writer, stderr_reader, list_reader = run.tasks[:3]
        await asyncio.gather(stderr_reader, list_reader, return_exceptions=True)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await self._cleanup_run(run)
        return returncode

    async def _cleanup_run(self, run: _Run) -> None:
        for task in run.tasks:
            task.cancel()
        await asyncio.gather(*run.tasks, return_exceptions=True)
        run.list_transport.close()
        if self._run is run:
            self._run = None
            files = {r: os.listdir(self.output_dir / r) for r in self.options.rendition_names}
            for rendition, name in self._timeline.end_run(files):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.output_dir / rendition / name)
                log.debug("%s: removed unlisted %s/%s", self.output_dir, rendition, name)

    async def _write_stdin(self, run: _Run) -> None:
        stdin = run.proc.stdin
        assert stdin is not None
        clock_set = False
        try:
            while True:
                data = self._feed.pop()
                if data is None:
                    if self._stop_requested.is_set():
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if not clock_set and self._feed.first_media is not None:
                    wall = datetime.fromtimestamp(self._feed.first_media.received_at, timezone.utc)
                    self._timeline.set_run_clock(wall)
                    clock_set = True
                stdin.write(data)
                # Everything else already queued goes in the same wake-up.
                while (more := self._feed.pop()) is not None:
                    stdin.write(more)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # ffmpeg died; the supervisor handles it
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()

    async def _read_stderr(self, run: _Run) -> None:
        stream = run.proc.stderr
        assert stream is not None
        pending = b""
        while True:
            chunk = await stream.read(4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    run.stderr_tail.append(line)
                    log.debug("%s: ffmpeg: %s", self.output_dir, line)
            if len(pending) > 16384:
                pending = pending[-4096:]
        if pending.strip():
            run.stderr_tail.append(pending.decode("utf-8", "replace").strip())

    async def _read_segment_list(self, run: _Run) -> None:
        while True:
            raw = await run.list_reader.readline()
            if not raw:
                return
            try:
                entry = parse_segment_list_line(raw.decode("utf-8", "replace"))
            except ValueError as exc:
                log.warning("%s: %s", self.output_dir, exc)
                continue
            try:
                listed = self._timeline.add(entry)
            except AlignmentLost as exc:
                log.warning("%s: %s; restarting ffmpeg", self.output_dir, exc)
                run.stderr_tail.append(str(exc))
                self._kill_current()
                return
            except ValueError as exc:
                log.warning("%s: %s", self.output_dir, exc)
                continue
            run.last_listing = time.monotonic()
            if listed:
                self._publish(listed)

    # -- output ------------------------------------------------------------------
    def _publish(self, listed: list[ListedSegment]) -> None:
        """Write the playlists that list these segments, then tell the listener."""
        renditions = {item.rendition for item in listed}
        for item in listed:
            self._measure(item)
        doomed = self._timeline.trim()
        for rendition in renditions:
            self._write_media_playlists(rendition)
        self._write_master()
        for rendition, name in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.output_dir / rendition / name)
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

    def _write_media_playlists(self, rendition: str) -> None:
        playlist = self._timeline.playlists[rendition]
        folder = self.output_dir / rendition
        write_atomic(folder / MEDIA_PLAYLIST, playlist.render_live(self.options.window_segments))
        if self.options.dvr:
            write_atomic(folder / DVR_PLAYLIST, playlist.render_event())

    def _write_all_playlists(self) -> None:
        for rendition in self.options.rendition_names:
            self._write_media_playlists(rendition)
        self._write_master()

    def _write_master(self) -> None:
        variants = build_variants(self.options, self._advertised_metadata,
                                  self._advertised_headers, self._measured_peak_bps)
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
        for name, text in targets.items():
            if self._master_text.get(name) != text:
                write_atomic(self.output_dir / name, text)
                self._master_text[name] = text

