"""Behind a reverse proxy the client address comes from X-Forwarded-For — only from trusted proxies."""

from __future__ import annotations

from typing import Any, Callable

from live_server.app import create_app
from live_server.settings import Settings
from tests.support import Account


async def _fail_logins(client: Any, forwarded_for: str, count: int) -> None:
    for i in range(count):
        resp = await client.post("/api/v1/auth/login", json={"username": f"nobody{i}", "password": "wrong-pass"},
                                 headers={"X-Forwarded-For": forwarded_for})
        assert resp.status == 401


async def _login_status(client: Any, user: Account, forwarded_for: str) -> int:
    resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password},
                             headers={"X-Forwarded-For": forwarded_for})
    client.session.cookie_jar.clear()  # each attempt is a fresh browser
    return int(resp.status)


async def test_login_limits_follow_the_real_client_behind_a_trusted_proxy(
        aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_url: str,
        make_user: Callable[..., Account]) -> None:
    # A per-address ceiling of 5 (100 by default) shows which address the limits see.
    client = await aiohttp_client(create_app(make_settings(database_url=migrated_url, trusted_proxies=["127.0.0.1"],
                                                           login_address_attempts_per_window=5)))
    await _fail_logins(client, "198.51.100.7", 5)
    # One student guessing does not lock out the whole campus behind nginx...
    assert await _login_status(client, make_user("viewer"), "198.51.100.8") == 200
    # ...but that student is limited.
    assert await _login_status(client, make_user("viewer"), "198.51.100.7") == 429
    # A client behind another proxy hop: the rightmost untrusted address counts.
    assert await _login_status(client, make_user("viewer"), "198.51.100.7, 127.0.0.1") == 429


async def test_forwarded_headers_from_untrusted_peers_are_ignored(
        aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_url: str,
        make_user: Callable[..., Account]) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url=migrated_url, login_address_attempts_per_window=5)))
    await _fail_logins(client, "198.51.100.7", 5)
    # Forging X-Forwarded-For does not give an attacker a fresh address.
    assert await _login_status(client, make_user("viewer"), "198.51.100.99") == 429
