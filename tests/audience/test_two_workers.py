"""Two web workers behind one Redis and one PostgreSQL catalog: players whose polls reach both (no sticky
sessions) are counted once per minute, new once, and their watch time is not doubled."""

from __future__ import annotations

import secrets
from typing import Any, Callable

import pytest

from audience.collector import AUDIENCE
from live_server import accounts
from live_server.app import create_app
from live_server.db import Database
from live_server.settings import Settings
from tests.audience.watching import Clock, Player, live_event
from tests.support import Account, login, stream_key_cipher


@pytest.fixture
def shared(make_settings: Callable[..., Settings], migrated_postgres: str, redis_url: str) -> list[Settings]:
    channel = f"live-audience-test-{secrets.token_hex(4)}"  # the workers' Redis key prefix, this test's own
    return [make_settings(database_url=migrated_postgres, redis_url=redis_url, chat_redis_channel=channel, role="web",
                          node_name=f"worker-{i}", audience_flush_seconds=300) for i in range(2)]


async def test_viewers_polling_both_workers_are_counted_once(
        aiohttp_client: Any, shared: list[Settings], players: Callable[[str, str], Player]) -> None:
    clients = [await aiohttp_client(create_app(s)) for s in shared]
    audiences = [c.server.app[AUDIENCE] for c in clients]
    clock = Clock()
    for audience in audiences:
        audience.clock = clock
    db = Database(shared[0].effective_database_url, stream_key_cipher=stream_key_cipher(shared[0]))
    try:
        prof_row = db.transaction(lambda s: accounts.create_user(s, "prof", "prof-password-1", "lecturer"))
        alice_row = db.transaction(lambda s: accounts.create_user(s, "alice", "alice-password-1", "viewer"))
        event = live_event(db, shared[0].media_dir, prof_row.id, "Shared lecture")
    finally:
        db.close()
    bases = [str(c.make_url("/")) for c in clients]
    # three players on worker 0's address, their every other poll sent to worker 1 (a round-robin balancer)
    people = [players(bases[0], event["slug"]) for _ in range(3)]
    await people[0].login(Account(alice_row.id, "alice", "alice-password-1", "viewer"))
    for player in people:
        await player.start()

    async def poll(player: Player, worker: int) -> None:
        original = player.base
        player.base = bases[worker].rstrip("/")  # the same cookies: 127.0.0.1 cookies are sent to either port
        try:
            await player.poll()
        finally:
            player.base = original

    for minute, watching in ((0, people), (1, people[:2])):
        for index, second in enumerate(range(0, 60, 10)):
            clock.at(minute, second)
            for player in watching:
                await poll(player, index % 2)
                await poll(player, (index + 1) % 2)  # and the same slot again on the other worker
        # the workers flush at different moments, each with a part of the minute
        await audiences[minute % 2].flush()
    for audience in audiences:
        await audience.flush()

    await login(clients[1], Account(prof_row.id, "prof", "prof-password-1", "lecturer"))
    resp = await clients[1].get(f"/api/v1/events/{event['id']}/audience")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    live = [m for m in body["minutes"] if m["viewers"]]
    assert [m["viewers"] for m in live] == [3, 2]  # summing the workers' rows would say [6, 4]
    assert [m["new_viewers"] for m in live] == [3, 0]
    assert body["viewers"] == {"total": 3, "logged_in": 1, "anonymous": 2}
    assert body["watch_seconds"]["total"] == 300.0  # 120 + 120 + 60: each slot counted once across workers
