"""Redis away during a flush: what was collected is kept, and counted once when Redis is back."""

from __future__ import annotations

import secrets
from typing import Callable

import pytest
from redis.asyncio import Redis

from audience.collector import Audience
from audience.merge import RedisMerge
from audience import store
from live_server.db import Database
from live_server.models import Event
from live_server.settings import Settings
from tests.audience.watching import Clock, live_event
from tests.support import Account


async def test_a_flush_without_redis_loses_nothing(
        settings: Settings, db: Database, make_user: Callable[..., Account], redis_url: str) -> None:
    prof = make_user("lecturer")
    event = live_event(db, settings.media_dir, prof.id)
    clock = Clock()
    away = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)  # nothing listens on port 1
    redis = Redis.from_url(redis_url)
    audience = Audience(settings, db, None, RedisMerge(away, "unused"), clock=clock)
    await audience.start(retention=False)
    try:
        for second in (0, 10, 20):
            clock.at(0, second)
            for viewer in ("a" * 24, "b" * 24):
                audience.polled(event["id"], viewer, "source/live.m3u8", None)
        with pytest.raises(Exception):
            await audience.flush()
        audience.merge = RedisMerge(redis, f"live-audience-test-{secrets.token_hex(4)}")  # Redis is back
        clock.at(0, 30)
        audience.polled(event["id"], "a" * 24, "source/live.m3u8", None)
        assert await audience.flush() == 3  # the minute row and both sessions
        figures = db.transaction(lambda s: store.event_audience(s, s.get(Event, event["id"])))
        [minute] = [m for m in figures["minutes"] if m["viewers"]]
        assert (minute["viewers"], minute["new_viewers"]) == (2, 2)
        assert figures["watch_seconds"]["total"] == 70.0  # a: 4 slots, b: 3 slots, each counted once
    finally:
        await audience.stop()
        await away.aclose()
        await redis.aclose()
