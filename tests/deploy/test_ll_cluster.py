"""LL-HLS on a web-only node: ffmpeg publishes RTMP to the ingest node, viewers reach a web node
(``LIVE_ROLE=web``) through real nginx (X-Accel for media), both nodes sharing the media folder.

The web node has no packager: it answers blocking reloads, delta updates and hinted parts from the
playlists the ingest node replaces at every part. Timing-precise by nature where it checks *when* a
blocking reload is answered (its subject); the rest compares texts and statuses.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from formats.m3u8 import parse_ll, render_ll
from tests.media import push_rtmp, stop
from tests.nginx import Nginx, run_nginx
from tests.processes import ServerProcess, base_env, cli, create_event, free_port, stop_all

PART_TARGET = 0.334
SEGMENT = 1.0


@dataclass
class LlCluster:
    ingest: ServerProcess
    web: ServerProcess
    nginx: Nginx
    env: dict[str, str]
    rtmp_port: int
    media: Path


@pytest.fixture
async def ll_cluster(tmp_path: Path, migrated_postgres: str, redis_url: str) -> AsyncIterator[LlCluster]:
    media = tmp_path / "media"
    common = dict(database_url=migrated_postgres, redis_url=redis_url, media_dir=media, segment_seconds=SEGMENT,
                  grace_period_seconds=3, trusted_proxies="127.0.0.1", media_accel_redirect="/_media/",
                  ll_hls="true", ll_hls_part_target_seconds=PART_TARGET)
    rtmp_port = free_port()
    ingest_env = base_env(tmp_path / "ingest", role="ingest", rtmp_host="127.0.0.1", rtmp_port=rtmp_port,
                          node_name="ingest-a", **common)
    ingest_env["LIVE_MEDIA_DIR"] = str(media)
    cli(ingest_env, "db", "upgrade")
    cli(ingest_env, "users", "create", "--username", "prof", "--role", "lecturer", "--password", "prof-password-1")
    ingest = ServerProcess(ingest_env, free_port(), tmp_path / "ingest.log")
    web_env = base_env(tmp_path / "web1", role="web", rtmp_enabled="false", node_name="web-1", **common)
    web_env["LIVE_MEDIA_DIR"] = str(media)
    web = ServerProcess(web_env, free_port(), tmp_path / "web1.log")
    try:
        await asyncio.gather(ingest.start(), web.start())
        nginx_gen = run_nginx(tmp_path / "nginx", [f"127.0.0.1:{web.port}"], media)
        nginx = next(nginx_gen)
        try:
            yield LlCluster(ingest, web, nginx, ingest_env, rtmp_port, media)
        finally:
            nginx_gen.close()
    finally:
        stop_all((ingest, web))


def _hint(text: str) -> tuple[int, int]:
    match = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"', text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


async def _text(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, str]:
    async with http.get(url, params=params) as resp:
        return resp.status, await resp.text()


async def test_a_web_only_node_answers_ll_hls_blocking_reloads_deltas_and_hinted_parts(ll_cluster: LlCluster) -> None:
    event = create_event(ll_cluster.env, "prof", "Amphi LL")
    slug = event["slug"]
    pusher = await push_rtmp(f"rtmp://127.0.0.1:{ll_cluster.rtmp_port}/live/{event['stream']['stream_key']}", seconds=40)
    base = f"{ll_cluster.nginx.url}/live/{slug}/source"
    ingest_base = f"{ll_cluster.ingest.url}/live/{slug}/source"
    try:
        async with aiohttp.ClientSession() as http:
            text = ""
            for _ in range(300):
                status, text = await _text(http, f"{base}/live.m3u8")
                if status == 200 and "#EXT-X-PRELOAD-HINT" in text:
                    break
                await asyncio.sleep(0.1)
            assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text and "#EXT-X-PRELOAD-HINT" in text, text
            runs = [p for p in ll_cluster.media.rglob("source") if p.is_dir()]
            assert len(runs) == 1
            folder = runs[0]

            # Blocking reloads through nginx to the web node: answered once the part is on disk, not a segment later.
            delays = []
            for _ in range(8):
                msn, index = _hint(text)
                candidates = [folder / f"part_{msn:06d}_{index}.m4s", folder / f"part_{msn + 1:06d}_0.m4s"]
                if any(path.exists() for path in candidates):
                    text = (await _text(http, f"{base}/live.m3u8"))[1]
                    continue
                status, body = await _text(http, f"{base}/live.m3u8", _HLS_msn=str(msn), _HLS_part=str(index))
                answered = time.time()
                existing = [path for path in candidates if path.exists()]
                assert status == 200 and existing, "answered before the part existed"
                assert f'URI="{existing[0].name}"' in body  # the answer lists the part that satisfied it
                delays.append(answered - existing[0].stat().st_mtime)
                text = body
            assert len(delays) >= 3
            print(f"web-only node: blocking reload answered {[round(d * 1000) for d in delays]} ms after the part file")
            # Parts come every PART_TARGET; the file watcher looks every 25 ms: a reload a segment late would be
            # three parts late. The median is held to one part (a loaded machine slows both ends).
            assert sorted(delays)[len(delays) // 2] < PART_TARGET and max(delays) < SEGMENT, delays

            # The same blocking delta request to the ingest node (from memory) and to the web node (from the file)
            # is answered with the same text: the version that first holds the part.
            for _ in range(20):
                status, dvr = await _text(http, f"{ingest_base}/dvr.m3u8")
                if "#EXT-X-SKIP" in render_ll(parse_ll(dvr), skip=True):
                    break
                await asyncio.sleep(0.5)
            same = []
            for _ in range(3):
                msn, index = _hint((await _text(http, f"{ingest_base}/live.m3u8"))[1])
                params = dict(_HLS_msn=str(msn), _HLS_part=str(index + 1), _HLS_skip="YES")
                (s1, from_ingest), (s2, from_web) = await asyncio.gather(
                    _text(http, f"{ingest_base}/dvr.m3u8", **params), _text(http, f"{base}/dvr.m3u8", **params))
                assert s1 == s2 == 200 and "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in from_web and "#EXT-X-VERSION:9" in from_web
                same.append(from_ingest == from_web)
            assert any(same), same

            # The hinted part, asked for before it exists: nginx's X-Accel answer comes once the web node has
            # seen the playlist move past the hint (not a 404). A blocking reload gives the freshest hint
            # (nginx keeps a plain playlist request's answer a second).
            for _ in range(10):
                msn, index = _hint(text)
                text = (await _text(http, f"{base}/live.m3u8", _HLS_msn=str(msn), _HLS_part=str(index)))[1]
                msn, index = _hint(text)
                name = f"part_{msn:06d}_{index}.m4s"
                if (folder / name).exists():
                    continue
                async with http.get(f"{base}/{name}") as resp:
                    body_bytes = await resp.read()
                    if resp.status == 404:  # the segment ended before that part: the hint was honestly wrong
                        assert (folder / f"part_{msn + 1:06d}_0.m4s").exists()
                        continue
                    assert resp.status == 200 and resp.headers["Content-Type"] == "video/iso.segment"
                    assert body_bytes[4:8] == b"moof" and body_bytes == (folder / name).read_bytes()
                    break
            else:
                raise AssertionError("no hinted part was waited for")

            log = ll_cluster.web.log.read_text()
            assert "Traceback" not in log, log[-2000:]
    finally:
        await stop(pusher)
