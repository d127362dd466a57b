"""Where each live stream is: ingest nodes announce the events they carry through Redis.

With ``role=ingest`` and ``role=web`` in different processes (or machines), the web workers that
answer the API have no packager of their own. Every ingest node writes, every couple of seconds, one
short-lived key per live event (its node name and the stream's health); a web worker reads them
when it renders an event. A node that dies stops refreshing and its keys expire within three
periods, so nothing has to clean up after a crash.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable

from redis.asyncio import Redis

log = logging.getLogger(__name__)


class LiveStatusBoard:
    """Announce (ingest side) and look up (web side) the live status of events."""

    def __init__(self, redis: Redis, prefix: str, node: str, period_seconds: float = 2.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.node = node
        self.period = period_seconds

    def _key(self, event_id: int) -> str:
        return f"{self.prefix}:live:{event_id}"

    async def announce(self, statuses: dict[int, dict[str, Any]]) -> None:
        """Refresh this node's events: ``{event_id: {"health": {...}}}``."""
        if not statuses:
            return
        ttl = max(1, int(self.period * 3 + 0.999))
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, status in statuses.items():
                pipe.set(self._key(event_id), json.dumps({"node": self.node, **status}), ex=ttl)
            await pipe.execute()

    async def withdraw(self, event_ids: Iterable[int]) -> None:
        keys = [self._key(e) for e in event_ids]
        if keys:
            await self.redis.delete(*keys)

    async def lookup(self, event_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = list(event_ids)
        if not ids:
            return {}
        found: dict[int, dict[str, Any]] = {}
        for event_id, raw in zip(ids, await self.redis.mget([self._key(e) for e in ids])):
            if raw is None:
                continue
            try:
                found[event_id] = json.loads(raw)
            except ValueError:
                log.warning("unreadable live status for event %s ignored", event_id)
        return found
