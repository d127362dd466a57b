"""The LL-HLS transcoder: one supervised ffmpeg per event session, the event's FLV in, each ABR
rendition's FLV (H.264 + AAC) out on its own pipe, read back as tags for our CMAF muxer.

ffmpeg only encodes here (``ffmpeg_args.build_transcoder_args``); the packaging (parts, segments,
playlists) is ``ll_ladder``'s, fed by the caller's ``on_tag``. Same feed and supervision rules as
the plain-HLS packager (``packager.py``): ffmpeg starts at a session's first media frame; the bounded
``FlvFeed`` stands between the publisher and its stdin; a process that dies mid-session is restarted
(back-off, ``max_restarts_per_minute``), resuming at the next keyframe, and the caller is told
(``on_restart``: a discontinuity in every rendition); one that was fed media and has output nothing
for ``hung_after`` seconds is killed, then restarted the same way. Only this event is affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping

from formats.flv import TAG_AUDIO, TAG_VIDEO, FlvTagReader

from .feed import FlvFeed
from .ffmpeg_args import build_transcoder_args
from .options import PackagerOptions

__all__ = ["Transcoder"]

log = logging.getLogger(__name__)

_KINDS = {TAG_AUDIO: "audio", TAG_VIDEO: "video"}
#: Output may trail input by this much before the watchdog and the health call it overdue:
#: ffmpeg probes up to ``analyzeduration`` (1 s) of media before its first frame.
OUTPUT_SLACK_SECONDS = 1.0


class _Output(asyncio.Protocol):
    """One rendition's pipe: FLV bytes in, tags out to the transcoder (on the loop)."""

    def __init__(self, name: str, on_tags: Callable[[str, list[tuple[int, int, bytes]]], None]) -> None:
        self.name = name
        self._reader = FlvTagReader()
        self._on_tags = on_tags
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            tags = self._reader.feed(data)
        except ValueError as exc:
            self.error = str(exc)
            return
        if tags:
            try:
                self._on_tags(self.name, tags)
            except Exception:  # never let one bad tag stop this pipe's reading (ffmpeg would block on it)
                log.exception("%s: muxing a transcoded tag failed", self.name)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    def __init__(self, proc: asyncio.subprocess.Process, outputs: list[_Output],
                 transports: list[asyncio.ReadTransport], stderr_lines: int) -> None:
        self.proc = proc
        self.outputs = outputs
        self.transports = transports
        self.stderr_tail: deque[str] = deque(maxlen=stderr_lines)
        self.tasks: list[asyncio.Task[None]] = []
        self.owed_since: float | None = None  # monotonic: input written and no output read since


class Transcoder:
    """Encodes one event's ABR ladder with ffmpeg; each output tag goes to ``on_tag(rendition, kind, ms, body)``."""

    def __init__(self, ffmpeg: str, options: PackagerOptions, label: Path | str, *,
                 on_tag: Callable[[str, str, int, bytes], None],
                 on_restart: Callable[[], None] = lambda: None,
                 on_failed: Callable[[str], None] = lambda reason: None,
                 on_drop: Callable[[], None] = lambda: None) -> None:
        if options.passthrough:
            raise ValueError("the transcoder encodes ABR ladders only")
        self._ffmpeg = ffmpeg
        self.options = options
        self._label = str(label)
        self._on_tag = on_tag
        self._on_restart = on_restart
        self._on_failed = on_failed
        self._feed = FlvFeed(options.queue_max_bytes, on_drop)
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._media_arrived = asyncio.Event()
        self._run: _Run | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._restart_times: deque[float] = deque()
        self.restarts = 0
        self.hung_kills = 0
        self.tags_out = 0
        self.failed_reason: str | None = None

    # -- what the packager reads ------------------------------------------------------------
    @property
    def dropped_tags(self) -> int:
        return self._feed.dropped_tags

    @property
    def pid(self) -> int | None:
        run = self._run
        return run.proc.pid if run is not None and run.proc.returncode is None else None

    @property
    def overdue_seconds(self) -> float:
        """How long media written to ffmpeg has gone without any output, past the slack (0: none)."""
        run = self._run
        if run is None or run.owed_since is None or run.proc.returncode is not None:
            return 0.0
        return max(0.0, time.monotonic() - run.owed_since - OUTPUT_SLACK_SECONDS)

    # -- input (never blocks) ------------------------------------------------------------------
    def on_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._feed.set_metadata(metadata)
        self._wakeup.set()

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        self._feed.push(kind, timestamp_ms, payload, time.time())
        self._media_arrived.set()
        self._wakeup.set()

    # -- lifecycle ---------------------------------------------------------------------------
    def begin(self) -> None:
        """A publish session starts: ffmpeg will start at its first media frame."""
        self._feed.reset()
        self._stop_requested.clear()
        self._media_arrived.clear()
        self.failed_reason = None
        self._supervisor = asyncio.create_task(self._supervise(), name=f"transcoder {self._label}")

    async def stop(self) -> None:
        """The session ends: ffmpeg gets what was queued, then EOF; its last frames come out before this
        returns (killed after ``stop_timeout_seconds``)."""
        self._stop_requested.set()
        self._wakeup.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), self.options.stop_timeout_seconds)
            except asyncio.TimeoutError:
                log.warning("%s: the transcoder did not stop in time, killing it", self._label)
                self._kill()
                await supervisor
        self._feed.reset()

    async def close(self) -> None:
        """Hard stop (server shutdown)."""
        self._stop_requested.set()
        self._kill()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor

    # -- supervision ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        if not await self._first_media():
            return
        resync = False
        try:
            while True:
                try:
                    run = await self._spawn(resync)
                except OSError as exc:
                    self._fail(f"cannot start ffmpeg: {exc}")
                    return
                returncode = await self._serve(run)
                if self._stop_requested.is_set():
                    if returncode not in (0, None):
                        log.warning("%s: transcoder exited with %s while stopping: %s", self._label, returncode,
                                    " | ".join(run.stderr_tail))
                    return
                tail = " | ".join(run.stderr_tail) or "(no output)"
                log.warning("%s: transcoder exited with %s during a session: %s", self._label, returncode, tail)
                if not self._may_restart():
                    self._fail(f"the transcoder died {self.options.max_restarts_per_minute + 1} times within a "
                               f"minute; last exit {returncode}: {tail}")
                    return
                backoff = min(5.0, self.options.restart_backoff_seconds * 2 ** len(self._restart_times))
                self._restart_times.append(time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), backoff)
                if self._stop_requested.is_set():
                    return
                self.restarts += 1
                self._on_restart()
                resync = True
        finally:
            self._kill()
            leftover = self._run
            if leftover is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(leftover.proc.wait())
                await self._cleanup(leftover)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restart_times and now - self._restart_times[0] > 60.0:
            self._restart_times.popleft()
        return len(self._restart_times) < self.options.max_restarts_per_minute

    async def _first_media(self) -> bool:
        media = asyncio.ensure_future(self._media_arrived.wait())
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({media, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            media.cancel()
            stop.cancel()
            await asyncio.gather(media, stop, return_exceptions=True)
        return self._media_arrived.is_set() and not self._stop_requested.is_set()

    def _fail(self, reason: str) -> None:
        self.failed_reason = reason
        log.error("%s: transcoder failed: %s", self._label, reason)
        self._on_failed(reason)

    def _kill(self) -> None:
        run = self._run
        if run is not None and run.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.kill()

    async def _spawn(self, resync: bool) -> _Run:
        loop = asyncio.get_running_loop()
        pipes = [os.pipe() for _ in self.options.ladder]
        try:
            args = build_transcoder_args(self._ffmpeg, self.options, [w for _, w in pipes])
            log.debug("%s: starting %s", self._label, args)
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=[w for _, w in pipes])
        except BaseException:
            for r, _ in pipes:
                os.close(r)
            raise
        finally:
            for _, w in pipes:
                os.close(w)
        outputs: list[_Output] = []
        transports: list[asyncio.ReadTransport] = []
        try:
            for rendition, (r, _) in zip(self.options.ladder, pipes):
                output = _Output(rendition.name, self._tags_out)
                outputs.append(output)
                transport, _ = await loop.connect_read_pipe(_factory(output), os.fdopen(r, "rb", buffering=0))
                transports.append(transport)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            for transport in transports:
                transport.close()
            raise
        run = _Run(proc, outputs, transports, self.options.stderr_lines_kept)
        self._run = run
        self._feed.new_process(resync=resync)
        run.tasks = [
            asyncio.create_task(self._write_stdin(run)),
            asyncio.create_task(self._read_stderr(run)),
            asyncio.create_task(self._watchdog(run)),
        ]
        return run

    async def _serve(self, run: _Run) -> int | None:
        """Wait for the process to exit and for every output pipe to reach its end."""
        returncode = await run.proc.wait()
        await asyncio.gather(*(o.closed for o in run.outputs), run.tasks[1], return_exceptions=True)
        for output in run.outputs:
            if output.error is not None:
                run.stderr_tail.append(f"{output.name}: {output.error}")
        await self._cleanup(run)
        return returncode

    async def _cleanup(self, run: _Run) -> None:
        for task in run.tasks:
            task.cancel()
        await asyncio.gather(*run.tasks, return_exceptions=True)
        for transport in run.transports:
            transport.close()
        if self._run is run:
            self._run = None

    def _tags_out(self, name: str, tags: list[tuple[int, int, bytes]]) -> None:
        run = self._run
        if run is not None:
            run.owed_since = None
        for tag_type, timestamp_ms, payload in tags:
            kind = _KINDS.get(tag_type)
            if kind is None:
                continue  # onMetaData: what the master says comes from the sequence headers
            self.tags_out += 1
            self._on_tag(name, kind, timestamp_ms, payload)

    async def _write_stdin(self, run: _Run) -> None:
        stdin = run.proc.stdin
        assert stdin is not None
        try:
            while True:
                data = self._feed.pop()
                if data is None:
                    if self._stop_requested.is_set():
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                while (more := self._feed.pop()) is not None:
                    data += more
                if run.owed_since is None:
                    run.owed_since = time.monotonic()
                stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()

    async def _read_stderr(self, run: _Run) -> None:
        stream = run.proc.stderr
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: keep its end
                raw = await stream.read(4096)
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            if line:
                run.stderr_tail.append(line)
                log.debug("%s: ffmpeg: %s", self._label, line)

    async def _watchdog(self, run: _Run) -> None:
        """Media written and nothing out for ``hung_after`` seconds: hung (a stopped process, a
        blocked pipe). Kill it; the supervisor restarts it. No media fed, nothing owed."""
        limit = self.options.hung_after
        while run.proc.returncode is None:
            await asyncio.sleep(min(0.5, limit / 4))
            since = run.owed_since
            if since is not None and time.monotonic() - since > limit:
                log.warning("%s: the transcoder was fed media %.0f s ago and output nothing since; killing it",
                            self._label, time.monotonic() - since)
                run.stderr_tail.append(f"hung: no output for {time.monotonic() - since:.0f} s")
                self.hung_kills += 1
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
                return


def _factory(output: _Output) -> Callable[[], _Output]:
    return lambda: output
