"""Platforms' keys: fetched once and cached, refetched early for a kid we have not seen (at most once per
``min_refetch``), concurrent launches share one fetch, and a platform that does not answer in time, or
answers something else than a JWKS, is an error we can show (not a hang)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from lti.platform_keys import KeysUnavailable, PlatformKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_refetch_and_deadline(aiohttp_server: Any) -> None:
    served = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}
    hang = asyncio.Event()

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(served)

    async def slow(request: web.Request) -> web.Response:
        await hang.wait()  # never answers: the deadline is the subject
        return web.json_response(served)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>login</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/slow", slow)
    app.router.add_get("/html", html)
    server = await aiohttp_server(app)
    clock = Clock()
    keys = PlatformKeys(timeout_seconds=0.3, ttl_seconds=300, min_refetch_seconds=10, clock=clock)
    try:
        url = str(server.make_url("/jwks"))
        first, second = await asyncio.gather(keys.get(url, "k1"), keys.get(url, "k1"))
        assert first == second == served and keys.fetches == 1  # concurrent launches share one fetch
        assert await keys.get(url, "k1") == served and keys.fetches == 1  # cached
        served["keys"].append({"kty": "RSA", "kid": "k2", "n": "AQAB", "e": "AQAB"})
        assert len((await keys.get(url, "k2"))["keys"]) == 1 and keys.fetches == 1  # unknown kid, but just fetched
        clock.now += 11
        assert len((await keys.get(url, "k2"))["keys"]) == 2 and keys.fetches == 2  # the platform rotated: refetched
        assert await keys.get(url, "k9") and keys.fetches == 2  # a forged kid does not hammer the platform
        clock.now += 301
        await keys.get(url, "k1")
        assert keys.fetches == 3  # the cache expired
        with pytest.raises(KeysUnavailable, match="TimeoutError"):
            await keys.get(str(server.make_url("/slow")))
        with pytest.raises(KeysUnavailable, match="not JSON"):
            await keys.get(str(server.make_url("/html")))
        with pytest.raises(KeysUnavailable, match="404"):
            await keys.get(str(server.make_url("/missing")))
    finally:
        hang.set()
        await keys.close()
