"""The interface in Chromium: axe-core (WCAG 2.0/2.1 A and AA rules, every impact) finds nothing on every page
state — forms with their errors, the password page, embeds, 404s, the captions and transcript pages — at desktop
and phone sizes in English and at phone size in French, and nothing scrolls sideways on a phone in either language;
the keyboard reaches the skip link first and then the main controls; an LMS page on another origin can frame the
embed player, and no other page.

Why French at one size: the two sizes show the same document — no media query of site.css hides or shows an
element, they only rearrange grid columns and turn tables into labelled blocks on a phone — so what a translation
can break that axe sees (the ``lang`` attribute, an empty or untranslated label, name or heading, a control named
by text the language lost) breaks at either size. What depends on the size is the layout: contrast measured over
whatever a line of text ends up on, and text that no longer fits. Longer French strings are a layout risk where
room is shortest, on the phone, which is where French gets axe and the sideways-scroll check; layout faults of the
desktop that any language has are English's desktop pass. That halves French's axe runs (25 of 100 per run of the
suite, a fifth of its CPU) and spares it a resize per state.

Screenshots of each page state axe finds fault with are kept under the test's tmp dir (``.../screenshots``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from tests.support import Account
from tests.web.a11y_content import SPOKEN_WORD, Content, make_content
from tests.web.browsing import axe_violations
from tests.web.website import Site

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 700}


async def _logged_in_context(browser: Any, site: Site, account: Account | None, viewport: dict[str, int], locale: str) -> Any:
    context = await browser.new_context(viewport=viewport, locale=locale, base_url=str(site.client.make_url("")).rstrip("/"))
    if account is not None:
        resp = await context.request.post("/api/v1/auth/login", data={"username": account.username, "password": account.password})
        assert resp.status == 200
    return context


#: The sizes each language is audited at (see the module's docstring); the first is the browser profile's.
SIZES = {"en-GB": [("desktop", DESKTOP), ("phone", PHONE)], "fr-FR": [("phone", PHONE)]}


class Audit:
    """axe at the language's sizes on each page state of one browser page, and the phone's sideways scrolling; what
    it finds is kept by state, size and language, with a screenshot."""

    def __init__(self, page: Any, lang: str, shots: Path, sizes: list[tuple[str, dict[str, int]]]) -> None:
        self.page, self.lang, self.shots, self.sizes = page, lang, shots, sizes
        self.problems: dict[str, Any] = {}
        self.states: list[str] = []
        self.seconds = {"axe": 0.0, "screenshots": 0.0}

    async def __call__(self, name: str) -> None:
        page = self.page
        assert await page.get_attribute("html", "lang") == self.lang, name
        self.states.append(name)
        sizes = list(self.sizes)
        if page.viewport_size != sizes[0][1]:
            sizes.reverse()  # one resize per state: each starts at the size the last one ended at
        for index, (size, viewport) in enumerate(sizes):
            if index:
                await page.set_viewport_size(viewport)
            key = f"{name}-{size}-{self.lang}"
            started = time.monotonic()
            violations = await axe_violations(page)
            self.seconds["axe"] += time.monotonic() - started
            if violations:
                self.problems[key] = violations
            if size == "phone":
                overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 1:
                    self.problems[f"{key}-overflow"] = f"scrolls sideways by {overflow}px"
            if key in self.problems or f"{key}-overflow" in self.problems:  # what a failure is about, to look at
                started = time.monotonic()
                await page.screenshot(path=self.shots / f"{key}.png", full_page=True)
                self.seconds["screenshots"] += time.monotonic() - started

    async def visit(self, name: str, path: str, status: int = 200, ready: str | None = None) -> None:
        response = await self.page.goto(path)
        assert response is not None and response.status == status, (path, response and response.status)
        if ready:
            await self.page.wait_for_selector(ready)
        await self(name)


async def _anonymous_states(audit: Audit, content: Content) -> None:
    page = audit.page
    await page.goto("/login")
    await page.fill("#username", "nobody")
    await page.fill("#password", "wrong password")
    await page.click("form.stack button[type=submit]")  # the page with its error message
    await page.wait_for_selector("#login-error")
    await audit("login-error")
    await audit.visit("event-password", f"/events/{content.locked}")
    await page.fill("#event-password", "not it")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_selector("p.error[role=alert]")
    await audit("event-password-wrong")
    await audit.visit("404-event", "/events/no-such-event", 404)
    await audit.visit("404-recording", "/recordings/zzzzzzzz", 404)
    await audit.visit("404-path", "/no/such/page", 404)
    await audit.visit("embed-unavailable", "/embed/events/no-such-event", 404)
    await audit.visit("embed-live", f"/embed/events/{content.live}", ready="#captions-toggle:not([hidden])")
    await audit.visit("embed-recording", f"/embed/recordings/{content.recording}", ready="#captions-toggle:not([hidden])")
    await audit.visit("home", "/")
    await audit.visit("search", f"/search?q={SPOKEN_WORD}", ready=".matches span[lang]")
    await audit.visit("event-live-captions", f"/events/{content.live}", ready="#player-bar:not([hidden])")
    await audit.visit("event-waiting-chat", f"/events/{content.upcoming}", ready="#chat[data-connected=true]")
    await audit.visit("replay-transcript", f"/recordings/{content.recording}", ready="#transcript li")


async def _owner_states(audit: Audit, content: Content) -> None:
    page = audit.page
    for name, path in (("dashboard", "/dashboard"), ("event-new", "/dashboard/events/new"),
                       ("event-edit", f"/dashboard/events/{content.live}"), ("profile", "/profile"),
                       ("tokens", "/profile/tokens"), ("admin-users", "/admin/users"), ("admin-events", "/admin/events")):
        await audit.visit(name, path)
    # the event form with its errors shown (the browser's own checks bypassed to reach the server's)
    await page.goto("/dashboard/events/new")
    await page.eval_on_selector("form.form", "f => f.noValidate = true")
    await page.fill("#scheduled_start", "2031-05-01T10:00")
    await page.fill("#scheduled_end", "2031-05-01T09:00")
    await page.click("form.form button[type=submit]")
    await page.wait_for_selector("#error-summary")
    assert await page.get_attribute("#title", "aria-invalid") == "true"
    await audit("event-errors")
    await page.goto("/profile/tokens")
    await page.fill("#token-name", "Capture box")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_selector("#new-token-panel")
    await audit("token-created")
    await audit.visit("event-owner", f"/events/{content.live}", ready="#lecturer-tools")
    await audit.visit("replay-owner", f"/recordings/{content.recording}", ready="#transcript li")


@pytest.mark.parametrize("locale", ["en-GB", "fr-FR"])  # one test per language: they run on two workers
async def test_every_page_state_passes_axe_wcag_a_and_aa_in_both_languages(
        site: Site, browser: Any, tmp_path: Path, locale: str) -> None:
    admin = site.account("admin")
    content = make_content(site, admin)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    started = time.monotonic()
    # one profile for the language: the visitor's pages first, then the same profile logged in
    context = await _logged_in_context(browser, site, None, SIZES[locale][0][1], locale)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    audit = Audit(page, locale[:2], shots, SIZES[locale])
    await _anonymous_states(audit, content)
    resp = await context.request.post("/api/v1/auth/login", data={"username": admin.username, "password": admin.password})
    assert resp.status == 200
    await _owner_states(audit, content)
    await context.close()
    assert errors == []
    assert not audit.problems, f"axe found problems (screenshots in {shots}): {audit.problems}"
    assert len(audit.states) == 25
    print(f"axe {locale}: {len(audit.states)} page states x {len(SIZES[locale])} sizes in {time.monotonic() - started:.1f} s "
          f"(axe {audit.seconds['axe']:.1f} s, screenshots {audit.seconds['screenshots']:.1f} s)")


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
