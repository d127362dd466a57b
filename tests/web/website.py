"""The web interface as a person uses it: the running app (aiohttp test client), its catalog, and helpers to act as
one person at a time, submitting forms as a browser does (the ``site`` fixture of tests/web/conftest.py makes one)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from live_server import accounts
from live_server import events as ev
from live_server.db import Database
from live_server.models import User
from live_server.settings import Settings
from tests.support import Account

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Site:
    """A running app (aiohttp test client), its catalog, and helpers to act as one person at a time."""

    client: Any
    db: Database
    settings: Settings

    def account(self, role: str = "lecturer", language: str | None = None) -> Account:
        username, password = f"{role}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)

        def work(session: Any) -> User:
            user = accounts.create_user(session, username, password, role, display_name=f"{role.title()} {username[-6:]}")
            user.language = language
            return user

        user = self.db.transaction(work)
        return Account(user.id, username, password, role)

    async def log_in(self, account: Account) -> None:
        """Log in through the login form, as a person would (the anonymous CSRF token comes from the page)."""
        self.client.session.cookie_jar.clear()
        token = await self.csrf("/login")
        resp = await self.client.post("/login", data={"username": account.username, "password": account.password,
                                                      "csrf_token": token, "next": "/"}, allow_redirects=False)
        assert resp.status == 303, await resp.text()

    def log_out(self) -> None:
        self.client.session.cookie_jar.clear()

    async def csrf(self, path: str) -> str:
        resp = await self.client.get(path)
        assert resp.status == 200, (path, resp.status)
        found = CSRF_FIELD.search(await resp.text())
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    async def submit(self, page: str, action: str, data: dict[str, Any], **kw: Any) -> Any:
        """Open ``page``, take its CSRF token and post ``data`` to ``action`` as a form (redirects not followed)."""
        token = await self.csrf(page)
        return await self.client.post(action, data={**data, "csrf_token": token}, allow_redirects=False, **kw)

    def event(self, owner: Account, **fields: Any) -> str:
        def work(session: Any) -> str:
            user = session.get(User, owner.id)
            return ev.create_event(session, user, ev.EventCreate(**{"title": "A lecture", **fields})).slug

        return self.db.transaction(work)

    def change(self, slug: str, **columns: Any) -> None:
        def work(session: Any) -> None:
            event = ev.get_event(session, slug)
            for name, value in columns.items():
                setattr(event, name, value)

        self.db.transaction(work)
