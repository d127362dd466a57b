"""Audience collection cost: the hot path per playlist poll, and one flush of a lecture hall.

``python -m bench.audience_collect --viewers 1500 --minutes 3 [--redis redis://127.0.0.1:6379/14]``

In one process, with the real ``audience.collector.Audience`` on a temporary SQLite catalog (or
``--database-url``): (1) the time of ``polled()`` per call, against ``ViewerCounter.seen`` (what every
poll already costs); (2) simulated minutes of ``--viewers`` players polling every 2 s (30 polls per
minute each), flushed every 15 s: flush time (wall, and CPU of the whole process), rows written and statements
per minute. The point:
rows written per minute follow viewers and minutes, not requests (a second run with polls every
1 s writes the same number of rows).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event as sa_event

from audience.collector import Audience
from audience.merge import RedisMerge
from live_server import accounts, events as ev, migrations
from live_server.db import Database
from live_server.models import utcnow
from live_server.security import StreamKeyCipher
from live_server.settings import load_settings
from web.media import ViewerCounter


def per_call(fn: object, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)  # type: ignore[operator]
    return (time.perf_counter() - start) / calls * 1e9


async def run(viewers: int, minutes: int, poll_seconds: float, database_url: str, redis_url: str) -> dict[str, float]:
    migrations.upgrade(database_url)
    db = Database(database_url, stream_key_cipher=StreamKeyCipher(secrets.token_hex(32)))
    prof = db.transaction(lambda s: accounts.create_user(s, f"prof-{secrets.token_hex(3)}", "bench-password", "lecturer"))
    event_id = db.transaction(lambda s: ev.create_event(s, s.merge(prof), ev.EventCreate(title="Bench")).id)
    settings = load_settings(environ={}, database_url=database_url, audience_flush_seconds=15)
    now = [float(int(utcnow().timestamp()) // 60 * 60)]
    merge = None
    redis = None
    if redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url)
        merge = RedisMerge(redis, f"bench-{secrets.token_hex(3)}")
    audience = Audience(settings, db, None, merge, clock=lambda: now[0])  # not started: the bench flushes itself
    ids = [secrets.token_hex(12) for _ in range(viewers)]
    counter = ViewerCounter()
    seen_ns = per_call(lambda i: counter.seen(event_id, ids[i % viewers]), 200_000)
    polled_ns = per_call(lambda i: audience.polled(event_id, ids[i % viewers], "source/live.m3u8", None), 200_000)
    audience._minutes.clear()

    statements = [0]
    sa_event.listen(db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    flushes: list[float] = []
    flush_cpu: list[float] = []
    polls = 0
    steps_per_flush = int(15 / poll_seconds)
    for step in range(int(minutes * 60 / poll_seconds)):
        now[0] += poll_seconds
        for viewer in ids:
            audience.polled(event_id, viewer, "source/live.m3u8", None)
            polls += 1
        if (step + 1) % steps_per_flush == 0:
            started, cpu = time.perf_counter(), time.process_time()
            await audience.flush()
            flushes.append(time.perf_counter() - started)
            flush_cpu.append(time.process_time() - cpu)  # every thread of the process: the loop and the db worker
    await audience.stop()
    if redis is not None:
        await redis.aclose()
    db.close()
    return {"seen_ns": seen_ns, "polled_ns": polled_ns, "polls_per_minute": polls / minutes,
            "rows_per_minute": audience.rows_written / minutes, "statements_per_minute": statements[0] / minutes,
            "flush_ms_median": statistics.median(flushes) * 1000, "flush_ms_max": max(flushes) * 1000,
            "flush_cpu_ms_median": statistics.median(flush_cpu) * 1000,
            "flush_cpu_ms_per_minute": sum(flush_cpu) / minutes * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=1500)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--poll-seconds", type=float, nargs="+", default=[2.0, 1.0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    for poll_seconds in args.poll_seconds:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
            figures = asyncio.run(run(args.viewers, args.minutes, poll_seconds, url, args.redis))
        print(f"viewers={args.viewers} poll every {poll_seconds:g} s: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
