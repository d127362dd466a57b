"""The thin asyncio shell of the BigBlueButton API: sends the URLs ``formats.bbb`` signs, with a deadline on
every call and a size cap on every answer and download; network trouble becomes ``formats.bbb.BbbUnavailable``.

Signed URLs are credentials (a join URL lets its holder in): they are never logged, only the call's name.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from formats.bbb import MAX_RESPONSE_BYTES, BbbError, BbbMalformed, BbbUnavailable, api_url

from .servers import ServerConfig

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
VIDEO_TYPES = ("video/", "application/octet-stream", "application/mp4")


class DownloadFailed(BbbError):
    """The recording's video file could not be fetched."""


class BbbClient:
    """One HTTP client session for every configured server (opened on first use, closed with the app)."""

    def __init__(self, timeout_seconds: float, download_timeout_seconds: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        # A whole video: no total, but no silence longer than the call deadline either.
        self.download_timeout = aiohttp.ClientTimeout(total=download_timeout_seconds, sock_read=timeout_seconds,
                                                      sock_connect=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "live-server (BigBlueButton deposit)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, server: ServerConfig, call: str, params: Mapping[str, str]) -> bytes:
        """The raw XML answer of one API call (``formats.bbb.parse_*`` reads it)."""
        url = api_url(server.api_url, call, params, server.secret, server.algorithm)
        try:
            # encoded=True: sent byte for byte as signed (yarl would otherwise requote it: ``%3A`` becomes ``:``,
            # and BBB, which hashes the query string it receives, answers checksumError)
            async with self._client().get(URL(url, encoded=True), timeout=self.timeout, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise BbbUnavailable(f"{server.name} answered HTTP {resp.status} to {call}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise BbbMalformed(f"{server.name}'s answer to {call} is larger than "
                                           f"{MAX_RESPONSE_BYTES // 2**20} MiB")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("bbb %s: %s failed: %s", server.name, call, exc.__class__.__name__)
            raise BbbUnavailable(f"{server.name} cannot be reached ({exc.__class__.__name__})") from None
        return bytes(body)

    async def download(self, server: ServerConfig, candidates: list[str], target: Path, limit: int) -> str:
        """Fetch the first candidate URL that answers with a video into ``target``; returns its URL.

        Only from the server's own host (the URLs come from its answers; nothing else is fetched for them)."""
        api_host = urlsplit(server.api_url).hostname
        loop = asyncio.get_running_loop()
        last = "no video file"
        for url in candidates:
            if urlsplit(url).hostname != api_host:
                last = "the video is on another host than the BigBlueButton API"
                continue
            try:
                async with self._client().get(URL(url, encoded=True), timeout=self.download_timeout,
                                              allow_redirects=False) as resp:
                    kind = resp.headers.get("Content-Type", "")
                    if resp.status != 200 or not kind.startswith(VIDEO_TYPES):
                        last = f"HTTP {resp.status} {kind.split(';')[0]}".strip()
                        continue
                    if resp.content_length is not None and resp.content_length > limit:
                        raise DownloadFailed(f"the video is larger than the {limit // 2**20} MiB import limit")
                    size = 0
                    with open(target, "wb") as fh:
                        while chunk := await resp.content.read(CHUNK):
                            size += len(chunk)
                            if size > limit:
                                raise DownloadFailed(f"the video is larger than the {limit // 2**20} MiB import limit")
                            await loop.run_in_executor(None, fh.write, chunk)
                    return url
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise DownloadFailed(f"the video could not be downloaded from {server.name} "
                                     f"({exc.__class__.__name__})") from None
        raise DownloadFailed(f"{server.name} has no video file for this recording ({last})")
