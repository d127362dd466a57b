"""Issue 16: a logged-in viewer's playlist and segment polls cost no database query.

The real app on SQLite and PostgreSQL; statements are observed on its own engine
(``before_cursor_execute``). Media handlers resolve the viewer's session only when the access rule
needs a person, from a cache re-checked in one query per ``media_identity_ttl_seconds``; logout,
deactivation and a role change act on the very next media request.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import delete
from sqlalchemy import event as sa_event

from live_server import events as ev
from live_server.db import Database
from live_server.db import DB
from live_server.layout import live_run_folder
from live_server.models import LoginSession, User, Visibility, utcnow
from live_server.session_people import SESSION_PEOPLE
from live_server.settings import Settings
from tests.support import Account, login

TTL = 0.3
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg_000000.ts\n"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_url: str) -> Settings:
    # Access facts of events cached for a minute: the statements left are the viewers' identities. No
    # transcription worker: its poll for queued jobs (every transcription_poll_seconds) is a statement
    # on the same engine that no viewer caused.
    return make_settings(database_url=migrated_url, media_identity_ttl_seconds=TTL, media_directory_ttl_seconds=60,
                         transcription_workers=0)


def _live_event(db: Database, media_dir: Path, owner_id: int, visibility: str, password: str | None = None) -> str:
    """An event marked live in the catalog with a playlist and a segment in its live folder (no encoder needed:
    what is measured is the access check in front of the files)."""
    def work(session: Any) -> tuple[int, str, Any]:
        owner = session.get(User, owner_id)
        event = ev.create_event(session, owner, ev.EventCreate(title=f"{visibility} lecture", visibility=Visibility(visibility),
                                                               password=password))
        event.started_at = utcnow()
        return event.id, event.slug, event.started_at

    event_id, slug, started_at = db.transaction(work)
    folder = live_run_folder(media_dir, event_id, started_at) / "source"
    folder.mkdir(parents=True)
    (folder / "live.m3u8").write_text(PLAYLIST)
    (folder / "seg_000000.ts").write_bytes(b"\x47" * 188 * 20)
    return slug


class Statements:
    """Every SQL statement the app's engine sends, as it sends it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        self.seen.append(statement)

    def reset(self) -> None:
        self.seen.clear()


@pytest.fixture
def statements(client: Any) -> Iterator[Statements]:
    engine = client.server.app[DB].engine
    seen = Statements()
    sa_event.listen(engine, "before_cursor_execute", seen)
    yield seen
    sa_event.remove(engine, "before_cursor_execute", seen)


async def _status(client: Any, path: str, cookies: dict[str, str] | None = None) -> int:
    resp = await client.get(path, cookies=cookies)
    await resp.read()
    return int(resp.status)


async def test_polls_of_a_logged_in_viewer_cost_at_most_one_query_per_ttl(
        client: Any, settings: Settings, make_user: Callable[..., Account], statements: Statements) -> None:
    db = client.server.app[DB]
    owner = make_user("lecturer")
    public = _live_event(db, settings.media_dir, owner.id, "public")
    private = _live_event(db, settings.media_dir, owner.id, "authenticated")
    await login(client, make_user("viewer"))
    for slug in (public, private):  # first sight: the event's location and the viewer's session
        assert await _status(client, f"/live/{slug}/source/live.m3u8") == 200

    # Past the TTL, polls of the public event never touch the session: no statement at all.
    await asyncio.sleep(TTL * 1.2)
    statements.reset()
    for _ in range(20):
        assert await _status(client, f"/live/{public}/source/live.m3u8") == 200
        assert await _status(client, f"/live/{public}/source/seg_000000.ts") == 200
    assert statements.seen == []

    # Polls of both for ~4 TTLs: one statement per TTL at most (the eager middleware sent one per request).
    statements.reset()
    started, requests = time.monotonic(), 0
    # ~4 TTLs and at least 40 requests (a busy machine serves fewer per second), at most 12 TTLs
    while (time.monotonic() - started < TTL * 4 or requests < 40) and time.monotonic() - started < TTL * 12:
        for slug in (public, private):
            for name in ("live.m3u8", "seg_000000.ts"):
                assert await _status(client, f"/live/{slug}/source/{name}") == 200
                requests += 1
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    assert requests >= 40
    assert 1 <= len(statements.seen) <= int(elapsed / TTL) + 1, statements.seen
    assert all("login_sessions" in s for s in statements.seen), statements.seen

    # Logged out by another process (its row deleted there, no invalidation here): refused within the TTL.
    db.transaction(lambda s: s.execute(delete(LoginSession)))
    await asyncio.sleep(TTL * 1.2)
    assert await _status(client, f"/live/{private}/source/live.m3u8") == 403
    assert await _status(client, f"/live/{public}/source/live.m3u8") == 200

    # An anonymous player of the authenticated event is still refused.
    client.session.cookie_jar.clear()
    assert await _status(client, f"/live/{private}/source/live.m3u8") == 403


async def test_logout_deactivation_and_role_changes_reach_the_next_media_request(
        client: Any, aiohttp_client: Any, settings: Settings, make_user: Callable[..., Account]) -> None:
    """The cache would trust a session for a TTL (here 30 s): these changes act before it ends."""
    app = client.server.app
    app[SESSION_PEOPLE].ttl = 30.0
    db = app[DB]
    owner = make_user("lecturer")
    private = _live_event(db, settings.media_dir, owner.id, "authenticated")
    locked = _live_event(db, settings.media_dir, owner.id, "password", password="a-password")
    media = f"/live/{private}/source/live.m3u8"
    admin = await aiohttp_client(client.server)
    admin_csrf = await login(admin, make_user("admin"))

    # logout: the old cookie, replayed, is refused at once
    viewer = await aiohttp_client(client.server)
    csrf = await login(viewer, make_user("viewer"))
    kept = {c.key: c.value for c in viewer.session.cookie_jar}
    assert await _status(viewer, media) == 200 and await _status(viewer, media) == 200
    assert (await viewer.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})).status == 200
    assert await _status(viewer, media, cookies=kept) == 403

    # deactivation: refused at once
    other = await aiohttp_client(client.server)
    other_account = make_user("viewer")
    await login(other, other_account)
    assert await _status(other, media) == 200
    done = await admin.post(f"/admin/users/{other_account.id}/active", data={"active": "no", "csrf_token": admin_csrf},
                            allow_redirects=False)
    assert done.status == 303
    assert await _status(other, media) == 403

    # a role change: made admin, the password event opens without its password; demoted, it closes again
    third = await aiohttp_client(client.server)
    third_account = make_user("viewer")
    await login(third, third_account)
    locked_media = f"/live/{locked}/source/live.m3u8"
    assert await _status(third, media) == 200 and await _status(third, locked_media) == 403
    for role, status in (("admin", 200), ("viewer", 403)):
        done = await admin.post(f"/admin/users/{third_account.id}/role", data={"role": role, "csrf_token": admin_csrf},
                                allow_redirects=False)
        assert done.status == 303
        assert await _status(third, locked_media) == status, role
