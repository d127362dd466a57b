"""The shipped nginx configuration in front of the app: the app decides, nginx sends the bytes."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from formats.m3u8 import parse_media_playlist
from live_server import accounts
from live_server.db import DB
from live_server.metrics import METRICS
from web.media import MEDIA_CACHE, VIEWERS
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401 (fixture)
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
            listed = parse_media_playlist(await resp.text()).playlist.segments
        name = listed[0].uri
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
        async with viewer.get(f"{nginx.url}/live-decision/{public['slug']}/{rendition}/{name}") as resp:
            assert resp.status == 404 and "X-Live-Folder" not in resp.headers  # nor the app's decisions
        async with viewer.get(f"{nginx.url}/metrics") as resp:
            assert resp.status == 404  # issue 17 (9): not proxied; Prometheus scrapes the app directly
        assert (await live.client.get("/metrics")).status == 200
        async with viewer.get(f"{base}/{rendition}/seg_999999{live.segment_suffix}") as resp:
            assert resp.status == 404
        async with viewer.get(f"{nginx.url}/live/no-such-event/{rendition}/{name}") as resp:
            assert resp.status == 404  # the decision hands it to the app's media route, which answers
        async with viewer.get(f"{nginx.url}/live/no-such-event/{rendition}/live.m3u8") as resp:
            assert resp.status == 404
        errors = (nginx.work / "error.log").read_text() if (nginx.work / "error.log").exists() else ""
        assert "unexpected status" not in errors, errors  # auth_request got a status it takes (401), not a 404

        # Two players (their own live_viewer handles) fetch the files listed, four requests each: nginx sends them
        # from disk, the app is asked once per player per decision lifetime, and both players are counted.
        listed_files = [s.uri for s in listed] + sorted({s.map_uri for s in listed if s.map_uri})
        files = [listed_files[i % len(listed_files)] for i in range(4)]
        counted = live.app[VIEWERS].count(public["id"])
        decisions, media = _app_requests(live, DECISION_ROUTE), _app_requests(live, LIVE_ROUTE)
        started = time.monotonic()
        for handle in (secrets.token_hex(12), secrets.token_hex(12)):
            async with aiohttp.ClientSession(headers={"Cookie": f"live_viewer={handle}"},
                                             cookie_jar=aiohttp.DummyCookieJar()) as player:
                for uri in files:
                    async with player.get(f"{base}/{rendition}/{uri}") as resp:
                        assert resp.status == 200
                        assert await resp.read() == (live.folder(public["id"]) / rendition / uri).read_bytes()
        lifetimes = (time.monotonic() - started) // live.settings.media_decision_cache_seconds + 1
        asked = _app_requests(live, DECISION_ROUTE) - decisions
        print(f"2 players, {len(files)} requests each: {asked:.0f} decisions asked of the app")
        assert 2 <= asked <= 2 * lifetimes < 2 * len(files)
        assert _app_requests(live, LIVE_ROUTE) == media  # every file from disk, by nginx
        assert live.app[VIEWERS].count(public["id"]) == counted + 2

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
            assert "Access-Control-Allow-Origin" not in resp.headers  # public events only
            assert await resp.read() == segment.read_bytes()
        # The viewer's decision is kept by nginx, for that viewer alone: a stranger with a handle of their own,
        # or with the viewer's handle but not the pass, is decided anew, and refused.
        handle = next(c.value for c in viewer.cookie_jar if c.key == "live_viewer")
        for cookie in (f"live_viewer={secrets.token_hex(12)}", f"live_viewer={handle}"):
            async with aiohttp.ClientSession(headers={"Cookie": cookie}, cookie_jar=aiohttp.DummyCookieJar()) as stranger:
                async with stranger.get(f"{pbase}/{rendition}/{segment.name}") as resp:
                    assert resp.status == 403
    for p in pushers:
        await asyncio.wait_for(p.wait(), 20)


def _app_requests(live: Live, route: str) -> float:
    """Requests the app answered on ``route`` (its own counter, ``live_http_requests_total``)."""
    return sum(sample.value for metric in live.app[METRICS].registry.collect() for sample in metric.samples
               if sample.name == "live_http_requests_total" and sample.labels.get("route") == route)


def _hint(playlist: str) -> tuple[int, int, str]:
    """(msn, part index, uri) of the playlist's EXT-X-PRELOAD-HINT."""
    found = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part_(\d+)_(\d+)\.m4s)"', playlist)
    assert found is not None, playlist
    return int(found.group(2)), int(found.group(3)), found.group(1)


LIVE_ROUTE = "/live/{slug}/{tail}"
DECISION_ROUTE = "/live-decision/{slug}/{tail}"
PLAYERS = 12


@pytest.mark.live_settings(media_accel_redirect="/_media/", ll_hls=True)
async def test_ll_hls_through_nginx_collapses_blocking_reloads_and_keeps_parts_private(live: Live, nginx: Nginx) -> None:
    public = await live.create_event(title="Open lecture")
    private = await live.create_event(title="Closed seminar", visibility="authenticated")

    def students(session: Any) -> list[str]:
        student = accounts.create_user(session, "student", "student-password", "viewer")
        session.flush()
        return [accounts.open_login_session(session, student, 3600, "127.0.0.1")[0] for _ in range(PLAYERS)]

    tokens = live.app[DB].transaction(students)
    pushers = [await push_rtmp(live.publish_url(e), seconds=14) for e in (public, private)]  # real time: parts as they come
    try:
        for event in (public, private):
            await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        insecure = aiohttp.TCPConnector(ssl=False, limit=0)  # the test's self-signed certificate
        async with aiohttp.ClientSession(connector=insecure, cookie_jar=aiohttp.CookieJar(unsafe=True)) as viewer:
            base = f"{nginx.tls_url}/live/{public['slug']}/source"
            async with viewer.get(f"{base}/live.m3u8") as resp:  # the viewer's decision, kept by nginx
                assert resp.status == 200
            msn, part, hinted = await _fresh_hint(live, public["slug"])

            # A lecture hall asks for the part hinted at, all at once: one request reaches the app, which
            # answers when the part exists; the hinted part itself, not on disk yet, is waited for by the app
            # and sent by nginx (X-Accel). (The part first: it takes the viewer's open connection.)
            before = _app_requests(live, LIVE_ROUTE)
            blocking = f"{base}/live.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            (part_status, part_body, _, part_wait), *playlists = await asyncio.gather(
                _ask(viewer, f"{base}/{hinted}"), *(_ask(viewer, blocking) for _ in range(PLAYERS)))
            upstream = _app_requests(live, LIVE_ROUTE) - before
            waits = sorted(a[3] for a in playlists)
            print(f"{PLAYERS} identical blocking reloads through nginx: {upstream:.0f} requests reached the app's media "
                  f"route (with the hinted part's); answered after {waits[0]:.2f}-{waits[-1]:.2f} s, "
                  f"cache {sorted(a[2] for a in playlists)}; hinted part after {part_wait:.2f} s")
            assert {a[0] for a in playlists} == {200} and len({a[1] for a in playlists}) == 1
            text = playlists[0][1].decode()
            assert re.search(rf'^#EXT-X-PART:.*URI="{hinted}"', text, re.M) and _hint(text)[2] != hinted  # listed now
            hinted_file = live.folder(public["id"]) / "source" / hinted
            assert part_status == 200 and part_body == hinted_file.read_bytes()
            assert upstream == 2  # one playlist request, the hinted part's (not on disk: nginx asked the app)
            assert not live.app[MEDIA_CACHE].holds(hinted_file)  # nginx sent it

            # HTTP/2 on the TLS listener, as LL-HLS players expect (curl from Debian, with nghttp2).
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", f"{base}/live.m3u8",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await curl.communicate()
            assert out.decode() == "2 200"

        # The private (sign-in only) event, watched by a lecture hall of logged-in students: its part refused
        # without a login, served with one; its blocking reloads collapse like a public event's, each student
        # let through by their own decision, and the answer is never given to someone without a login.
        pbase = f"{nginx.tls_url}/live/{private['slug']}/source"
        folder = live.folder(private["id"]) / "source"
        listed = re.findall(r'#EXT-X-PART:.*URI="([^"]+)"', (folder / "live.m3u8").read_text())[-1]
        students = [_player(f"live_session={token}; live_viewer={secrets.token_hex(12)}") for token in tokens]
        stranger = _player(f"live_viewer={secrets.token_hex(12)}")
        try:
            async with stranger.get(f"{pbase}/{listed}") as resp:
                assert resp.status == 403
            for student in students:  # each student's decision, kept by nginx
                async with student.get(f"{pbase}/{listed}") as resp:
                    assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")
                    assert "Access-Control-Allow-Origin" not in resp.headers
                    assert await resp.read() == (folder / listed).read_bytes()
            pmsn, ppart, _ = await _fresh_hint(live, private["slug"])
            url = f"{pbase}/live.m3u8?_HLS_msn={pmsn}&_HLS_part={ppart}"
            before = _app_requests(live, LIVE_ROUTE)
            *granted, refused = await asyncio.gather(*(_ask(student, url) for student in students),
                                                     _stranger_status(stranger, url))
            upstream = _app_requests(live, LIVE_ROUTE) - before
            print(f"{PLAYERS} logged-in students' identical blocking reloads: {upstream:.0f} reached the app, "
                  f"cache {sorted(a[2] for a in granted)}")
            assert {a[0] for a in granted} == {200} and len({a[1] for a in granted}) == 1 and refused == 403
            assert upstream == 1
            assert await _stranger_status(stranger, url) == 403  # after the answer too
        finally:
            for session in (*students, stranger):
                await session.close()
    finally:
        for p in pushers:
            await stop(p)


async def _fresh_hint(live: Live, slug: str) -> tuple[int, int, str]:
    """The part the app hints at, read as the previous part ended (the hinted one is a part's duration away),
    and one that will come: not a segment's possible last part (a keyframe may end the segment before it)."""
    async with live.client.get(f"/live/{slug}/source/live.m3u8") as resp:
        hint = _hint(await resp.text())
    for _ in range(20):
        async with live.client.get(f"/live/{slug}/source/live.m3u8?_HLS_msn={hint[0]}&_HLS_part={hint[1]}") as resp:
            hint = _hint(await resp.text())
        if hint[1] in (1, 2):
            return hint
    raise AssertionError(f"no early part hinted at: {hint}")


def _player(cookie: str) -> aiohttp.ClientSession:
    """A player with these cookies on the test's TLS listener (self-signed certificate)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False), headers={"Cookie": cookie},
                                 cookie_jar=aiohttp.DummyCookieJar())


async def _ask(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str, float]:
    started = time.monotonic()
    async with session.get(url) as r:
        return r.status, await r.read(), r.headers.get("X-Cache-Status", ""), time.monotonic() - started


async def _stranger_status(session: aiohttp.ClientSession, url: str) -> int:
    await asyncio.sleep(0.05)  # after the granted request took the cache lock
    async with session.get(url) as resp:
        return resp.status
