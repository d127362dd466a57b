"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from live_server.security import StreamKeyCipher, load_or_create_secret_key
from live_server.settings import Settings


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str


async def login(client: Any, account: Account) -> str:
    """Log a test client in through the API; returns the CSRF token for later writes."""
    resp = await client.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf_token"]


def stream_key_cipher(settings: Settings) -> StreamKeyCipher:
    """What the app seals stream keys with for these settings (a test's own Database must use the same)."""
    return StreamKeyCipher(load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir))
