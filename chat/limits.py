"""Per-person chat limits: token buckets for messages and bytes, slow mode, and strikes per connection.

Pure code with an injected clock, kept in memory: checking a limit must cost nothing at 1,500
viewers. Several server processes each keep their own buckets (sticky connections make that close
enough); bans and open/closed, which must hold everywhere, live in the catalog instead.
"""

from __future__ import annotations

import time
from typing import Callable

Clock = Callable[[], float]


class Refusal(Exception):
    """Why an action was refused, for the sender's ``error`` event."""

    def __init__(self, code: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self, event: str | None = None) -> dict[str, object]:
        data: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retry_after:
            data["retry_after"] = round(self.retry_after, 2)
        if event is not None:
            data["event"] = event
        return data


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``capacity / window`` per second."""

    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, capacity: float, window_seconds: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window_seconds
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` tokens are available (0 when they are now); takes nothing."""
        self._refill(now)
        if cost <= self.tokens:
            return 0.0
        if cost > self.capacity:
            return float("inf")
        return (cost - self.tokens) / self.rate

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens if available and return 0, else return the seconds to wait."""
        wait = self.wait_for(cost, now)
        if wait == 0.0:
            self.tokens -= cost
        return wait

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class SenderLimits:
    """Rate limits (messages and bytes per window) and slow mode, per sender key ("user:3", "guest:ab…")."""

    def __init__(self, messages: int, bytes_: int, window_seconds: float, clock: Clock = time.monotonic,
                 max_senders: int = 50_000) -> None:
        self.messages = messages
        self.bytes = bytes_
        self.window = window_seconds
        self.clock = clock
        self.max_senders = max_senders
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._last_sent: dict[str, float] = {}

    def check(self, key: str, size: int, slow_mode_seconds: float = 0.0) -> Refusal | None:
        """Count one message of ``size`` bytes for ``key``, or say why it must wait (nothing is counted then)."""
        now = self.clock()
        if slow_mode_seconds > 0:
            last = self._last_sent.get(key)
            if last is not None and now - last < slow_mode_seconds:
                wait = slow_mode_seconds - (now - last)
                return Refusal("slow_mode", f"slow mode: one message every {slow_mode_seconds:g} s; wait {wait:.1f} s", wait)
        if size > self.bytes:
            return Refusal("too_large", f"a message may carry at most {self.bytes} bytes")
        buckets = self._buckets.get(key)
        if buckets is None:
            if len(self._buckets) >= self.max_senders:
                self.prune()
            buckets = (TokenBucket(self.messages, self.window, now), TokenBucket(self.bytes, self.window, now))
            self._buckets[key] = buckets
        count, volume = buckets
        wait = max(count.wait_for(1, now), volume.wait_for(size, now))
        if wait > 0:
            return Refusal(
                "rate_limited",
                f"too many messages: at most {self.messages} messages and {self.bytes} bytes per {self.window:g} s",
                wait,
            )
        count.take(1, now)
        volume.take(size, now)
        self._last_sent[key] = now
        return None

    def prune(self) -> None:
        """Forget senders whose buckets are full again (they are indistinguishable from new ones)."""
        now = self.clock()
        for key in [k for k, (c, v) in self._buckets.items() if c.full(now) and v.full(now)]:
            del self._buckets[key]
        horizon = now - 3600.0  # slow mode is at most an hour
        for key in [k for k, t in self._last_sent.items() if t < horizon]:
            del self._last_sent[key]

    def __len__(self) -> int:
        return len(self._buckets)


class Strikes:
    """Refused actions of one connection; past ``limit`` per window the connection is closed (a flood)."""

    def __init__(self, limit: int, window_seconds: float, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.bucket = TokenBucket(limit, window_seconds, clock())

    def strike(self) -> bool:
        """Count one refusal; True when the connection has used up its allowance."""
        return self.bucket.take(1, self.clock()) > 0


class GuestGuard:
    """Limits for guests by address, since a guest's identity is only the token its browser sends.

    A guest that drops its ``guest_token`` becomes a new person with fresh rate limits and no ban.
    So each address may start at most ``identities`` guest identities per ``window`` (reconnecting
    with a known token is free), all guests of an address share a message bucket, and a banned
    guest's address and browser cookie stay marked for the ban's duration (until it is lifted),
    refusing any other guest identity that comes from them to that event. In memory per process:
    sticky sessions keep an address on one process.
    """

    def __init__(self, identities: int, window_seconds: float, messages: int, message_window_seconds: float,
                 clock: Clock = time.monotonic, max_entries: int = 50_000) -> None:
        self.identities = identities
        self.window = window_seconds
        self.messages = messages
        self.message_window = message_window_seconds
        self.clock = clock
        self.max_entries = max_entries
        self._seen: dict[str, dict[str, float]] = {}  # address -> guest id -> last admitted
        self._buckets: dict[str, TokenBucket] = {}  # address -> messages of all its guests
        self._marks: dict[str, list[str]] = {}  # guest key -> where it was last seen ("addr:…", "browser:…")
        self._bans: dict[tuple[int, str], set[str]] = {}  # (event, mark) -> banned guest keys

    def admit(self, address: str, guest_key: str, marks: list[str]) -> Refusal | None:
        """Count ``guest_key`` as one of ``address``'s identities, or refuse it (nothing counted then)."""
        now = self.clock()
        seen = self._seen.get(address)
        if seen is None:
            if len(self._seen) >= self.max_entries:
                self.prune()
            seen = self._seen[address] = {}
        for key in [k for k, t in seen.items() if now - t >= self.window]:
            del seen[key]
        if guest_key not in seen and len(seen) >= self.identities:
            wait = min(seen.values()) + self.window - now
            return Refusal("too_many_guests",
                           f"too many guest identities from your address (at most {self.identities} per "
                           f"{self.window:g} s): keep your guest token, or log in", wait)
        seen[guest_key] = now
        if len(self._marks) >= self.max_entries:
            self._marks.clear()
        self._marks[guest_key] = marks
        return None

    def check_message(self, address: str) -> Refusal | None:
        """Would one more guest message from ``address`` fit? Takes nothing (``take`` does)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        wait = bucket.wait_for(1, self.clock())
        if wait > 0:
            return Refusal("rate_limited", f"too many guest messages from your address: at most {self.messages} "
                           f"per {self.message_window:g} s for all guests there; log in to chat more", wait)
        return None

    def take(self, address: str) -> None:
        now = self.clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                self.prune()
            bucket = self._buckets[address] = TokenBucket(self.messages, self.message_window, now)
        bucket.take(1, now)

    def ban(self, event_id: int, guest_key: str) -> None:
        """Mark where ``guest_key`` was last seen as banned from ``event_id``."""
        for mark in self._marks.get(guest_key, []):
            self._bans.setdefault((event_id, mark), set()).add(guest_key)

    def banned_by(self, event_id: int, marks: list[str]) -> set[str]:
        """The banned guests whose address or browser is one of ``marks`` in this event."""
        found: set[str] = set()
        for mark in marks:
            found |= self._bans.get((event_id, mark), set())
        return found

    def lift(self, event_id: int, guest_key: str) -> None:
        for key in [k for k, keys in self._bans.items() if k[0] == event_id and guest_key in keys]:
            self._bans[key].discard(guest_key)
            if not self._bans[key]:
                del self._bans[key]

    def prune(self) -> None:
        now = self.clock()
        for address in [a for a, seen in self._seen.items() if all(now - t >= self.window for t in seen.values())]:
            del self._seen[address]
        for address in [a for a, b in self._buckets.items() if b.full(now)]:
            del self._buckets[address]
