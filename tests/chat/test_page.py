"""The chat panel of the event page in Chromium: a guest joins, talks, and markup stays text."""

from __future__ import annotations

from typing import Any

from tests.chat.clients import ChatSite


async def test_guest_chats_from_the_event_page_and_html_stays_text(site: ChatSite, browser: Any) -> None:
    event = await site.create_event(title="Open webinar", guests_allowed=True)
    watcher = await site.connect(event["slug"], site.user())
    owner = await site.connect(event["slug"], site.lecturer)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{site.url}/events/{event['slug']}")
    await page.wait_for_selector("#chat-guest:not([hidden])")

    await page.fill("#chat-nickname", "Ada")
    await page.click("#chat-guest button[type=submit]")
    await page.wait_for_selector("#chat-form:not([hidden])")
    payload = '<img src=x onerror="window.pwned=1"><b>bold</b> & done'
    await page.fill("#chat-text", payload)
    await page.click("#chat-form button[type=submit]")

    await watcher.wait(lambda: watcher.texts() == [payload], what="the page's message")
    assert watcher.messages()[0]["author"]["name"] == "Ada"
    await page.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-text').length === 1")
    assert await page.inner_text("#chat-messages .chat-text") == payload
    assert await page.evaluate("document.querySelector('#chat-messages img, #chat-messages b') === null")
    assert await page.evaluate("window.pwned === undefined")
    # the history is loaded silently, then new messages are announced
    await page.wait_for_function("() => document.getElementById('chat-messages').getAttribute('aria-live') === 'polite'",
                                 timeout=5_000)

    # a message from elsewhere shows up; a moderator's deletion removes it again
    sent = await watcher.call("send", {"text": "welcome, Ada"})
    await page.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-text').length === 2")
    assert (await owner.call("delete", {"id": sent["id"]}))["ok"]
    await page.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-text').length === 1")

    await page.fill("#qa-text", "Is there a <recording>?")
    await page.click("#qa-form button[type=submit]")
    await owner.wait(lambda: owner.of("question"), what="the page's question")
    assert owner.of("question")[0]["text"] == "Is there a <recording>?"
    assert errors == []


async def test_the_page_chats_over_long_polling_where_websockets_are_blocked(site: ChatSite, browser: Any) -> None:
    """Campus and corporate proxies that refuse the WebSocket upgrade: the page falls back to polling."""
    event = await site.create_event(title="Behind a proxy", guests_allowed=True)
    watcher = await site.connect(event["slug"], site.user())
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "transport=polling" in r.url else None)
    # What a proxy that forbids the upgrade does to a browser: the WebSocket fails before it opens.
    await page.add_init_script("""
      window.refusedSockets = [];
      window.WebSocket = class {
        constructor(url) {
          this.url = url; this.readyState = 0; window.refusedSockets.push(url);
          setTimeout(() => {
            this.readyState = 3;
            if (this.onerror) this.onerror(new Event("error"));
            if (this.onclose) this.onclose({ code: 1006, reason: "", wasClean: false });
          }, 20);
        }
        send() {}
        close() {}
      };
    """)
    await page.goto(f"{site.url}/events/{event['slug']}")
    await page.wait_for_selector("#chat-guest:not([hidden])")
    await page.fill("#chat-nickname", "Grace")
    await page.click("#chat-guest button[type=submit]")
    await page.wait_for_selector("#chat-form:not([hidden])")
    await page.fill("#chat-text", "can you hear me?")
    await page.click("#chat-form button[type=submit]")
    await watcher.wait(lambda: watcher.texts() == ["can you hear me?"], what="the polling page's message")

    await watcher.call("send", {"text": "loud and clear"})
    await page.wait_for_function("() => [...document.querySelectorAll('#chat-messages .chat-text')]"
                                 ".some(e => e.textContent === 'loud and clear')")
    assert await page.evaluate("window.refusedSockets.length") > 0, "the page never tried a WebSocket"
    assert polls, "the page did not fall back to long-polling"
    assert errors == []
