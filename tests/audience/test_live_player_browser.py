"""Chromium watches a live event on its page (hls.js, the chat socket's caption overlay): the audience
counts the player from its playlist polls, with the rendition it chose and captions shown, and records
its watch time; nothing but the page itself runs in the browser."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from audience.collector import AUDIENCE
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (fixture)
from tests.media import push_rtmp, stop


@pytest.mark.live_settings(audience_flush_seconds=300, audience_slot_seconds=1)
async def test_a_viewer_in_chromium_is_counted_with_captions_on(live: Live, browser: Any) -> None:  # noqa: F811
    # a caption language with no Vosk model: no captions are made, but the page offers them (on by default)
    event = await live.create_event(title="Watched lecture", caption_language="fr")
    pusher = await push_rtmp(live.publish_url(event), seconds=12)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
        await page.goto(str(live.client.make_url(f"/events/{event['slug']}")))
        await page.wait_for_function(
            "() => { const v = document.getElementById('player'); return v && v.readyState >= 3 && v.currentTime > 0; }",
            timeout=20_000)
        # three seconds of playing from where it started (hls.js starts near the live edge, seconds into the
        # stream's media time: `currentTime > 3` alone could hold after one second of watching)
        started = await page.evaluate("document.getElementById('player').currentTime")
        await page.wait_for_function(f"() => document.getElementById('player').currentTime > {started} + 3",
                                     timeout=20_000)
    finally:
        await stop(pusher)
    await page.close()
    assert await live.app[AUDIENCE].flush() > 0
    body = await (await live.client.get(f"/api/v1/events/{event['id']}/audience")).json()
    watched = [m for m in body["minutes"] if m["viewers"]]
    assert watched and max(m["viewers"] for m in watched) == 1
    assert all(set(m["qualities"]) <= {"source"} for m in watched) and any(m["qualities"] for m in watched)
    assert max(m["caption_share"] for m in watched) == 1.0  # the player said it shows captions
    assert body["viewers"] == {"total": 1, "logged_in": 0, "anonymous": 1}
    assert body["watch_seconds"]["total"] >= 3  # one-second slots with a poll in them
    assert errors == []
    await asyncio.sleep(0)
