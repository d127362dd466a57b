"""A guard that fails a test when the server's event loop was blocked (like aiohttp's own suite).

A heartbeat callback on the loop stamps the time every ``BEAT`` seconds; a watchdog thread looks
at the stamp while the loop is running and, when it is older than the threshold, keeps the loop
thread's stack as it is at that moment (what blocks it). A stall is the app's fault when no frame
of that stack is test code (tests/): a test that runs a synchronous helper of its own (ffmpeg
probing a file, a catalog write) blocks its loop knowingly and is not reported.

The machine is shared (parallel workers, other suites): time the process's threads spent runnable
but waiting for a CPU (Linux's /proc/<pid>/task/*/schedstat) is not counted as blocked (the loop
thread waiting for a CPU, or for a thread it starts or whose lock it needs that waits for one), so
the guard measures what the code did (compute, sleep, wait on a disk), not how loaded the machine is.

Threshold: ``LIVE_TEST_LOOP_BLOCK_SECONDS``, default 2.0: above what this shared 2-core machine's
disk occasionally costs a small synchronous write (a playlist rename once took 1.05 s during a full
parallel run), so the guard does not flake; set it lower (0.3) to hunt smaller blocks. A test that
knowingly accepts a block says so with ``@pytest.mark.allow_loop_block("why")``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

TESTS = str(Path(__file__).resolve().parent) + os.sep
THRESHOLD = float(os.environ.get("LIVE_TEST_LOOP_BLOCK_SECONDS", "2.0"))
BEAT = 0.02
TICK = 0.05


@dataclass
class Stall:
    seconds: float
    stack: str


class LoopWatchdog:
    """Watches one event loop from a daemon thread; ``stalls`` lists the app's blocks seen so far."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self.loop_thread = threading.get_ident()
        self._tasks = Path(f"/proc/{os.getpid()}/task")
        self.stalls: list[Stall] = []
        self._beat = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        self._thread.join(2)

    def _heartbeat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()
        self._handle = self.loop.call_later(BEAT, self._heartbeat)

    def _sample(self) -> list[traceback.FrameSummary] | None:
        """The loop thread's stack, or None while it waits in the selector (descheduled, not blocked)."""
        frame = sys._current_frames().get(self.loop_thread)
        if frame is None or frame.f_code.co_filename.endswith("selectors.py"):
            return None
        return traceback.extract_stack(frame)

    def _run_queue_wait(self) -> float:
        """Seconds the process's threads have waited for a CPU so far (0 where Linux does not say)."""
        total, me = 0, str(threading.get_native_id())
        for task in self._tasks.glob("*/schedstat"):
            if task.parent.name == me:
                continue  # the watchdog's own waits say nothing about the loop
            try:
                total += int(task.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                pass  # a thread that just ended
        return total / 1e9

    def _watch(self) -> None:
        running_since: float | None = None
        stalled = False
        stall_from = stall_until = 0.0
        history: deque[tuple[float, float]] = deque(maxlen=int(self.threshold / TICK) + 100)  # (time, CPU wait)
        stack: list[traceback.FrameSummary] | None = None
        while not self._stop.wait(TICK):
            now = time.monotonic()
            history.append((now, self._run_queue_wait()))
            running = self.loop.is_running()
            with self._lock:
                beat = self._beat
            if running and running_since is None:
                running_since = now  # the loop just (re)started: time before this is not a block
            if not running:
                running_since = None
            if running and running_since is not None and now - max(beat, running_since) > self.threshold:
                if not stalled:
                    stalled, stall_from = True, max(beat, running_since)
                if stack is None:
                    stack = self._sample()  # the first sample that shows what holds the loop
                stall_until = now
                continue
            if stalled:  # the block ended (or the loop stopped in it)
                # Only the app's own blocks count: a stack through test code is the test's doing, and a
                # loop seen only waiting in its selector was starved of CPU by the machine, not blocked.
                waited_before = next((w for t, w in reversed(history) if t <= stall_from), history[0][1])
                blocked = stall_until - stall_from - max(0.0, history[-1][1] - waited_before)
                if blocked > self.threshold and stack is not None and not any(f.filename.startswith(TESTS) for f in stack):
                    self.stalls.append(Stall(blocked, "".join(traceback.format_list(stack[-25:]))))
                stalled, stack = False, None


@pytest.fixture(scope="session")
def _loop_watchdogs() -> Any:
    watchdogs: dict[asyncio.AbstractEventLoop, LoopWatchdog] = {}
    yield watchdogs
    for watchdog in watchdogs.values():
        watchdog.stop()


@pytest.fixture
async def loop_guard(request: pytest.FixtureRequest, _loop_watchdogs: dict[Any, LoopWatchdog]) -> AsyncIterator[LoopWatchdog]:
    """Fails the test (at teardown) when the event loop was blocked longer than the threshold."""
    loop = asyncio.get_running_loop()
    watchdog = _loop_watchdogs.get(loop)
    if watchdog is None:
        watchdog = _loop_watchdogs[loop] = LoopWatchdog(loop, THRESHOLD)
        watchdog.start()
    first = len(watchdog.stalls)
    yield watchdog
    await asyncio.sleep(2 * TICK)  # let the watchdog close a block that ended just now
    stalls = watchdog.stalls[first:]
    if stalls and request.node.get_closest_marker("allow_loop_block") is None:
        worst = max(stalls, key=lambda s: s.seconds)
        pytest.fail(f"the event loop was blocked {len(stalls)} time(s) for more than {watchdog.threshold} s; "
                    f"longest {worst.seconds:.2f} s (not counting waits for a CPU), in:\n{worst.stack}", pytrace=False)
