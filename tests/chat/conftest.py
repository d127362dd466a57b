"""Fixtures for chat tests: the real app on a loopback port, and real python-socketio clients."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable

import pytest

from live_server import accounts
from live_server.app import create_app
from live_server.db import DB
from live_server.settings import Settings
from tests.chat.clients import ChatSite
from tests.support import Account, login


@pytest.fixture
async def site(aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str],
               request: pytest.FixtureRequest) -> AsyncIterator[ChatSite]:
    """``@pytest.mark.chat_settings(name=value)`` overrides settings for one test."""
    url = migrated_sqlite("live.db")
    marker = request.node.get_closest_marker("chat_settings")
    overrides = dict(marker.kwargs) if marker else {}
    settings = make_settings(database_url=url, chat_batch_ms=20, **overrides)
    app = create_app(settings)
    client = await aiohttp_client(app)
    user = app[DB].transaction(lambda s: accounts.create_user(s, "prof", "prof-password", "lecturer"))
    lecturer = Account(user.id, "prof", "prof-password", "lecturer")
    site = ChatSite(client, app, settings, lecturer, await login(client, lecturer))
    yield site
    await site.close()
