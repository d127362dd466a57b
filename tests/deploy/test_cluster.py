"""A small production layout on loopback: nginx → two web workers, one ingest node, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tests.media import push_rtmp
from tests.nginx import Nginx, run_nginx
from tests.processes import ServerProcess, base_env, cli, create_event, free_port


@dataclass
class Cluster:
    ingest: ServerProcess
    webs: list[ServerProcess]
    nginx: Nginx
    env: dict[str, str]
    rtmp_port: int


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str, redis_url: str) -> AsyncIterator[Cluster]:
    media = tmp_path / "media"
    common = dict(database_url=postgres_url, redis_url=redis_url, media_dir=media, segment_seconds=1,
                  grace_period_seconds=3, trusted_proxies="127.0.0.1", media_accel_redirect="/_media/",
                  chat_redis_channel=f"live-test-{secrets.token_hex(4)}")
    rtmp_port = free_port()
    ingest_env = base_env(tmp_path / "ingest", role="ingest", rtmp_host="127.0.0.1", rtmp_port=rtmp_port,
                          node_name="ingest-a", **common)
    ingest_env["LIVE_MEDIA_DIR"] = str(media)
    cli(ingest_env, "db", "upgrade")
    cli(ingest_env, "users", "create", "--username", "prof", "--role", "lecturer", "--password", "prof-password-1")
    ingest = ServerProcess(ingest_env, free_port(), tmp_path / "ingest.log")
    webs = []
    for i in (1, 2):
        env = base_env(tmp_path / f"web{i}", role="web", rtmp_enabled="false", node_name=f"web-{i}", **common)
        env["LIVE_MEDIA_DIR"] = str(media)
        webs.append(ServerProcess(env, free_port(), tmp_path / f"web{i}.log"))
    try:
        await asyncio.gather(ingest.start(), *(w.start() for w in webs))
        nginx_gen = run_nginx(tmp_path / "nginx", [f"127.0.0.1:{w.port}" for w in webs], media)
        nginx = next(nginx_gen)
        try:
            yield Cluster(ingest, webs, nginx, ingest_env, rtmp_port)
        finally:
            nginx_gen.close()
    finally:
        for process in (ingest, *webs):
            process.stop()


async def _login(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(f"{base}/api/v1/auth/login", json={"username": "prof", "password": "prof-password-1"}) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_stream_on_the_ingest_node_is_watched_through_nginx(cluster: Cluster) -> None:
    public = create_event(cluster.env, "prof", "Amphi A")
    private = create_event(cluster.env, "prof", "Closed seminar", "--visibility", "authenticated")
    pushers = [await push_rtmp(f"rtmp://127.0.0.1:{cluster.rtmp_port}/live/{e['stream']['stream_key']}", seconds=8)
               for e in (public, private)]
    base = cluster.nginx.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
        async def is_live() -> bool:
            async with viewer.get(f"{base}/api/v1/events/{public['slug']}") as resp:
                return (await resp.json())["state"] == "live"

        for _ in range(150):
            if await is_live():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the event never went live as seen through nginx")
        async with viewer.get(f"{base}/live/{public['slug']}/master.m3u8") as resp:
            assert resp.status == 200
            variant = re.search(r"^(\S+\.m3u8)$", await resp.text(), re.M).group(1)  # type: ignore[union-attr]
        async with viewer.get(f"{base}/live/{public['slug']}/{variant}") as resp:
            segment = re.search(r"^(\S+\.ts)$", await resp.text(), re.M).group(1)  # type: ignore[union-attr]
        rendition = variant.rsplit("/", 1)[0]
        async with viewer.get(f"{base}/live/{public['slug']}/{rendition}/{segment}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp2t"
            assert (await resp.read())[:1] == b"\x47"

        # A private (sign-in only) event: refused anonymously, served once signed in.
        async with viewer.get(f"{base}/live/{private['slug']}/master.m3u8") as resp:
            assert resp.status == 403
        await _login(viewer, base)
        async with viewer.get(f"{base}/events/{private['slug']}") as resp:
            assert resp.status == 200  # the page hands out the media pass
        async with viewer.get(f"{base}/live/{private['slug']}/master.m3u8") as resp:
            assert resp.status == 200

        # The web workers know where the stream is and how it is doing, from the ingest node's board.
        # (announced every 2 s, so allow a few periods)
        for web in cluster.webs:
            body: dict[str, Any] = {}
            for _ in range(60):
                async with viewer.get(f"{web.url}/api/v1/events/{public['slug']}") as resp:  # cookies ignore ports
                    body = await resp.json()
                if body["stream"].get("ingest_node"):
                    break
                await asyncio.sleep(0.1)
            assert body["stream"]["ingest_node"] == "ingest-a"
            assert body["stream"]["health"]["publishing"] is True
    for pusher in pushers:
        assert await asyncio.wait_for(pusher.wait(), 30) == 0
