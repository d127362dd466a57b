"""A viewer opens the event page before the lecture starts and watches it in Chromium with hls.js."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.ingest.conftest import Live, event_state_is, wait_for
from tests.media import push_rtmp, stop


async def test_page_waits_then_plays_the_live_stream(live: Live, browser: Any) -> None:  
    event = await live.create_event()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/events/{event['slug']}")))
    assert "Waiting for the stream" in await page.inner_text("#event-state")

    pusher = await push_rtmp(live.publish_url(event), seconds=12)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
        # The page notices by itself (no reload), attaches hls.js and plays.
        await page.wait_for_function(
            "() => { const v = document.getElementById('player'); return v && v.readyState >= 3 && v.currentTime > 1.5; }",
            timeout=20_000,
        )
        assert await page.inner_text("#event-state") == "Live now."
        width = await page.evaluate("document.getElementById('player').videoWidth")
        assert width == 160
        assert errors == []
    finally:
        await stop(pusher)
    await asyncio.sleep(0)
