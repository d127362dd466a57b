"""The blocked-loop guard (tests/loop_guard.py) sees a callback that blocks the loop, and not a test's own wait."""

from __future__ import annotations

import asyncio
import time

from tests.loop_guard import LoopWatchdog


async def _watch(threshold: float) -> LoopWatchdog:
    watchdog = LoopWatchdog(asyncio.get_running_loop(), threshold)
    watchdog.start()
    await asyncio.sleep(0.1)
    return watchdog


async def test_a_callback_that_blocks_the_loop_is_reported_with_its_stack() -> None:
    watchdog = await _watch(0.2)
    try:
        # As a handler calling blocking code would; long enough for the watchdog thread to be scheduled
        # during the block even on a loaded machine.
        asyncio.get_running_loop().call_soon(time.sleep, 1.2)
        await asyncio.sleep(1.4)
    finally:
        watchdog.stop()
    [stall] = watchdog.stalls
    assert 0.2 < stall.seconds < 3.0 and "asyncio/events.py" in stall.stack


async def test_blocks_in_test_code_and_a_quiet_loop_are_not_reported() -> None:
    watchdog = await _watch(0.2)
    try:
        time.sleep(0.6)  # the test's own synchronous wait (a frame in tests/)
        await asyncio.sleep(0.5)  # an idle loop is not a blocked one
    finally:
        watchdog.stop()
    assert watchdog.stalls == []
