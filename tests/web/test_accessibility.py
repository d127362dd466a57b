"""What axe-core cannot see, checked in Chromium the way a keyboard or screen-reader user meets it: the video's
focus ring is whole (not clipped) on the event, replay and embed pages; buttons that hide themselves leave the
focus on the video; the slated video and an empty questions list are no Tab stops; caption, transcript and
search-excerpt text carries its language; the embedded replay has its captions and the embeds a captions toggle;
unknown pages are pages in the visitor's language; focus goes to a refused form's error summary and to a
one-time token; the event form does not scroll sideways at 320 px with WCAG 1.4.12 text spacing; chat
announcements can be silenced on their own.
"""

from __future__ import annotations

from typing import Any

from tests.web.a11y_content import LINES, SPOKEN_WORD, make_content
from tests.web.browsing import new_page, open_context
from tests.web.website import Site

# Whether the focused element's outline is drawn whole: not cut by an ancestor that clips its overflow, nor by
# the edges of the page (an embed's video fills its frame). "" when whole, else what is wrong.
RING_PROBLEM = """() => {
  const el = document.activeElement, s = getComputedStyle(el);
  const width = parseFloat(s.outlineWidth) || 0, offset = parseFloat(s.outlineOffset) || 0;
  if (s.outlineStyle === "none" || width <= 0) return "no outline on " + el.tagName;
  const r = el.getBoundingClientRect(), reach = width + offset, slack = 0.5;
  const ring = {left: r.left - reach, top: r.top - reach, right: r.right + reach, bottom: r.bottom + reach};
  const doc = document.documentElement;
  if (ring.left < -slack || ring.top + scrollY < -slack || ring.right > doc.clientWidth + slack
      || ring.bottom + scrollY > doc.scrollHeight + slack) return "cut by the edge of the page: " + JSON.stringify(ring);
  for (let a = el.parentElement; a && a !== doc; a = a.parentElement) {
    const cs = getComputedStyle(a);
    if (cs.overflowX === "visible" && cs.overflowY === "visible") continue;
    const b = a.getBoundingClientRect();
    if (ring.left < b.left - slack || ring.top < b.top - slack || ring.right > b.right + slack || ring.bottom > b.bottom + slack)
      return "clipped by " + a.tagName.toLowerCase() + "." + a.className;
  }
  return "";
}"""
FOCUSED = "() => { const e = document.activeElement; return e.id || e.tagName.toLowerCase(); }"
STOP = "() => { const e = document.activeElement; return e.id || e.tagName.toLowerCase() + ':' + Array.from(document.querySelectorAll('*')).indexOf(e); }"
# WCAG 1.4.12 (the bookmarklet's values), through the CSSOM: the pages' CSP refuses inline styles.
TEXT_SPACING = """() => {
  const sheet = Array.from(document.styleSheets).find(s => s.href && s.href.includes("/static/site.css"));
  sheet.insertRule("* { line-height: 1.5 !important; letter-spacing: .12em !important; word-spacing: .16em !important; }", sheet.cssRules.length);
  sheet.insertRule("p { margin-bottom: 2em !important; }", sheet.cssRules.length);
}"""


async def _tab_to(page: Any, selector: str, limit: int = 40) -> list[str]:
    """Press Tab until ``selector`` has focus; what had focus on the way (fails past ``limit``)."""
    seen = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        seen.append(await page.evaluate(FOCUSED))
        if await page.evaluate(f"document.activeElement.matches({selector!r})"):
            return seen
    raise AssertionError(f"{selector} not reached with Tab; focus went {seen}")


async def _tab_stops(page: Any, limit: int = 60) -> list[str]:
    """Every Tab stop of the page, in order, once round."""
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    seen: list[str] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        now = await page.evaluate(STOP)
        if seen and now == seen[0]:
            break
        seen.append(now)
    return seen


async def test_the_player_pages_keep_focus_visible_and_say_what_language_captions_are_in(site: Site, browser: Any) -> None:
    owner = site.account("lecturer")
    content = make_content(site, owner)
    base = str(site.client.make_url("")).rstrip("/")
    context = await open_context(browser, base)
    page, errors = await new_page(context)

    # the replay: the transcript and the captions track in Korean, the lecturer's chapter titles in no language
    await page.goto(f"/recordings/{content.recording}")
    await page.wait_for_function(f"() => document.querySelectorAll('#transcript li').length === {len(LINES)}")
    assert await page.get_attribute("#transcript", "lang") == "ko"
    assert await page.get_attribute("#replay track[kind=captions]", "srclang") == "ko"
    assert await page.get_attribute("#replay track[kind=chapters]", "srclang") is None
    await _tab_to(page, "#replay")
    assert await page.evaluate(RING_PROBLEM) == "", "the replay's video has no whole focus ring"

    # the embedded replay: the same captions track, loaded, shown, and a toggle; its ring inside the frame
    await page.goto(f"/embed/recordings/{content.recording}")
    track = "#player track[kind=captions]"
    assert await page.get_attribute(track, "src") == f"/api/v1/recordings/{content.recording}/captions.vtt"
    assert await page.get_attribute(track, "srclang") == "ko"
    await page.wait_for_function(f"() => {{ const t = document.getElementById('player').textTracks[0]; "
                                 f"return t && t.kind === 'captions' && t.cues && t.cues.length === {len(LINES)}; }}")
    await page.wait_for_selector("#captions-toggle:not([hidden])")
    assert await page.get_attribute("#captions-toggle", "aria-pressed") == "true"
    assert await page.evaluate("document.getElementById('player').textTracks[0].mode") == "showing"
    await page.click("#captions-toggle")
    assert await page.get_attribute("#captions-toggle", "aria-pressed") == "false"
    assert await page.evaluate("document.getElementById('player').textTracks[0].mode") == "hidden"
    await page.click("#captions-toggle")  # back on: the choice is remembered for the other pages
    await page.evaluate("document.activeElement.blur()")
    await _tab_to(page, "#player", limit=5)
    assert await page.evaluate(RING_PROBLEM) == "", "the embed's video has no whole focus ring"

    # the live embed: captions on by default, with a toggle, like the event page
    await page.goto(f"/embed/events/{content.live}")
    await page.wait_for_selector("#captions-toggle:not([hidden])")
    assert await page.get_attribute("#captions-toggle", "aria-pressed") == "true"

    # the live event page: the video is a Tab stop with a whole ring; the caption text is in Korean
    await page.goto(f"/events/{content.live}")
    assert await page.get_attribute("#caption-overlay", "lang") == "ko"
    assert await page.get_attribute("#caption-live", "lang") == "ko"
    await _tab_to(page, "#player")
    assert await page.evaluate(RING_PROBLEM) == "", "the event page's video has no whole focus ring"
    # "Turn the sound on" hides itself once pressed; the focus goes to the video, not to the top of the page
    await page.wait_for_selector("#player-bar:not([hidden])")
    await page.evaluate("() => { document.getElementById('player').muted = true; document.getElementById('unmute').hidden = false; }")
    await page.focus("#unmute")
    await page.keyboard.press("Enter")
    assert await page.is_hidden("#unmute")
    assert await page.evaluate(FOCUSED) == "player"

    # the scheduled event: the video under the slate and the empty questions list are no Tab stops
    await page.goto(f"/events/{content.upcoming}")
    await page.wait_for_function("() => document.getElementById('chat').dataset.connected === 'true'")
    stops = await _tab_stops(page)
    assert "chat-text" not in stops and "chat-nickname" in stops, stops  # the walk went through the chat panel
    assert "player" not in stops and "qa-list" not in stops, stops
    # chat announcements can be silenced on their own; the captions keep their region
    assert await page.get_attribute("#chat-messages", "aria-live") == "polite"
    await page.uncheck("#chat-announce")
    assert await page.get_attribute("#chat-messages", "aria-live") == "off"
    assert await page.get_attribute("#caption-live", "aria-live") == "polite"
    assert await page.evaluate("!document.getElementById('chat').contains(document.getElementById('caption-live'))")
    await page.reload()
    await page.wait_for_function("() => document.getElementById('chat').dataset.connected === 'true'")
    await page.wait_for_timeout(200)  # the welcome's history is added with the region off, then it is set back
    assert not await page.is_checked("#chat-announce")
    assert await page.get_attribute("#chat-messages", "aria-live") == "off"

    # a search excerpt is marked with the language it was said in
    await page.goto(f"/search?q={SPOKEN_WORD}")
    excerpt = page.locator(".matches li span[lang]")
    assert await excerpt.get_attribute("lang") == "ko" and SPOKEN_WORD in await excerpt.inner_text()
    assert errors == []
    await context.close()


async def test_unknown_pages_and_a_wrong_password_are_pages_in_the_visitors_language(site: Site, browser: Any) -> None:
    context = await open_context(browser, str(site.client.make_url("")).rstrip("/"), locale="fr-FR")
    page, errors = await new_page(context)
    for path in ("/events/no-such-event", "/recordings/zzzzzzzz", "/recordings/99999999999", "/no/such/path"):
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        assert await page.title() == "Erreur : Page introuvable · Cours en direct", path
        assert await page.get_attribute("html", "lang") == "fr"
        assert await page.inner_text("main h1") == "Page introuvable"
        assert await page.get_attribute("main a[href='/']", "href") == "/"
        assert "Content-Security-Policy" in response.headers or "content-security-policy" in response.headers
    api = await context.request.get("/api/v1/events/no-such-event", headers={"Accept": "text/html"})
    assert api.status == 404 and (await api.json())["error"]["code"] == "not_found"
    # a wrong event password: the message has the focus, the title says there is an error
    slug = site.event(site.account("lecturer"), title="Linear algebra", visibility="password", password="matrix")
    await page.goto(f"/events/{slug}")
    await page.fill("#event-password", "not it")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_selector("p.error[role=alert]")
    assert await page.evaluate("document.activeElement.matches('p.error[role=alert]')")
    assert (await page.title()).startswith("Erreur : Linear algebra")
    assert errors == []
    await context.close()


async def test_forms_put_the_focus_on_what_the_server_said(site: Site, browser: Any) -> None:
    lecturer = site.account("lecturer")
    context = await open_context(browser, str(site.client.make_url("")).rstrip("/"), lecturer)
    page, errors = await new_page(context)
    # a form the server refused: the error summary has the focus and the title says so
    await page.goto("/dashboard/events/new")
    await page.eval_on_selector("form.form", "f => f.noValidate = true")
    await page.fill("#scheduled_start", "2031-05-01T10:00")
    await page.fill("#scheduled_end", "2031-05-01T09:00")
    await page.click("form.form button[type=submit]")
    await page.wait_for_selector("#error-summary")
    assert await page.evaluate(FOCUSED) == "error-summary"
    assert (await page.title()).startswith("Error: Create an event")
    # a new API token, shown once: the keyboard and the screen reader start there
    await page.goto("/profile/tokens")
    await page.fill("#token-name", "Capture box")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_selector("#new-token")
    assert await page.evaluate(FOCUSED) == "new-token-panel"
    assert await page.evaluate("document.getElementById('new-token-panel').getAttribute('aria-labelledby')") == "new-token-title"
    # WCAG 1.4.12 text spacing on a 320 px screen: the event form does not scroll sideways
    for locale_path in ("/dashboard/events/new",):
        await page.set_viewport_size({"width": 320, "height": 640})
        await page.goto(locale_path)
        await page.evaluate(TEXT_SPACING)
        await page.wait_for_timeout(100)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{locale_path} scrolls sideways by {overflow}px at 320 px with text spacing"
    assert errors == []
    await context.close()
