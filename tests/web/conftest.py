"""Fixtures for the web interface: the real app on SQLite, accounts, and a client that submits forms as a browser does."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from live_server.db import Database
from live_server.settings import Settings
from tests.support import stream_key_cipher
from tests.web.website import Site


@pytest.fixture
def web_settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    url = migrated_sqlite("web.db")
    return make_settings(database_url=url)


@pytest.fixture
async def site(aiohttp_client: Any, web_settings: Settings) -> Any:
    from live_server.app import create_app

    client = await aiohttp_client(create_app(web_settings))
    database = Database(web_settings.effective_database_url, stream_key_cipher=stream_key_cipher(web_settings))
    try:
        yield Site(client, database, web_settings)
    finally:
        database.close()
