"""The platforms' public keys (their JWKS URL), fetched with a deadline and cached.

A launch names its key by ``kid``; a kid we have not seen makes one early refetch (the platform rotated),
at most once per ``min_refetch`` per URL, so a stream of forged kids cannot make us hammer the platform.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

log = logging.getLogger(__name__)
MAX_JWKS_BYTES = 256 * 1024


class KeysUnavailable(Exception):
    """The platform's JWKS could not be had in time, or was not a JWKS."""


@dataclass
class _Cached:
    jwks: dict[str, Any]
    fetched: float


class PlatformKeys:
    """JWKS by URL: cached ``ttl`` seconds, refetched early (rate-limited) for an unknown kid."""

    def __init__(self, timeout_seconds: float, ttl_seconds: float, min_refetch_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout_seconds
        self.ttl = ttl_seconds
        self.min_refetch = min_refetch_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._client: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.fetches = 0

    async def get(self, url: str, kid: str | None = None) -> dict[str, Any]:
        now = self._clock()
        cached = self._cache.get(url)
        if cached is not None:
            fresh = now - cached.fetched < self.ttl
            known = kid is None or any(isinstance(k, dict) and k.get("kid") == kid for k in cached.jwks.get("keys", []))
            if fresh and (known or now - cached.fetched < self.min_refetch):
                return cached.jwks
        pending = self._inflight.get(url)
        if pending is None:  # concurrent launches share one fetch
            pending = asyncio.ensure_future(self._fetch(url))
            self._inflight[url] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(url, None))
        return await asyncio.shield(pending)

    async def _fetch(self, url: str) -> dict[str, Any]:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.fetches += 1
        try:
            async with self._client.get(url, headers={"Accept": "application/json"}, allow_redirects=False) as response:
                if response.status != 200:
                    raise KeysUnavailable(f"{url} answered {response.status}")
                body = await response.content.read(MAX_JWKS_BYTES + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise KeysUnavailable(f"{url}: {exc.__class__.__name__} {exc}") from None
        if len(body) > MAX_JWKS_BYTES:
            raise KeysUnavailable(f"{url}: JWKS larger than {MAX_JWKS_BYTES} bytes")
        try:
            jwks = json.loads(body)
        except ValueError:
            raise KeysUnavailable(f"{url}: not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise KeysUnavailable(f"{url}: not a JWKS")
        self._cache[url] = _Cached(jwks, self._clock())
        return jwks

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
