"""Privacy: per-viewer sessions past ``audience_retention_days`` are reduced to counts that name nobody;
the owner's figures stay; /metrics carries nothing per viewer. The clock is an argument: nothing waits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import func, select

from audience.collector import AUDIENCE
from live_server.db import DB
from live_server.models import AudienceReduced, AudienceSession
from live_server.settings import Settings
from tests.audience.watching import BASE, Clock, Player, live_event
from tests.support import Account, login


async def test_old_sessions_are_reduced_to_aggregates(
        client: Any, settings: Settings, make_user: Callable[..., Account], players: Callable[[str, str], Player]) -> None:
    app = client.server.app
    audience = app[AUDIENCE]
    clock = Clock()
    audience.clock = clock
    prof, alice = make_user("lecturer"), make_user("viewer", "alice")
    event = live_event(app[DB], settings.media_dir, prof.id)
    base = str(client.make_url("/"))
    viewers = [players(base, event["slug"]) for _ in range(3)]
    await viewers[0].login(alice)
    for index, player in enumerate(viewers):
        await player.start()
        for minute in range(index + 1):  # watched 1, 2 and 3 minutes (one poll per 10 s slot)
            for second in range(0, 60, 10):
                clock.at(minute, second)
                await player.poll()
    await audience.flush()
    await login(client, prof)
    before = await (await client.get(f"/api/v1/events/{event['id']}/audience")).json()
    assert before["viewers"]["total"] == 3 and before["watch_seconds"]["median"] == 120.0

    handles = app[DB].transaction(lambda s: list(s.scalars(select(AudienceSession.viewer))))
    assert len(handles) == 3
    sessions = lambda: app[DB].transaction(lambda s: s.scalar(select(func.count()).select_from(AudienceSession)))  # noqa: E731
    watched_at = datetime.fromtimestamp(BASE, timezone.utc)
    assert await audience.reduce_expired(watched_at + timedelta(days=settings.audience_retention_days - 1)) == 0
    assert sessions() == 3  # within the retention: kept
    audience.retention_batch = 2  # in batches, the second one merging into the first's aggregate
    assert await audience.reduce_expired(watched_at + timedelta(days=settings.audience_retention_days, minutes=5)) == 3
    assert sessions() == 0
    reduced = app[DB].transaction(lambda s: s.scalars(select(AudienceReduced)).one())
    assert (reduced.viewers, reduced.logged_in, reduced.watched_seconds) == (3, 1, 360.0)

    after = await (await client.get(f"/api/v1/events/{event['id']}/audience")).json()
    assert after["viewers"] == before["viewers"] and after["reduced"] is True
    assert after["watch_seconds"]["total"] == before["watch_seconds"]["total"]
    assert after["watch_seconds"]["median"] == 150.0  # from whole minutes: the middle of the 2nd minute
    assert after["joins"] == before["joins"] and after["leaves"] == before["leaves"]
    assert after["minutes"] == before["minutes"]  # per-minute rows are aggregates already: kept as they are

    resp = await client.get(f"/api/v1/events/{event['id']}/attendance.csv")
    assert resp.status == 404  # (not required) — and no one left to list anyway

    metrics = await (await client.get("/metrics")).text()
    # nothing per viewer reaches /metrics: no handle, no account, no per-viewer label
    assert not [h for h in handles if h in metrics] and "alice" not in metrics and "viewer=" not in metrics
