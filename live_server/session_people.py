"""Who is behind a media request's session cookie, without a database query per poll.

A logged-in student's player asks for a playlist and a segment every couple of seconds; resolving
the session on each of them (as the identity middleware does for pages and the API) cost one query
per poll. Media handlers ask here instead, and only when the access rule needs a person (a public
event's media never does). Sessions seen are kept as ``Person`` facts and re-checked together in
one query once per ``ttl`` (a lecture hall of sessions: one query per ``ttl``, not one per poll).

Revocation stays immediate in this process: logout, deactivation and role changes call ``forget_*``
after their transaction commits, and a lookup that was in flight meanwhile is not kept. Another
process of a cluster sees the change within ``ttl`` (like the media directories' access facts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from live_server import accounts, security
from live_server.access import Person, person_of
from live_server.models import Role, utcnow

if TYPE_CHECKING:
    from live_server.db import Database

log = logging.getLogger(__name__)

SESSION_COOKIE = "live_session"  # the login session cookie (``live_server.http_request.set_session_cookie``)


@dataclass
class _Entry:
    person: Person | None  # None: no such session, or its account is inactive
    until: float  # clock time the session expires (inf for unknown tokens)
    used: float


class SessionPeople:
    """Session token -> ``Person`` for media requests, re-checked in one batch query per ``ttl``."""

    def __init__(self, db: "Database", ttl_seconds: float = 2.0, idle_seconds: float = 60.0,
                 max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.idle = max(idle_seconds, ttl_seconds)  # sessions not seen for this long are dropped at the next check
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}  # by token hash: the cookie itself is not kept
        self._checked = clock()
        self._refresh: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[Person | None]] = {}
        self._epoch = 0  # bumped by every forget: a lookup that overlapped one is not cached
        self.queries = 0

    async def person(self, request: web.Request) -> Person | None:
        """The person behind the request's session cookie (or API token: uncached, scripts rarely poll media)."""
        header = request.headers.get("Authorization", "")
        scheme, _, bearer = header.partition(" ")
        bearer = bearer.strip()
        if scheme.lower() == "bearer" and bearer.startswith(accounts.API_TOKEN_PREFIX):
            identity = await self.db.run(lambda s: accounts.resolve_api_token(s, bearer))
            return person_of(identity)
        token = request.cookies.get(SESSION_COOKIE)
        return None if not token else await self.of_session(token)

    async def of_session(self, token: str) -> Person | None:
        key = security.token_hash(token)
        if self._clock() - self._checked >= self.ttl and self._entries:
            await self._recheck()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or self.ttl <= 0:
            return await self._first(key)
        entry.used = now
        return entry.person if now < entry.until else None

    def forget_session(self, token: str) -> None:
        """A logout: the next media request with this cookie is answered from the database (and refused)."""
        self._epoch += 1
        self._entries.pop(security.token_hash(token), None)

    def forget_user(self, user_id: int) -> None:
        """Deactivation or a role change: every cached session of this account is looked up again."""
        self._epoch += 1
        for key in [k for k, e in self._entries.items() if e.person is not None and e.person.user_id == user_id]:
            del self._entries[key]

    async def _first(self, key: str) -> Person | None:
        """A session not cached yet: one query, shared by that player's concurrent requests."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _lookup(self, key: str) -> Person | None:
        epoch = self._epoch
        facts = await self._query([key])
        entry = self._entry(facts.get(key), self._clock())
        if epoch == self._epoch and self.ttl > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = entry
        return entry.person if self._clock() < entry.until else None

    async def _recheck(self) -> None:
        """Every cached session, re-read in one query; concurrent callers wait for the same one."""
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._recheck_all())
            self._refresh.add_done_callback(self._recheck_done)
        await asyncio.shield(self._refresh)

    def _recheck_done(self, done: "asyncio.Future[None]") -> None:
        self._refresh = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("re-checking the login sessions of media requests failed: %r", done.exception())

    async def _recheck_all(self) -> None:
        started, epoch = self._clock(), self._epoch
        keys = [k for k, e in self._entries.items() if started - e.used < self.idle]
        try:
            facts = await self._query(keys)
        except Exception:
            self._entries.clear()  # nothing unchecked is served: each session is looked up again
            raise
        now = self._clock()
        if epoch != self._epoch:
            self._entries.clear()  # a logout or deactivation meanwhile: this answer may predate it
            return
        checked = set(keys)
        added = {k: e for k, e in self._entries.items() if k not in checked}  # first looked up meanwhile: fresher
        used = {k: self._entries[k].used for k in keys if k in self._entries}
        self._entries = {k: self._entry(facts.get(k), now, used.get(k, now)) for k in keys}
        self._entries.update(added)
        self._checked = started

    async def _query(self, keys: list[str]) -> dict[str, accounts.SessionFacts]:
        self.queries += 1
        return await self.db.run(lambda s: accounts.login_session_facts(s, keys))

    def _entry(self, facts: accounts.SessionFacts | None, now: float, used: float | None = None) -> _Entry:
        if facts is None or not facts.active:
            return _Entry(None, float("inf"), now if used is None else used)
        left = (facts.expires_at - utcnow()).total_seconds()
        person = Person(facts.user_id, facts.role == Role.ADMIN, True, facts.session_id, facts.courses, facts.teaching)
        return _Entry(person, now + left, now if used is None else used)


SESSION_PEOPLE = web.AppKey("session_people", SessionPeople)
