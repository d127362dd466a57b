"""bbb/client.py against misbehaving HTTP servers: a deadline on every call, a cap on every answer and download,
no redirects followed, downloads only from the API's host; each as a BbbError with words, never a traceback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp import web

from bbb.client import BbbClient, DownloadFailed
from bbb.servers import ServerConfig
from formats.bbb import MAX_RESPONSE_BYTES, BbbMalformed, BbbUnavailable


@pytest.fixture
async def misbehaving() -> AsyncIterator[str]:
    released = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(released.wait(), 30)  # longer than any deadline of the test
        return web.Response(text="<response/>")

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(MAX_RESPONSE_BYTES // 2**20 + 2):
            await resp.write(b"<" * 2**20)
        return resp

    app = web.Application()
    app.router.add_get("/slow/api/getRecordings", slow)
    app.router.add_get("/huge/api/getRecordings", huge)
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://example.invalid/")

    async def video(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 300_000, content_type="video/mp4")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    app.router.add_get("/broken/api/getRecordings", broken)
    app.router.add_get("/moved/api/getRecordings", moved)
    app.router.add_get("/video.mp4", video)
    app.router.add_get("/page.html", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        released.set()
        await runner.cleanup()


def _server(base: str, path: str) -> ServerConfig:
    return ServerConfig(1, "campus", f"{base}/{path}/api", "s3cret-s3cret", "sha256")


async def test_deadlines_caps_and_refusals(misbehaving: str, tmp_path: Path) -> None:
    client = BbbClient(timeout_seconds=0.3, download_timeout_seconds=5)
    try:
        started = time.monotonic()
        with pytest.raises(BbbUnavailable, match=r"campus cannot be reached \(.*Timeout.*\)"):
            await client.call(_server(misbehaving, "slow"), "getRecordings", {})
        assert time.monotonic() - started < 2  # the deadline, not the server's 30 s
        with pytest.raises(BbbMalformed, match="campus's answer to getRecordings is larger than 8 MiB"):
            await client.call(_server(misbehaving, "huge"), "getRecordings", {})
        with pytest.raises(BbbUnavailable, match="campus answered HTTP 500 to getRecordings"):
            await client.call(_server(misbehaving, "broken"), "getRecordings", {})
        with pytest.raises(BbbUnavailable, match="campus answered HTTP 302"):  # never followed
            await client.call(_server(misbehaving, "moved"), "getRecordings", {})

        target = tmp_path / "download"
        server = _server(misbehaving, "any")
        url = await client.download(server, [f"{misbehaving}/missing.m4v", f"{misbehaving}/page.html",
                                             f"{misbehaving}/video.mp4"], target, 1_000_000)
        assert url.endswith("/video.mp4") and target.stat().st_size == 300_000  # 404 and an HTML page skipped
        with pytest.raises(DownloadFailed, match="larger than the 0 MiB import limit"):
            await client.download(server, [f"{misbehaving}/video.mp4"], target, 100_000)
        with pytest.raises(DownloadFailed, match="another host than the BigBlueButton API"):
            await client.download(server, ["http://localhost:1/video.mp4"], target, 1_000_000)
        with pytest.raises(DownloadFailed, match=r"campus has no video file for this recording \(HTTP 200 text/html\)"):
            await client.download(server, [f"{misbehaving}/page.html"], target, 1_000_000)
    finally:
        await client.close()
