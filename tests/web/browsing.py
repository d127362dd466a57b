"""Helpers for the event and replay page tests in Chromium: contexts, axe-core, screenshots, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import Account

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 700}
# axe-core with the WCAG 2.0 and 2.1 level A and AA rules, every impact (minor included): what the README promises.
AXE_WCAG = """async () => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
                                          resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG A/AA violations of the page as it is now (axe is added to the page on first use)."""
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(url="/vendor/axe.min.js")
    return await page.evaluate(AXE_WCAG)


async def open_context(browser: Any, base_url: str, account: Account | None = None, viewport: dict[str, int] = DESKTOP,
                       locale: str = "en-GB") -> Any:
    """A browser profile of its own (cookies, localStorage), logged in through the API when ``account`` is given."""
    context = await browser.new_context(viewport=viewport, locale=locale, base_url=base_url)
    if account is not None:
        resp = await context.request.post("/api/v1/auth/login", data={"username": account.username, "password": account.password})
        assert resp.status == 200, await resp.text()
    return context


async def new_page(context: Any) -> tuple[Any, list[str]]:
    """A page whose script errors are collected (a test asserts the list stays empty)."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


#: Both sizes, desktop first; a language whose document is already audited at both sizes may take the phone only,
#: where longer strings break layouts (tests/web/test_browser_pages.py says why that keeps a translation's checks).
BOTH_SIZES = (("desktop", DESKTOP), ("phone", PHONE))
PHONE_ONLY = (("phone", PHONE),)


async def check_page(page: Any, shots: Path, name: str,
                     sizes: tuple[tuple[str, dict[str, int]], ...] = BOTH_SIZES) -> dict[str, Any]:
    """axe-core's WCAG A/AA violations (every impact) at each size, desktop then phone, and how far the page scrolls
    sideways on the phone, with a screenshot of each size where something was found; the page is left at desktop
    size."""
    shots.mkdir(exist_ok=True)
    found: dict[str, Any] = {}
    for size, viewport in sizes:
        await page.set_viewport_size(viewport)
        await page.wait_for_timeout(150)  # layout settles
        violations = await axe_violations(page)
        if violations:
            found[f"{name}-{size}"] = violations
        if size == "phone":
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 1:
                found[f"{name}-phone-overflow"] = f"scrolls sideways by {overflow}px"
        if any(key.startswith(f"{name}-{size}") for key in found):  # what a failure is about, to look at
            await page.screenshot(path=shots / f"{name}-{size}.png", full_page=True)
    await page.set_viewport_size(DESKTOP)
    return found
