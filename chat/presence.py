"""Live viewer counts per event: chat connections and player polls, kept in memory.

Nothing is written to the catalog: a connection adds to a dict, a disconnect removes from it.
With Redis, each process publishes its own counts every few seconds into one hash per event
(field = process, value = "count:unix time"); the total is the sum of the fresh fields, so a
process that died stops counting after three periods. The cost is one HSET+EXPIRE and one HGETALL
per event with viewers per period, whatever the number of viewers.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class PlayerCounts(Protocol):
    """Viewers seen polling an event's playlists (``web.media.ViewerCounter``)."""

    def count(self, event_id: int) -> int: ...


class Presence:
    """Who is connected to which event's chat in this process, by viewer handle."""

    def __init__(self, players: PlayerCounts | None = None) -> None:
        self.players = players
        self._handles: dict[int, dict[str, int]] = {}

    def join(self, event_id: int, handle: str) -> None:
        handles = self._handles.setdefault(event_id, {})
        handles[handle] = handles.get(handle, 0) + 1

    def leave(self, event_id: int, handle: str) -> None:
        handles = self._handles.get(event_id)
        if handles is None or handle not in handles:
            return
        handles[handle] -= 1
        if handles[handle] <= 0:
            del handles[handle]
        if not handles:
            del self._handles[event_id]

    def chatting(self, event_id: int) -> int:
        return len(self._handles.get(event_id, ()))

    def local(self, event_id: int) -> int:
        """Viewers of the event on this process: the larger of chat connections and players.

        Most people run both (the event page opens the player and the chat), and the two have no
        common identity to take a union of; the larger one is the better estimate.
        """
        players = self.players.count(event_id) if self.players is not None else 0
        return max(self.chatting(event_id), players)

    def events(self) -> list[int]:
        return list(self._handles)


class SharedPresence:
    """Adds up the per-process counts through Redis."""

    def __init__(self, redis: Redis, prefix: str, process_id: str, period_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.process_id = process_id
        self.period = period_seconds

    def _key(self, event_id: int) -> str:
        return f"{self.prefix}:presence:{event_id}"

    async def exchange(self, counts: dict[int, int], now: float | None = None) -> dict[int, int]:
        """Publish this process's counts and return the site-wide totals for the same events."""
        now = time.time() if now is None else now
        ttl = max(1, int(self.period * 3 + 1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, count in counts.items():
                key = self._key(event_id)
                pipe.hset(key, self.process_id, f"{count}:{now:.0f}")
                pipe.expire(key, ttl)
                pipe.hgetall(key)
            replies = await pipe.execute()
        totals: dict[int, int] = {}
        stale_after = self.period * 3
        for index, event_id in enumerate(counts):
            fields = replies[index * 3 + 2] or {}
            total = 0
            for value in fields.values():
                text = value.decode() if isinstance(value, bytes) else str(value)
                count_text, _, stamp = text.partition(":")
                try:
                    if now - float(stamp) <= stale_after:
                        total += int(count_text)
                except ValueError:
                    continue
            totals[event_id] = total
        return totals

    async def forget(self, event_ids: list[int]) -> None:
        if event_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.hdel(self._key(event_id), self.process_id)
                await pipe.execute()
