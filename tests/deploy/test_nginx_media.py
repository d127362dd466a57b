"""The shipped nginx configuration in front of the app: the app decides, nginx sends the bytes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from formats.m3u8 import parse_media_playlist
from web.media import MEDIA_CACHE
from tests.ingest.conftest import Live, event_state_is, live, wait_for  # noqa: F401 (fixture)
from tests.media import push_rtmp
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
