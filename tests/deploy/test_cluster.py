"""A small production layout on loopback: nginx → two web workers, one ingest node, PostgreSQL, Redis.

One test tells both stories on one cluster, in order: a stream on the ingest node watched through nginx, then chat
and live captions across the workers and a worker's stop (last: it stops a worker). Starting the cluster (database,
Redis, nginx and three server processes) cost about as much CPU as either story, so it is started once.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tests.captions.speech import ko_model, ko_speech, push_track, speech_track  # noqa: F401 (fixtures)
from tests.chat.clients import ChatClient
from tests.media import push_rtmp, stop
from tests.nginx import Nginx, run_nginx
from tests.processes import ServerProcess, base_env, cli, create_event, free_port, stop_all
from tests.support import PLAIN_HLS


@dataclass
class Cluster:
    ingest: ServerProcess
    webs: list[ServerProcess]
    nginx: Nginx
    env: dict[str, str]
    rtmp_port: int


@pytest.fixture
async def cluster(tmp_path: Path, migrated_postgres: str, redis_url: str, ko_model: Path) -> AsyncIterator[Cluster]:
    media = tmp_path / "media"
    common = dict(database_url=migrated_postgres, redis_url=redis_url, media_dir=media, segment_seconds=1,
                  grace_period_seconds=3, trusted_proxies="127.0.0.1", media_accel_redirect="/_media/",
                  chat_redis_channel=f"live-test-{secrets.token_hex(4)}")
    rtmp_port = free_port()
    ingest_env = base_env(tmp_path / "ingest", role="ingest", rtmp_host="127.0.0.1", rtmp_port=rtmp_port,
                          node_name="ingest-a", vosk_models=f"ko={ko_model}", **common)
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
        stop_all((ingest, *webs))


async def _login(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(f"{base}/api/v1/auth/login", json={"username": "prof", "password": "prof-password-1"}) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.xdist_group("realtime-speech")  # live captions in real time: one at a time (tests/conftest.py)
async def test_a_stream_is_watched_through_nginx_then_chat_and_captions_cross_workers_and_survive_a_worker_stop(
        cluster: Cluster, ko_speech: Any, tmp_path: Path) -> None:
    await _stream_on_the_ingest_node_is_watched_through_nginx(cluster)
    await _chat_and_captions_cross_workers_and_survive_a_worker_stop(cluster, ko_speech, tmp_path)


async def _stream_on_the_ingest_node_is_watched_through_nginx(cluster: Cluster) -> None:
    public = create_event(cluster.env, "prof", "Amphi A")
    private = create_event(cluster.env, "prof", "Closed seminar", "--visibility", "authenticated")
    # Both publish until every check below is done (at most a minute): stopped then, not waited for.
    pushers = [await push_rtmp(f"rtmp://127.0.0.1:{cluster.rtmp_port}/live/{e['stream']['stream_key']}", seconds=60)
               for e in (public, private)]
    try:
        await _watch(cluster, public, private)
        # the ingest node kept both publishers through it all (none was cut or refused)
        assert [p.returncode for p in pushers] == [None, None], [p.returncode for p in pushers]
    finally:
        for pusher in pushers:
            await stop(pusher)


async def _watch(cluster: Cluster, public: dict[str, Any], private: dict[str, Any]) -> None:
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
            segment = re.search(r"^(\S+\.(?:ts|m4s))$", await resp.text(), re.M).group(1)  # type: ignore[union-attr]
        rendition = variant.rsplit("/", 1)[0]
        async with viewer.get(f"{base}/live/{public['slug']}/{rendition}/{segment}") as resp:
            body = await resp.read()
            if PLAIN_HLS:
                assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp2t" and segment.endswith(".ts")
                assert body[:1] == b"\x47"  # MPEG-TS sync byte
            else:  # LL-HLS, the default
                assert resp.status == 200 and resp.headers["Content-Type"] == "video/iso.segment" and segment.endswith(".m4s")
                assert body[4:8] in (b"styp", b"moof")  # a CMAF media segment

        # A private (sign-in only) event: refused anonymously, served once signed in.
        async with viewer.get(f"{base}/live/{private['slug']}/master.m3u8") as resp:
            assert resp.status == 403
        await _login(viewer, base)

        # Signed in as the owner (who sees stream health): the web workers know where the stream is and
        # how it is doing, from the ingest node's board (announced every 2 s, so allow a few periods).
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

        async with viewer.get(f"{base}/events/{private['slug']}") as resp:
            assert resp.status == 200  # the page hands out the media pass
        async with viewer.get(f"{base}/live/{private['slug']}/master.m3u8") as resp:
            assert resp.status == 200


async def _chat(url: str, slug: str, session_cookie: str) -> ChatClient:
    chat = ChatClient()
    await chat.sio.connect(url, headers={"Cookie": f"live_session={session_cookie}"}, auth={"event": slug},
                           transports=["websocket"], wait_timeout=10)
    await chat.welcome()
    return chat


async def _session(base: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v1/auth/login", json={"username": "prof", "password": "prof-password-1"}) as resp:
            assert resp.status == 200
            return resp.cookies["live_session"].value


async def _chat_and_captions_cross_workers_and_survive_a_worker_stop(cluster: Cluster, ko_speech: Any,
                                                                     tmp_path: Path) -> None:
    event = create_event(cluster.env, "prof", "Korean lecture", "--caption-language", "ko")
    web1, web2 = cluster.webs
    a = await _chat(web1.url, event["slug"], await _session(web1.url))
    b = await _chat(web2.url, event["slug"], await _session(web2.url))
    try:
        assert (await b.call("send", {"text": "hello from worker 2"}))["ok"]
        await a.wait(lambda: "hello from worker 2" in a.texts(), timeout=10, what="the message on worker 1")

        # Live captions are made on the ingest node and reach viewers on both web workers through Redis.
        track = speech_track(ko_speech, at=[1.0], seconds=6.0, folder=tmp_path)
        pusher = await push_track(f"rtmp://127.0.0.1:{cluster.rtmp_port}/live/{event['stream']['stream_key']}", track)
        for chat in (a, b):
            await chat.wait(lambda: any(c.get("final") and c.get("text") for c in chat.of("caption")), timeout=30,
                            what="a final caption from the ingest node")
        assert await asyncio.wait_for(pusher.wait(), 30) == 0

        # Worker 2 stops (rolling restart): its client is told to go and reconnects through nginx.
        web2.signal()
        await asyncio.wait_for(b.disconnected.wait(), 15)
        assert await web2.wait(timeout=20) == 0
        b2 = await _chat(cluster.nginx.url, event["slug"], await _session(cluster.nginx.url))
        assert (await b2.call("send", {"text": "back after the restart"}))["ok"]
        await a.wait(lambda: "back after the restart" in a.texts(), timeout=10, what="the message after reconnecting")
        history = [m["text"] for m in (await b2.welcome())["history"]]
        assert "hello from worker 2" in history  # history on join
        await b2.sio.disconnect()
    finally:
        for chat in (a, b):
            if chat.sio.connected:
                await chat.sio.disconnect()
