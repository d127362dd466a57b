"""Fixtures for audience tests: the real app and players with their own cookies (tests/audience/watching.py: the
clock the test moves, an event with live playlists on disk; nothing waits on the wall clock)."""

from __future__ import annotations

from typing import AsyncIterator, Callable

import aiohttp
import pytest

from live_server.settings import Settings
from tests.audience.watching import Player


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_url: str) -> Settings:
    return make_settings(database_url=migrated_url, audience_flush_seconds=300, chat_batch_ms=20)


@pytest.fixture
async def players() -> AsyncIterator[Callable[[str, str], Player]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(base: str, slug: str) -> Player:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
        sessions.append(http)
        return Player(http, base.rstrip("/"), slug)

    yield make
    for http in sessions:
        await http.close()
