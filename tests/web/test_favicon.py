"""The site's icon: /favicon.ico (asked for by browsers whatever the page says) and the SVG the pages link."""

from __future__ import annotations

import re
import struct
from typing import Any

from tests.web.website import Site


async def test_favicon_ico_and_svg_are_served_and_linked(site: Site) -> None:
    resp = await site.client.get("/favicon.ico")
    assert resp.status == 200
    assert resp.content_type in ("image/vnd.microsoft.icon", "image/x-icon")
    assert "max-age" in resp.headers["Cache-Control"]
    body = await resp.read()
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind) == (0, 1) and count >= 2  # an icon file, several sizes
    sizes = set()
    for i in range(count):
        width, _height, _colors, _zero, _planes, _bits, length, offset = struct.unpack("<BBBBHHII", body[6 + 16 * i:22 + 16 * i])
        assert body[offset:offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + length <= len(body)
        sizes.add(width or 256)
    assert {16, 32} <= sizes

    svg = await site.client.get("/static/favicon.svg")
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    assert (await svg.text()).startswith("<svg")

    owner = site.account()
    slug = site.event(owner)
    for path in ("/", f"/events/{slug}", "/login", f"/embed/events/{slug}"):
        html = await (await site.client.get(path)).text()
        links = re.findall(r'<link rel="icon" href="([^"]+)"', html)
        assert links == ["/favicon.ico", "/static/favicon.svg"], path


async def test_a_page_load_in_chromium_asks_for_nothing_that_is_missing(site: Site, browser: Any) -> None:
    owner = site.account()
    slug = site.event(owner)
    page = await browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for path in ("/", f"/events/{slug}"):
        await page.goto(str(site.client.make_url(path)))
        await page.wait_for_load_state("networkidle")
    # The icon the browser picks from the page's links loads (headless Chromium does not fetch it by itself).
    icons = await page.evaluate("""async () => Promise.all([...document.querySelectorAll('link[rel=icon]')].map(
        async l => { const r = await fetch(l.href); return [r.status, r.headers.get('content-type')]; }))""")
    assert [status for status, _type in icons] == [200, 200]
    assert failed == []
