"""The shipped nginx configuration in front of the app: the app decides, nginx sends the bytes."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from formats.m3u8 import parse_media_playlist
from live_server.metrics import METRICS
from web.media import MEDIA_CACHE
from tests.ingest.conftest import Live, event_state_is, live, wait_for  # noqa: F401 (fixture)
from tests.media import push_rtmp, stop
from tests.nginx import Nginx, run_nginx


@pytest.fixture
def nginx(live: Live, tmp_path: Path) -> Iterator[Nginx]:
    yield from run_nginx(tmp_path / "nginx", [f"127.0.0.1:{live.client.server.port}"], live.settings.media_dir)


@pytest.mark.live_settings(media_accel_redirect="/_media/")
async def test_nginx_serves_what_the_app_allows(live: Live, nginx: Nginx) -> None:
    public = await live.create_event(title="Open lecture")
    private = await live.create_event(title="Closed seminar", visibility="password", password="letmein-123")
    pushers = [await push_rtmp(live.publish_url(e), seconds=6) for e in (public, private)]
    for event in (public, private):
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
        base = f"{nginx.url}/live/{public['slug']}"
        async with viewer.get(f"{base}/master.m3u8") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            variant = re.search(r"^(\S+\.m3u8)$", await resp.text(), re.M).group(1)  # type: ignore[union-attr]
        async with viewer.get(f"{base}/{variant}") as resp:
            name = parse_media_playlist(await resp.text()).playlist.segments[0].uri
        rendition = variant.rsplit("/", 1)[0]
        async with viewer.get(f"{base}/{rendition}/{name}") as resp:
            body = await resp.read()
            assert resp.status == 200, body[:200]
            assert resp.headers["Content-Type"] == ("video/iso.segment" if live.settings.ll_hls else "video/mp2t")
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "X-Accel-Redirect" not in resp.headers
        assert body == (live.folder(public["id"]) / rendition / name).read_bytes()
        assert not live.app[MEDIA_CACHE].holds(live.folder(public["id"]) / rendition / name)  # nginx sent it
        async with viewer.get(f"{nginx.url}/_media/") as resp:
            assert resp.status == 404  # the internal location cannot be reached from outside
        async with viewer.get(f"{nginx.url}/metrics") as resp:
            assert resp.status == 404  # issue 17 (9): not proxied; Prometheus scrapes the app directly
        assert (await live.client.get("/metrics")).status == 200
        async with viewer.get(f"{base}/{rendition}/seg_999999{live.segment_suffix}") as resp:
            assert resp.status == 404

        # The private event: refused without the pass, through the app's decision, served with it.
        pbase = f"{nginx.url}/live/{private['slug']}"
        folder = live.folder(private["id"])
        listed = parse_media_playlist((folder / rendition / "live.m3u8").read_text()).playlist.segments[0].uri
        segment = folder / rendition / listed
        async with viewer.get(f"{pbase}/{rendition}/{segment.name}") as resp:
            assert resp.status == 403
        page = await viewer.get(f"{nginx.url}/events/{private['slug']}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert csrf is not None
        async with viewer.post(f"{nginx.url}/events/{private['slug']}/unlock",
                               data={"password": "letmein-123", "csrf_token": csrf.group(1)}) as resp:
            assert resp.status == 200
        async with viewer.get(f"{pbase}/{rendition}/{segment.name}") as resp:
            assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")
            assert await resp.read() == segment.read_bytes()
    for p in pushers:
        await asyncio.wait_for(p.wait(), 20)


def _live_media_requests(live: Live) -> float:
    """Requests the app answered on /live/ (its own counter, ``live_http_requests_total``)."""
    return sum(sample.value for metric in live.app[METRICS].registry.collect() for sample in metric.samples
               if sample.name == "live_http_requests_total" and sample.labels.get("route") == LIVE_ROUTE)


def _hint(playlist: str) -> tuple[int, int, str]:
    """(msn, part index, uri) of the playlist's EXT-X-PRELOAD-HINT."""
    found = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part_(\d+)_(\d+)\.m4s)"', playlist)
    assert found is not None, playlist
    return int(found.group(2)), int(found.group(3)), found.group(1)


LIVE_ROUTE = "/live/{slug}/{tail}"
VIEWERS = 12


@pytest.mark.live_settings(media_accel_redirect="/_media/", ll_hls=True)
async def test_ll_hls_through_nginx_collapses_blocking_reloads_and_keeps_parts_private(live: Live, nginx: Nginx) -> None:
    public = await live.create_event(title="Open lecture")
    private = await live.create_event(title="Closed seminar", visibility="password", password="letmein-123")
    pushers = [await push_rtmp(live.publish_url(e), seconds=14) for e in (public, private)]  # real time: parts as they come
    try:
        for event in (public, private):
            await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        insecure = aiohttp.TCPConnector(ssl=False, limit=0)  # the test's self-signed certificate
        async with aiohttp.ClientSession(connector=insecure, cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
            base = f"{nginx.tls_url}/live/{public['slug']}/source"
            async with viewer.get(f"{base}/live.m3u8") as resp:
                assert resp.status == 200
                msn, part, hinted = _hint(await resp.text())

            # A lecture hall asks for the part hinted at, all at once: one request reaches the app, which
            # answers when the part exists; the hinted part itself is waited for by the app and sent by nginx.
            before = _live_media_requests(live)
            blocking = f"{base}/live.m3u8?_HLS_msn={msn}&_HLS_part={part}"

            async def ask(url: str) -> tuple[int, bytes, str, float]:
                started = time.monotonic()
                async with viewer.get(url) as r:
                    return r.status, await r.read(), r.headers.get("X-Cache-Status", ""), time.monotonic() - started

            answers = await asyncio.gather(*(ask(blocking) for _ in range(VIEWERS)), ask(f"{base}/{hinted}"))
            *playlists, (part_status, part_body, _, part_wait) = answers
            upstream = _live_media_requests(live) - before
            waits = sorted(a[3] for a in playlists)
            print(f"{VIEWERS} identical blocking reloads through nginx: {upstream:.0f} requests reached the app "
                  f"(with the hinted part's); answered after {waits[0]:.2f}-{waits[-1]:.2f} s, "
                  f"cache {sorted(a[2] for a in playlists)}; hinted part after {part_wait:.2f} s")
            assert {a[0] for a in playlists} == {200} and len({a[1] for a in playlists}) == 1
            text = playlists[0][1].decode()
            assert re.search(rf'^#EXT-X-PART:.*URI="{hinted}"', text, re.M) and _hint(text)[2] != hinted  # listed now
            assert upstream == 2  # one playlist request, one part decision
            assert part_status == 200 and part_body == (live.folder(public["id"]) / "source" / hinted).read_bytes()
            assert not live.app[MEDIA_CACHE].holds(live.folder(public["id"]) / "source" / hinted)  # nginx sent it

            # HTTP/2 on the TLS listener, as LL-HLS players expect (curl from Debian, with nghttp2).
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", f"{base}/live.m3u8",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await curl.communicate()
            assert out.decode() == "2 200"

            # The private event: its part refused without the pass, served with it; its blocking reload is
            # never answered from the cache to someone without the pass.
            pbase = f"{nginx.tls_url}/live/{private['slug']}/source"
            folder = live.folder(private["id"]) / "source"
            listed = re.findall(r'#EXT-X-PART:.*URI="([^"]+)"', (folder / "live.m3u8").read_text())[-1]
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as stranger:
                async with stranger.get(f"{pbase}/{listed}") as resp:
                    assert resp.status == 403
                page = await viewer.get(f"{nginx.tls_url}/events/{private['slug']}")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
                assert csrf is not None
                async with viewer.post(f"{nginx.tls_url}/events/{private['slug']}/unlock",
                                       data={"password": "letmein-123", "csrf_token": csrf.group(1)}) as resp:
                    assert resp.status == 200
                async with viewer.get(f"{pbase}/{listed}") as resp:
                    assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")
                    assert await resp.read() == (folder / listed).read_bytes()
                async with viewer.get(f"{pbase}/live.m3u8") as resp:
                    pmsn, ppart, _ = _hint(await resp.text())
                url = f"{pbase}/live.m3u8?_HLS_msn={pmsn}&_HLS_part={ppart}"
                (granted, _, cache, _), refused = await asyncio.gather(ask(url), _stranger_status(stranger, url))
                assert granted == 200 and cache != "HIT" and refused == 403
                assert await _stranger_status(stranger, url) == 403  # after the answer too
    finally:
        for p in pushers:
            await stop(p)


async def _stranger_status(session: aiohttp.ClientSession, url: str) -> int:
    await asyncio.sleep(0.05)  # after the granted request took the cache lock
    async with session.get(url) as resp:
        return resp.status
