"""Content-Security-Policy, framing and HSTS headers (issue 17, item 15). That every page satisfies the policy is
checked by every browser test: the ``browser`` fixture (tests/browser.py) fails a test on any CSP violation."""

from __future__ import annotations

from typing import Any, Callable

from live_server.app import create_app
from live_server.settings import Settings
from tests.web.website import Site


def _directives(header: str) -> dict[str, str]:
    return {part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2] for part in header.split(";") if part.strip()}


async def test_pages_carry_a_policy_without_inline_script(site: Site) -> None:
    owner = site.account("lecturer")
    slug = site.event(owner, title="Optics")
    for path in ("/", "/login", f"/events/{slug}", "/search?q=x"):
        resp = await site.client.get(path)
        assert resp.status == 200, path
        csp = _directives(resp.headers["Content-Security-Policy"])
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["object-src"] == "'none'"
        assert csp["frame-ancestors"] == "'self'" and resp.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in resp.headers  # plain HTTP
    embed = await site.client.get(f"/embed/events/{slug}")
    csp = _directives(embed.headers["Content-Security-Policy"])
    assert csp["frame-ancestors"] == "*" and csp["script-src"] == "'self'"
    assert "X-Frame-Options" not in embed.headers  # it would contradict frame-ancestors *


async def test_hsts_over_tls_through_a_trusted_proxy_only(aiohttp_client: Any, make_settings: Callable[..., Settings],
                                                         migrated_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url=migrated_url, trusted_proxies="127.0.0.1")))
    resp = await client.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    resp = await client.get("/login", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in resp.headers
    untrusted = await aiohttp_client(create_app(make_settings(database_url=migrated_url)))
    resp = await untrusted.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in resp.headers  # anyone can send the header


async def test_chromium_refuses_an_injected_inline_script(site: Site, browser: Any) -> None:
    """The control: the policy really stops inline script (what an XSS would inject)."""
    context = await browser.unwatched_new_context(base_url=str(site.client.make_url("")).rstrip("/"))
    page = await context.new_page()
    await page.goto("/login")
    blocked = await page.evaluate("""() => new Promise((resolve) => {
      document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective));
      const s = document.createElement("script");
      s.textContent = "window.injected = true";
      document.body.append(s);
      setTimeout(() => resolve(null), 2000);
    })""")
    assert blocked is not None and blocked.startswith("script-src")
    assert await page.evaluate("window.injected") is None
    await context.close()
