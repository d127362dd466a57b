"""The catalog lookup behind every live media request: cached, and single-flight under a crowd."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from live_server import events as ev
from live_server.db import Database
from live_server.models import User, utcnow
from web.media import CatalogMediaDirectory


def _live_event(db: Database, owner_id: int) -> str:
    def work(session: Any) -> str:
        owner = session.get(User, owner_id)
        event = ev.create_event(session, owner, ev.EventCreate(title="Crowded lecture"))
        event.started_at = utcnow()
        return event.slug

    return db.transaction(work)


async def test_a_crowd_of_players_costs_one_lookup_per_expiry(db: Database, make_user: Callable[..., Any],
                                                               tmp_path: Path) -> None:
    slug = _live_event(db, make_user().id)
    directory = CatalogMediaDirectory(db, tmp_path, ttl_seconds=0.3)
    first = await asyncio.gather(*(directory.locate(slug) for _ in range(500)))
    assert directory.lookups == 1
    assert len({loc.folder for loc in first if loc is not None}) == 1 and first[0] is not None
    assert not first[0].private

    await asyncio.sleep(0.35)  # expired: the crowd is served the known location while one query refreshes it
    again = await asyncio.gather(*(directory.locate(slug) for _ in range(500)))
    assert all(loc == first[0] for loc in again)
    await asyncio.sleep(0.1)
    assert directory.lookups == 2

    missing = await asyncio.gather(*(directory.locate("no-such-event") for _ in range(100)))
    assert missing == [None] * 100 and directory.lookups == 3


async def test_big_segments_are_sent_whole_and_paced(db: Database, make_user: Callable[..., Any], tmp_path: Path,
                                                     aiohttp_client: Any) -> None:
    """A segment bigger than a write chunk arrives byte for byte, with its length and cache headers."""
    import os

    from aiohttp import web

    from live_server.layout import live_run_folder
    from live_server.models import Event
    from live_server.passes import MediaPasses
    from web.media import STREAM_CHUNK, LiveMediaHandler, MediaCache, ViewerCounter

    slug = _live_event(db, make_user().id)
    event = db.transaction(lambda s: s.query(Event).filter_by(slug=slug).one())
    folder = live_run_folder(tmp_path, event.id, event.started_at) / "source"
    folder.mkdir(parents=True)
    payload = os.urandom(STREAM_CHUNK * 9 + 123)
    (folder / "seg_000000.ts").write_bytes(payload)
    handler = LiveMediaHandler(CatalogMediaDirectory(db, tmp_path), MediaCache(), ViewerCounter(), MediaPasses("k" * 32))

    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    app = web.Application()
    app.router.add_get("/live/{slug}/{tail:.+}", route)
    client = await aiohttp_client(app)
    for _ in range(2):  # from disk, then from memory
        resp = await client.get(f"/live/{slug}/source/seg_000000.ts")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(payload))
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert await resp.read() == payload


async def test_a_player_leaving_mid_segment_ends_the_paced_write_cleanly(db: Database, make_user: Callable[..., Any],
                                                                         tmp_path: Path) -> None:
    """A player that closes its connection while a big segment is being paced out (its own timeout, a seek) ends
    that response quietly: no exception reaches the request pipeline (which would log a traceback per player)."""
    import os

    from aiohttp import web

    from live_server.layout import live_run_folder
    from live_server.models import Event
    from live_server.passes import MediaPasses
    from web.media import STREAM_CHUNK, LiveMediaHandler, MediaCache, ViewerCounter

    slug = _live_event(db, make_user().id)
    event = db.transaction(lambda s: s.query(Event).filter_by(slug=slug).one())
    folder = live_run_folder(tmp_path, event.id, event.started_at) / "source"
    folder.mkdir(parents=True)
    (folder / "seg_000000.ts").write_bytes(os.urandom(STREAM_CHUNK * 256))  # 16 MiB: more than socket buffers hold
    handler = LiveMediaHandler(CatalogMediaDirectory(db, tmp_path), MediaCache(), ViewerCounter(), MediaPasses("k" * 32))
    outcomes: list[str] = []

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except BaseException as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("returned")
        return response

    app = web.Application()
    app.router.add_get("/live/{slug}/{tail:.+}", route)
    runner = web.AppRunner(app)  # as `live-server run` serves: handlers are not cancelled when a client leaves
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /live/{slug}/source/seg_000000.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.read(4096)
        assert head.startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # gone, with most of the segment unsent
        deadline = asyncio.get_running_loop().time() + 10
        while not outcomes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert outcomes == ["returned"]
    finally:
        await runner.cleanup()


async def test_nginx_decisions_say_where_the_run_is_and_who_may_watch(db: Database, make_user: Callable[..., Any],
                                                                     tmp_path: Path, aiohttp_client: Any) -> None:
    """GET /live-decision/{slug}/{tail}, nginx's auth_request: 204 with the run's folder and how long nginx may keep
    the answer, the viewer counted; 403 without the pass, kept as long; a pass past half its life renewed (nginx
    stores no answer with Set-Cookie); answered only when nginx serves the media folder (accel_redirect)."""
    import os
    import time

    from aiohttp import web

    from live_server.access import event_target
    from live_server.layout import live_run_folder
    from live_server.models import Event
    from live_server.passes import MediaPasses
    from web.media import LiveMediaHandler, MediaCache, ViewerCounter

    owner = make_user().id
    public = _live_event(db, owner)
    closed = db.transaction(lambda s: ev.create_event(s, s.get(User, owner), ev.EventCreate(
        title="Seminar", visibility="password", password="letmein-123")).slug)
    db.transaction(lambda s: setattr(s.query(Event).filter_by(slug=closed).one(), "started_at", utcnow()))
    events = {e.slug: e for e in db.transaction(lambda s: s.query(Event).all())}
    passes, viewers = MediaPasses("k" * 32), ViewerCounter()

    async def client_for(accel: str) -> Any:
        handler = LiveMediaHandler(CatalogMediaDirectory(db, tmp_path), MediaCache(), viewers, passes, accel, tmp_path,
                                   decision_seconds=4)

        async def route(request: web.Request) -> web.StreamResponse:
            return await handler.decide(request)

        app = web.Application()
        app.router.add_get("/live-decision/{slug}/{tail:.+}", route)
        return await aiohttp_client(app)

    direct = await client_for("")
    assert (await direct.get(f"/live-decision/{public}/source/part_000001_0.m4s")).status == 404

    client = await client_for("/_media/")
    resp = await client.get(f"/live-decision/{public}/source/part_000001_0.m4s", headers={"Cookie": "live_viewer=" + "a" * 24})
    event = events[public]
    assert resp.status == 204 and resp.headers["X-Accel-Expires"] == "4"
    assert resp.headers["X-Live-Folder"] == os.path.relpath(live_run_folder(tmp_path, event.id, event.started_at), tmp_path)
    assert resp.headers["X-Live-Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["X-Live-Cors"] == "*" and "Set-Cookie" not in resp.headers
    assert viewers.count(event.id) == 1
    for url in (f"/live-decision/no-such-event/source/part_000001_0.m4s", f"/live-decision/{public}/source/.x.m4s",
                f"/live-decision/{public}/source/notes.txt"):
        assert (await client.get(url)).status == 401, url  # not decided here: nginx asks the media route

    target = event_target(events[closed])
    url = f"/live-decision/{closed}/source/live.m3u8"
    refused = await client.get(url)
    assert refused.status == 403 and refused.headers["X-Accel-Expires"] == "4"
    cookie = passes.cookie_name(target)
    fresh = await client.get(url, headers={"Cookie": f"{cookie}={passes.issue(target)}"})
    assert fresh.status == 204 and fresh.headers["X-Live-Cache-Control"].startswith("private")
    assert "X-Live-Cors" not in fresh.headers and "Set-Cookie" not in fresh.headers
    ageing = passes.issue(target, now=time.time() - passes.lifetime * 0.75)
    renewed = await client.get(url, headers={"Cookie": f"{cookie}={ageing}"})
    assert renewed.status == 204 and renewed.cookies[cookie].value != ageing
    assert passes.check(target, renewed.cookies[cookie].value)
