"""The interface in Chromium: axe-core finds no serious or critical problem on each page, at desktop and
phone sizes, in English and French; the keyboard reaches the skip link first and then the main controls;
an LMS page on another origin can frame the embed player, and no other page.

Screenshots of every page are kept under the test's tmp dir (``.../screenshots``) as artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from live_server import events as ev
from web.media import VIEWERS
from live_server.models import EventState, Recording, RecordingState
from tests.support import Account
from tests.web.conftest import Site

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 700}
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


def _content(site: Site, owner: Account) -> dict[str, str]:
    live = site.event(owner, title="Organic chemistry, week 4", description="Aromatic compounds")
    site.change(live, state=EventState.LIVE)
    upcoming = site.event(owner, title="Linear algebra", visibility="password", password="matrix")

    def recording(session: Any) -> int:
        row = Recording(owner_id=owner.id, title="Optics, week 1", state=RecordingState.READY, duration_seconds=3300,
                        media_path="recordings/1/run")
        session.add(row)
        session.flush()
        return row.id

    site.db.transaction(recording)
    live_id = site.db.transaction(lambda s: ev.get_event(s, live).id)
    site.client.app[VIEWERS].seen(live_id, "f" * 24)
    return {"live": live, "upcoming": upcoming}


async def _logged_in_context(browser: Any, site: Site, account: Account | None, viewport: dict[str, int], locale: str) -> Any:
    context = await browser.new_context(viewport=viewport, locale=locale, base_url=str(site.client.make_url("")).rstrip("/"))
    if account is not None:
        resp = await context.request.post("/api/v1/auth/login", data={"username": account.username, "password": account.password})
        assert resp.status == 200
    return context


async def _axe(page: Any) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(url="/vendor/axe.min.js")
    return await page.evaluate(AXE_RUN)


async def test_every_page_passes_axe_at_desktop_and_phone_sizes(site: Site, browser: Any, tmp_path: Path) -> None:
    admin = site.account("admin")
    slugs = _content(site, admin)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pages = [
        ("home", "/"), ("search", "/search?q=optics"), ("dashboard", "/dashboard"), ("event-new", "/dashboard/events/new"),
        ("event-edit", f"/dashboard/events/{slugs['live']}"), ("profile", "/profile"), ("tokens", "/profile/tokens"),
        ("admin-users", "/admin/users"), ("admin-events", "/admin/events"), ("embed", f"/embed/events/{slugs['live']}"),
    ]
    problems: dict[str, Any] = {}
    for size_name, viewport, locale in (("desktop", DESKTOP, "en-GB"), ("phone", PHONE, "fr-FR")):
        anonymous = await _logged_in_context(browser, site, None, viewport, locale)
        page = await anonymous.new_page()
        await page.goto("/login")
        await page.fill("#username", "nobody")
        await page.fill("#password", "wrong password")
        await page.click("form.stack button[type=submit]")  # the page with its error message
        await page.wait_for_selector("#login-error")
        problems[f"login-{size_name}"] = await _axe(page)
        await page.screenshot(path=shots / f"login-{size_name}.png", full_page=True)
        await anonymous.close()

        context = await _logged_in_context(browser, site, admin, viewport, locale)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for name, path in pages:
            resp = await page.goto(path)
            assert resp is not None and resp.status == 200, (path, resp and resp.status)
            assert await page.get_attribute("html", "lang") == locale[:2]
            problems[f"{name}-{size_name}"] = await _axe(page)
            await page.screenshot(path=shots / f"{name}-{size_name}.png", full_page=True)
        # the event form with its errors shown (the browser's own checks bypassed to reach the server's)
        await page.goto("/dashboard/events/new")
        await page.eval_on_selector("form.form", "f => f.noValidate = true")
        await page.fill("#scheduled_start", "2031-05-01T10:00")
        await page.fill("#scheduled_end", "2031-05-01T09:00")
        await page.click("form.form button[type=submit]")
        await page.wait_for_selector("#error-summary")
        assert await page.get_attribute("#title", "aria-invalid") == "true"
        problems[f"event-errors-{size_name}"] = await _axe(page)
        await page.screenshot(path=shots / f"event-errors-{size_name}.png", full_page=True)
        # nothing overflows sideways on a phone
        if size_name == "phone":
            for _name, path in pages[:-1]:
                await page.goto(path)
                overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
        assert errors == []
        await context.close()
    found = {name: violations for name, violations in problems.items() if violations}
    assert not found, f"axe found serious/critical problems (screenshots in {shots}): {found}"
    assert len(list(shots.glob("*.png"))) == 2 * (len(pages) + 2)


async def _tab_until(page: Any, selector: str, limit: int = 25) -> list[str]:
    """Press Tab until ``selector`` has focus; returns what had focus on the way (fails past ``limit``)."""
    seen = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        seen.append(await page.evaluate("""() => { const e = document.activeElement;
            return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || e.value || '').trim().slice(0, 30); }"""))
        if await page.evaluate(f"document.activeElement.matches({selector!r})"):
            outline = await page.evaluate("() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; }")
            assert outline[0] != "none" and outline[1] != "0px", f"no visible focus on {selector}: {outline}"
            return seen
    raise AssertionError(f"{selector} not reached with Tab; focus went {seen}")


async def test_the_keyboard_reaches_the_skip_link_first_then_the_main_controls(site: Site, browser: Any) -> None:
    lecturer = site.account("lecturer")
    context = await _logged_in_context(browser, site, lecturer, DESKTOP, "en-GB")
    page = await context.new_page()
    await page.goto("/")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.classList.contains('skip')")
    box = await page.evaluate("(() => { const r = document.activeElement.getBoundingClientRect(); return [r.left, r.top, r.width]; })()")
    assert box[0] >= 0 and box[1] >= 0 and box[2] > 20, f"the skip link is not visible when focused: {box}"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await _tab_until(page, "#search-q", limit=3)  # right after the skip: the search box

    await page.goto("/")
    on_the_way = await _tab_until(page, ".language-switch button[value=fr]")
    assert any("My events" in s for s in on_the_way) and any("Log out" in s for s in on_the_way)
    await page.keyboard.press("Enter")  # the switcher works from the keyboard
    await page.wait_for_function("() => document.documentElement.lang === 'fr'")

    await page.goto("/dashboard/events/new")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await _tab_until(page, "#title", limit=3)
    await page.keyboard.type("Keyboard-only lecture")
    await _tab_until(page, "#visibility-public")
    await _tab_until(page, "#record")
    await _tab_until(page, "form.form button[type=submit]")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/dashboard/events/keyboard-only-lecture?created=1")
    await _tab_until(page, "button[data-copy=stream-key]", limit=60)  # the copy buttons appear with JavaScript
    await context.close()


async def test_an_lms_page_on_another_origin_frames_the_embed_player_and_nothing_else(
        site: Site, browser: Any, aiohttp_server: Any, tmp_path: Path) -> None:
    lecturer = site.account("lecturer")
    slug = site.event(lecturer, title="Embedded lecture")
    base = str(site.client.make_url("")).rstrip("/")
    lms_page = (f'<!doctype html><html lang="en"><title>Course</title><iframe name="player" src="{base}/embed/events/{slug}" '
                f'width="640" height="360" title="Lecture"></iframe><iframe name="login" src="{base}/login" title="Login"></iframe>')

    async def course(_request: web.Request) -> web.Response:
        return web.Response(text=lms_page, content_type="text/html")

    lms = web.Application()
    lms.router.add_get("/course/view.php", course)
    lms_server = await aiohttp_server(lms)  # another origin (another port) on loopback, like a campus Moodle
    context = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = await context.new_page()
    await page.goto(str(lms_server.make_url("/course/view.php?id=7")))
    player = page.frame(name="player")
    assert player is not None
    await player.wait_for_selector("#player")
    await player.wait_for_function("() => document.getElementById('event-state').textContent.includes('En attente')")
    assert await player.get_attribute("#player", "data-src") == f"/live/{slug}/master.m3u8"
    assert await player.evaluate("typeof Hls") == "function"  # hls.js loaded inside the frame
    await page.screenshot(path=tmp_path / "lms-embed.png")
    login = page.frame(name="login")
    assert login is not None
    assert await login.query_selector("#username") is None, "the login page must not be framable by other sites"
    await context.close()
