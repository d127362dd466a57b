"""The pure limit code with a controlled clock: token buckets, slow mode, strikes, batching."""

from __future__ import annotations

import asyncio
from typing import Any

from chat.fanout import RoomBatcher
from chat.limits import SenderLimits, Strikes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_messages_per_window_refill_continuously() -> None:
    clock = Clock()
    limits = SenderLimits(messages=2, bytes_=1000, window_seconds=10, clock=clock)
    assert limits.check("user:1", 10) is None and limits.check("user:1", 10) is None
    refusal = limits.check("user:1", 10)
    assert refusal is not None and refusal.code == "rate_limited" and refusal.retry_after == 5.0
    assert limits.check("user:2", 10) is None  # per person
    clock.now += 5
    assert limits.check("user:1", 10) is None
    assert limits.check("user:1", 10) is not None


def test_bytes_per_window_and_refused_messages_cost_nothing() -> None:
    clock = Clock()
    limits = SenderLimits(messages=100, bytes_=100, window_seconds=10, clock=clock)
    assert limits.check("k", 80) is None
    assert limits.check("k", 30).code == "rate_limited"
    assert limits.check("k", 20) is None  # the refused 30 bytes were not counted
    assert limits.check("k", 101).code == "too_large"


def test_slow_mode_counts_from_the_last_accepted_message() -> None:
    clock = Clock()
    limits = SenderLimits(messages=100, bytes_=10_000, window_seconds=10, clock=clock)
    assert limits.check("k", 1, slow_mode_seconds=3) is None
    clock.now += 1
    refusal = limits.check("k", 1, slow_mode_seconds=3)
    assert refusal.code == "slow_mode" and abs(refusal.retry_after - 2) < 1e-9
    clock.now += 2
    assert limits.check("k", 1, slow_mode_seconds=3) is None


def test_prune_forgets_idle_senders_only() -> None:
    clock = Clock()
    limits = SenderLimits(messages=5, bytes_=100, window_seconds=10, clock=clock)
    limits.check("idle", 10)
    clock.now += 20
    limits.check("busy", 10)
    limits.prune()
    assert len(limits) == 1


def test_strikes() -> None:
    clock = Clock()
    strikes = Strikes(limit=3, window_seconds=30, clock=clock)
    assert [strikes.strike() for _ in range(4)] == [False, False, False, True]
    clock.now += 10
    assert strikes.strike() is False


async def test_batcher_sends_at_once_when_quiet_and_coalesces_within_the_window() -> None:
    sent: list[tuple[str, list[Any]]] = []

    async def emit(event: str, room: str, items: list[Any]) -> None:
        sent.append((room, items))

    batcher = RoomBatcher(emit, "messages", window=0.05)
    await batcher.add("event:1", 0)  # a quiet room: out at once
    for i in (1, 2):
        await batcher.add("event:1", i)  # within the window: held and coalesced
    await batcher.add("event:2", "x")  # another room is not held back by the first
    assert sent == [("event:1", [0]), ("event:2", ["x"])]
    await asyncio.sleep(0.15)
    assert sent[2:] == [("event:1", [1, 2])]
    await batcher.add("event:1", 3)  # the window has passed: out at once
    await batcher.add("event:1", 4)
    await batcher.flush("event:1")  # e.g. before a deletion
    assert sent[3:] == [("event:1", [3]), ("event:1", [4])]
    await asyncio.sleep(0.1)
    assert len(sent) == 5 and batcher.emits == 5

    unbatched = RoomBatcher(emit, "messages", window=0)
    await unbatched.add("event:9", "now")
    assert sent[-1] == ("event:9", ["now"])


def test_guest_guard_counts_identities_per_address_and_follows_bans() -> None:
    from chat.limits import GuestGuard

    clock = Clock()
    guard = GuestGuard(identities=2, window_seconds=60, messages=3, message_window_seconds=10, clock=clock)
    assert guard.admit("1.2.3.4", "guest:a", ["addr:1.2.3.4"]) is None
    assert guard.admit("1.2.3.4", "guest:b", ["addr:1.2.3.4", "browser:x"]) is None
    refusal = guard.admit("1.2.3.4", "guest:c", ["addr:1.2.3.4"])
    assert refusal is not None and refusal.code == "too_many_guests" and refusal.retry_after == 60
    assert guard.admit("1.2.3.4", "guest:a", ["addr:1.2.3.4"]) is None  # a known identity comes back
    assert guard.admit("5.6.7.8", "guest:c", ["addr:5.6.7.8"]) is None  # another address
    clock.now += 61
    assert guard.admit("1.2.3.4", "guest:c", ["addr:1.2.3.4"]) is None  # the window has passed

    for _ in range(3):
        assert guard.check_message("1.2.3.4") is None
        guard.take("1.2.3.4")
    assert guard.check_message("1.2.3.4").code == "rate_limited"
    assert guard.check_message("5.6.7.8") is None
    clock.now += 10 / 3
    assert guard.check_message("1.2.3.4") is None

    guard.ban(7, "guest:b")
    assert guard.banned_by(7, ["addr:1.2.3.4"]) == {"guest:b"}
    assert guard.banned_by(7, ["addr:9.9.9.9", "browser:x"]) == {"guest:b"}
    assert guard.banned_by(8, ["addr:1.2.3.4"]) == set()  # another event
    guard.lift(7, "guest:b")
    assert guard.banned_by(7, ["addr:1.2.3.4", "browser:x"]) == set()
