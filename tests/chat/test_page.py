"""The chat panel of the event page in Chromium: a guest joins, talks, and markup stays text."""

from __future__ import annotations

from typing import Any

from tests.chat.conftest import ChatSite


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
    assert await page.get_attribute("#chat-messages", "aria-live") == "polite"

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
