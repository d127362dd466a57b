"""The event page in Chromium with a real stream: waiting → live → ended without a reload, hls.js
playing the ABR ladder with its quality menu, the distance to the live edge and "Back to live", the
lecturer's chapter marker reaching the replay, the link to the replay; and the chat between two
browsers. axe-core (WCAG A/AA, every impact) finds nothing on it (live and ended, desktop and phone).

Screenshots are kept under the test's tmp dir (``screenshots/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (the `live` fixture)
from tests.media import push_rtmp, stop
from tests.web.browsing import check_page, new_page, open_context
from tests.web.website import Site

PLAYING = "() => { const v = document.getElementById('player'); return v.readyState >= 3 && v.currentTime > 1.5; }"


async def test_event_page_from_waiting_to_live_to_replay_without_reload(live: Live, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    event = await live.create_event(title="Fourier analysis", abr=True, dvr=True)
    base = str(live.client.make_url("")).rstrip("/")
    shots = tmp_path / "screenshots"
    viewer = await open_context(browser, base)
    page, errors = await new_page(viewer)
    await page.goto(f"/events/{event['slug']}")
    assert "Waiting for the stream" in await page.inner_text("#event-state")
    assert await page.is_visible("#player-slate") and await page.is_hidden("#player-bar")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads

    lecturer = await open_context(browser, base, live.lecturer)
    desk, desk_errors = await new_page(lecturer)
    await desk.goto(f"/events/{event['slug']}")
    assert await desk.get_attribute("#lecturer-tools a[href^='/dashboard/events/']", "href") == f"/dashboard/events/{event['slug']}"
    # The lecturer's page comes back for the chapter only: open, it would play the stream all along (a second
    # player's decoding, compositing and playlist polls: about a fifth of the test's CPU) for nothing asserted.
    await desk.goto("about:blank")

    # Long enough for every step below on a loaded machine (the chapter must fall inside the recording);
    # the encoder is stopped as soon as they are done. 480 lines tall: the ladder encodes no rung taller
    # than the source, and two video levels (480p, 240p) are what the quality menu switches between;
    # 10 fps and x264 ultrafast keep the publisher cheap. 4:3, so that 240p is exactly 320x240 (a width
    # rounded to even would give non-square pixels, and Chromium a videoHeight of 241).
    pusher = await push_rtmp(live.publish_url(event), seconds=40, size="640x480", fps=10)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        await page.wait_for_function(PLAYING, timeout=30_000)
        assert await page.inner_text("#event-state") == "Live now."
        assert await page.is_hidden("#player-slate")
        assert await page.inner_text("#event-badge") == "Live"

        # ABR: the menu lists the ladder; choosing a level plays it
        await page.wait_for_selector("#quality-field:not([hidden])")
        labels = await page.eval_on_selector_all("#quality option", "os => os.map(o => o.textContent)")
        assert labels[0].startswith("Automatic") and {"480p", "240p"} <= set(labels[1:]), labels
        assert "720p" not in labels, labels  # taller than the source: not encoded
        await page.select_option("#quality", label="240p")
        await page.wait_for_function("() => document.getElementById('player').videoHeight === 240", timeout=15_000)

        # distance to the live edge; paused, the viewer falls behind and can jump back
        await page.wait_for_function("() => document.getElementById('latency').textContent.includes('s delay')", timeout=10_000)
        await page.evaluate("document.getElementById('player').pause()")
        await page.wait_for_selector("#go-live:not([hidden])")
        assert "behind live" in await page.inner_text("#latency")
        await page.focus("#go-live")
        await page.keyboard.press("Enter")  # from the keyboard: once back at the edge the button hides itself ...
        await page.wait_for_function("() => document.getElementById('latency').textContent.includes('s delay')", timeout=10_000)
        await page.wait_for_selector("#go-live", state="hidden")
        assert await page.evaluate("document.activeElement.id") == "player"  # ... and the focus goes to the video
        # this page, counted by the media it fetches (the API, polled; the lecturer's page is not open on the event
        # now, and would make it 2)
        await page.wait_for_function("() => /^[12] viewers?$/.test(document.getElementById('viewer-count').textContent)",
                                     timeout=12_000)

        # the lecturer marks a chapter from the event page, open on the live event
        await desk.goto(f"/events/{event['slug']}")
        await desk.wait_for_selector("#chapter-form:not([hidden])")
        await desk.fill("#chapter-title", "Dirichlet conditions")
        await desk.press("#chapter-title", "Enter")
        await desk.wait_for_function("() => document.getElementById('chapter-status').textContent.includes('Dirichlet conditions')")
        assert "added at" in await desk.inner_text("#chapter-status")
        await desk.goto("about:blank")  # its player is not looked at

        problems = await check_page(page, shots, "event-live")
        assert await page.evaluate("document.getElementById('player').currentTime") > 0
    finally:
        await stop(pusher)  # the encoder goes away (what is asserted next does not need the rest of its 40 s)

    # the end: the page says so, then links the replay once the recording is ready, still without a reload
    await page.wait_for_function("() => document.getElementById('event-state').textContent === 'This event has ended.'",
                                 timeout=20_000)
    await page.wait_for_selector("#replay-link", timeout=30_000)
    assert await page.evaluate("window.sameDocument") is True
    assert await page.inner_text("#event-badge") == "Ended"
    replay_url = await page.get_attribute("#replay-link", "href")
    assert replay_url and replay_url.startswith("/recordings/")
    problems.update(await check_page(page, shots, "event-ended"))

    # a visitor who comes later (in French) gets the ended page, replay link included, from the server
    french = await open_context(browser, base, locale="fr-FR")
    later, later_errors = await new_page(french)
    await later.goto(f"/events/{event['slug']}")
    assert await later.get_attribute("#replay-link", "href") == replay_url
    assert await later.inner_text("#replay-link") == "Voir la rediffusion"
    assert await later.is_visible("#player-slate")
    problems.update(await check_page(later, shots, "event-ended-fresh"))
    await later.click("#replay-link")
    await later.wait_for_selector("#replay-chapters li")
    assert "Dirichlet conditions" in await later.inner_text("#replay-chapters")

    assert not problems, f"axe found problems (screenshots in {shots}): {problems}"
    assert errors == [] and desk_errors == [] and later_errors == []
    for context in (viewer, lecturer, french):
        await context.close()


async def test_a_chat_message_sent_in_one_browser_appears_in_another(site: Site, browser: Any) -> None:
    lecturer = site.account("lecturer")
    slug = site.event(lecturer, title="Open webinar", guests_allowed=True)
    base = str(site.client.make_url("")).rstrip("/")
    host_context = await open_context(browser, base, lecturer)
    guest_context = await open_context(browser, base, locale="fr-FR")
    host, host_errors = await new_page(host_context)
    guest, guest_errors = await new_page(guest_context)
    await host.goto(f"/events/{slug}")
    await guest.goto(f"/events/{slug}")

    await guest.wait_for_selector("#chat-guest:not([hidden])")
    await guest.fill("#chat-nickname", "Ada")
    await guest.press("#chat-nickname", "Enter")
    await guest.wait_for_selector("#chat-form:not([hidden])")
    assert await guest.evaluate("document.activeElement.id") == "chat-text"  # the keyboard goes on to the message
    await guest.keyboard.type("Bonjour, une question sur la phase ?")
    await guest.keyboard.press("Enter")  # Enter sends
    await guest.wait_for_function("() => document.getElementById('chat-text').value === ''")  # sent: the box is emptied
    await guest.keyboard.type("Et sur le module ?")
    await guest.keyboard.press("Enter")

    await host.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-message').length === 2")
    assert await host.inner_text("#chat-messages .chat-text") == "Bonjour, une question sur la phase ?"
    assert await host.inner_text("#chat-messages .chat-author") == "Ada (guest)"
    # each moderator's Delete says which message it deletes (two from the same person are told apart)
    assert await host.eval_on_selector_all("#chat-messages button[data-action=delete]", "bs => bs.map(b => b.getAttribute('aria-label'))") == [
        "Delete the message from Ada: Bonjour, une question sur la phase ?", "Delete the message from Ada: Et sur le module ?"]
    assert await host.is_visible("#chat-moderation")

    # a question: the empty list was no Tab stop; the moderator's buttons say which question they act on
    assert await host.is_hidden("#qa-list")
    await guest.fill("#qa-text", "Pourquoi la phase change-t-elle ?")
    await guest.click("#qa-form button[type=submit]")
    await host.wait_for_selector("#qa-list li button[data-action=answer]")
    assert await host.is_visible("#qa-list")
    assert await host.get_attribute("#qa-list button[data-action=answer]", "aria-label") == \
        "Mark as answered: Pourquoi la phase change-t-elle ?"

    await host.fill("#chat-text", "Welcome, Ada")
    await host.click("#chat-form button[type=submit]")
    await guest.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-message').length === 3")
    assert await guest.inner_text("#chat-messages .chat-message:last-child .chat-text") == "Welcome, Ada"
    assert await guest.inner_text("#chat-messages .chat-message:first-child .chat-author") == "Ada (invité)"
    assert await guest.get_attribute("#chat-messages", "aria-live") == "polite"
    assert host_errors == [] and guest_errors == []
    await host_context.close()
    await guest_context.close()
