"""The one supervisor of an event's ffmpeg, shared by the plain-HLS packager (``packager.py``) and the
LL-HLS transcoder (``transcoder.py``), so that both start, watch, restart and stop it the same way.

ffmpeg starts at a session's first media frame (a peer that publishes nothing leaves no process); the
bounded ``FlvFeed`` stands between the publisher and its stdin; a process that dies mid-session is
restarted (back-off, at most ``max_restarts_per_minute``), resuming at the next keyframe, and the owner
is told (``on_restart``: a discontinuity); one its owner judges hung (``overdue_since``) is killed and
restarted the same way. Stopping gives ffmpeg what was queued, then EOF, and kills it after
``stop_timeout_seconds``. What ffmpeg is run with and what its outputs mean stay the owner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from .feed import FlvFeed
from .options import PackagerOptions

__all__ = ["FfmpegRun", "Supervised", "Supervisor", "spawn_ffmpeg"]

log = logging.getLogger(__name__)


class FfmpegRun:
    """One ffmpeg process and the tasks that serve it (owners subclass it for their own per-process state)."""

    def __init__(self, proc: asyncio.subprocess.Process, transports: Sequence[asyncio.BaseTransport],
                 stderr_lines: int) -> None:
        self.proc = proc
        self.transports = list(transports)  # the output pipes, closed when the run ends
        self.stderr_tail: deque[str] = deque(maxlen=stderr_lines)
        self.tasks: list[asyncio.Task[None]] = []  # cancelled when the run ends
        #: What reaches its end once ffmpeg (the only writer of its outputs) is gone; awaited after exit.
        self.readers: list[Awaitable[object]] = []


R = TypeVar("R", bound=FfmpegRun)


async def spawn_ffmpeg(argv: Callable[[list[int]], list[str]], outputs: Sequence[asyncio.Protocol],
                       label: str) -> tuple[asyncio.subprocess.Process, list[asyncio.ReadTransport]]:
    """Start ffmpeg with one pipe per protocol of ``outputs`` (``argv`` is given their write ends) and
    connect each read end to its protocol; nothing leaks if any step fails."""
    pipes = [os.pipe() for _ in outputs]
    try:
        args = argv([w for _, w in pipes])
        log.debug("%s: starting %s", label, args)
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
    loop = asyncio.get_running_loop()
    transports: list[asyncio.ReadTransport] = []
    try:
        for protocol, (r, _) in zip(outputs, pipes):
            transport, _ = await loop.connect_read_pipe(_factory(protocol), os.fdopen(r, "rb", buffering=0))
            transports.append(transport)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        for transport in transports:
            transport.close()
        raise
    return proc, transports


def _factory(protocol: asyncio.Protocol) -> Callable[[], asyncio.Protocol]:
    return lambda: protocol


class Supervised:
    """What an owner of a supervised ffmpeg (the packager, the transcoder) shows the hub, its health and tests."""

    _process: "Supervisor[Any]"
    _feed: FlvFeed

    @property
    def restarts(self) -> int:
        """ffmpeg restarts after crashes or hangs (not the fresh process of each session)."""
        return self._process.restarts

    @property
    def hung_kills(self) -> int:
        """ffmpeg processes the watchdog killed as hung."""
        return self._process.hung_kills

    @property
    def dropped_tags(self) -> int:
        """Tags dropped because ffmpeg could not keep up or was being restarted."""
        return self._feed.dropped_tags

    @property
    def pid(self) -> int | None:
        """Pid of the running ffmpeg, if any (tests kill it to exercise restarts)."""
        run = self._process.running
        return run.proc.pid if run is not None else None


class Supervisor(Generic[R]):
    """Runs one ffmpeg after another for a publish session, from ``begin`` to ``stop`` or ``close``.

    ``launch(resync)`` starts one process (``resync``: after a crash) and returns its run, with the
    owner's output readers; ``hold(waited)`` says how much longer a session's first start should wait,
    ``waited`` seconds after its first media frame (the ladder's choice: ``options.ladder_wait_seconds``); ``overdue_since(run)`` says since when (monotonic) the owner has been owed
    output, or None; ``before_write(run)`` sees each batch of stdin; ``on_ended(run)`` the end of the
    current run, its tasks done and its pipes closed.
    """

    def __init__(self, options: PackagerOptions, feed: FlvFeed, label: str, *, name: str, hang_note: str,
                 launch: Callable[[bool], Awaitable[R]],
                 overdue_since: Callable[[R], float | None],
                 on_restart: Callable[[], None],
                 on_failed: Callable[[str], None],
                 before_write: Callable[[R], None] = lambda run: None,
                 on_ended: Callable[[R], None] = lambda run: None,
                 hold: Callable[[float], float] = lambda waited: 0.0) -> None:
        self.options = options
        self._feed = feed
        self._label = label
        self._name = name  # what the logs and failure reasons call the process
        self._hang_note = hang_note  # what a hung process owes, in its stderr tail: "hung: <note> N s"
        self._launch = launch
        self._overdue_since = overdue_since
        self._on_restart = on_restart
        self._on_failed = on_failed
        self._before_write = before_write
        self._on_ended = on_ended
        self._hold = hold
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._media_arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restart_times: deque[float] = deque()
        self.run: R | None = None
        self.restarts = 0  # restarts after crashes or hangs (not the fresh process of each session)
        self.hung_kills = 0

    @property
    def running(self) -> R | None:
        """The current run while its process is alive."""
        run = self.run
        return run if run is not None and run.proc.returncode is None else None

    # -- input side (never blocks) ---------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued on the feed: the stdin writer takes it."""
        self._wakeup.set()

    def media_arrived(self) -> None:
        """A media frame came: ffmpeg may start."""
        self._media_arrived.set()
        self._wakeup.set()

    # -- lifecycle --------------------------------------------------------------------------------
    def begin(self, task_name: str) -> None:
        """A publish session starts: ffmpeg starts at its first media frame."""
        self._stop_requested.clear()
        self._media_arrived.clear()
        self._task = asyncio.create_task(self._supervise(), name=task_name)

    async def stop(self) -> None:
        """The session ends: ffmpeg gets what was queued, then EOF (killed after ``stop_timeout_seconds``)."""
        self._stop_requested.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.options.stop_timeout_seconds)
            except asyncio.TimeoutError:
                log.warning("%s: %s did not stop in time, killing it", self._label, self._name)
                self.kill()
                await task
        self._feed.reset()

    async def close(self) -> None:
        """Hard stop (server shutdown): kill ffmpeg, cancel the supervision."""
        self._stop_requested.set()
        self.kill()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def kill(self) -> None:
        """Kill the current process; during a session the supervisor restarts it."""
        run = self.run
        if run is not None and run.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.kill()

    # -- supervision ------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        """Wait for the first media frame, then serve ffmpeg processes until the session stops."""
        if not await self._first_media() or not await self._held():
            return  # the publisher left without sending a frame (or during the hold): no ffmpeg was ever needed
        resync = False
        try:
            while True:
                try:
                    run = await self._start(resync)
                except OSError as exc:
                    self._on_failed(f"cannot start ffmpeg: {exc}")
                    return
                returncode = await self._serve(run)
                if self._stop_requested.is_set():
                    if returncode not in (0, None):
                        log.warning("%s: %s exited with %s while stopping: %s", self._label, self._name,
                                    returncode, " | ".join(run.stderr_tail))
                    return
                tail = " | ".join(run.stderr_tail) or "(no output)"
                log.warning("%s: %s exited with %s during a session: %s", self._label, self._name, returncode, tail)
                if not self._may_restart():
                    self._on_failed(f"{self._name} died {self.options.max_restarts_per_minute + 1} times within a "
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
            self.kill()
            leftover = self.run
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
        """True once a media frame arrived in this session; False if the session stopped first."""
        media = asyncio.ensure_future(self._media_arrived.wait())
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({media, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            media.cancel()
            stop.cancel()
            await asyncio.gather(media, stop, return_exceptions=True)
        return self._media_arrived.is_set() and not self._stop_requested.is_set()

    async def _held(self) -> bool:
        """Wait as long as the owner's ``hold`` says (re-asked at every media frame), then, if it waited,
        let ffmpeg start at the latest keyframe queued rather than catch up on the wait; False if the
        session stopped first."""
        first = time.monotonic()
        held = False
        while (left := self._hold(time.monotonic() - first)) > 0:
            held = True
            self._media_arrived.clear()
            media = asyncio.ensure_future(self._media_arrived.wait())
            stop = asyncio.ensure_future(self._stop_requested.wait())
            try:
                await asyncio.wait({media, stop}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                media.cancel()
                stop.cancel()
                await asyncio.gather(media, stop, return_exceptions=True)
            if self._stop_requested.is_set():
                return False
        if held:
            skipped = self._feed.skip_to_latest_keyframe()
            log.debug("%s: %s starts after %.1f s, at the latest keyframe (%d tags before it skipped)",
                      self._label, self._name, time.monotonic() - first, skipped)
        return True

    async def _start(self, resync: bool) -> R:
        run = await self._launch(resync)
        self.run = run
        self._feed.new_process(resync=resync)
        stderr = asyncio.create_task(self._read_stderr(run))
        run.readers.append(stderr)
        run.tasks += [asyncio.create_task(self._write_stdin(run)), stderr, asyncio.create_task(self._watchdog(run))]
        return run

    async def _serve(self, run: R) -> int | None:
        """Wait for the process to exit and for its outputs and stderr to reach their end."""
        returncode = await run.proc.wait()
        await asyncio.gather(*run.readers, return_exceptions=True)
        await self._cleanup(run)
        return returncode

    async def _cleanup(self, run: R) -> None:
        for task in run.tasks:
            task.cancel()
        await asyncio.gather(*run.tasks, return_exceptions=True)
        for transport in run.transports:
            transport.close()
        if self.run is run:
            self.run = None
            self._on_ended(run)

    async def _write_stdin(self, run: R) -> None:
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
                self._before_write(run)
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

    async def _read_stderr(self, run: R) -> None:
        """Keep the last lines of ffmpeg's stderr (progress lines end in CR) for the logs and failures."""
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
                    log.debug("%s: ffmpeg: %s", self._label, line)
            if len(pending) > 16384:
                pending = pending[-4096:]
        if pending.strip():
            run.stderr_tail.append(pending.decode("utf-8", "replace").strip())

    async def _watchdog(self, run: R) -> None:
        """A process that owes output for ``hung_after`` seconds is hung (seen: a blocked output disk, a
        stopped process): kill it, and the supervisor restarts it after a discontinuity."""
        limit = self.options.hung_after
        while run.proc.returncode is None:
            await asyncio.sleep(min(0.5, limit / 4))
            since = self._overdue_since(run)
            if since is not None and time.monotonic() - since > limit:
                note = f"hung: {self._hang_note} {time.monotonic() - since:.0f} s"
                log.warning("%s: %s %s; killing it", self._label, self._name, note)
                run.stderr_tail.append(note)
                self.hung_kills += 1
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
                return
