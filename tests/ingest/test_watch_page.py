"""A viewer opens the event page before the lecture starts and watches it in Chromium with hls.js."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.ingest.live import Live, event_state_is, wait_for
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


INTERRUPTED = "The stream is interrupted; it will resume by itself."


@pytest.mark.live_settings(grace_period_seconds=8)
async def test_a_publisher_gap_shows_interrupted_then_live_again_then_ended(live: Live, browser: Any) -> None:
    event = await live.create_event()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/events/{event['slug']}")))
    playing = "() => { const v = document.getElementById('player'); return v.readyState >= 3 && v.currentTime > %s; }"

    pusher = await push_rtmp(live.publish_url(event))
    try:
        await page.wait_for_function(playing % 1.5, timeout=20_000)
        assert not (await live.event(event["id"]))["interrupted"]
        await page.wait_for_function("() => /delay/.test(document.getElementById('latency').textContent)", timeout=10_000)
    finally:
        await stop(pusher)

    # The capture box drops out: the page says so instead of "Live, N s delay" on a frozen frame.
    await page.wait_for_function(f"() => document.getElementById('event-state').textContent === {INTERRUPTED!r}",
                                 timeout=7_000)
    body = await live.event(event["id"])
    assert body["state"] == "live" and body["interrupted"] is True
    assert await page.is_visible("#player-notice")
    assert await page.inner_text("#latency") == INTERRUPTED
    assert await page.get_attribute("#player-box", "data-interrupted") == "true"
    frozen_at = await page.evaluate("document.getElementById('player').currentTime")

    # It comes back within the grace period: live again, and the video moves on past the frozen frame.
    pusher = await push_rtmp(live.publish_url(event))
    try:
        await page.wait_for_function("() => document.getElementById('event-state').textContent === 'Live now.'",
                                     timeout=10_000)
        assert not await page.is_visible("#player-notice")
        await page.wait_for_function(playing % (frozen_at + 1.5), timeout=20_000)
        assert (await live.event(event["id"]))["interrupted"] is False
    finally:
        await stop(pusher)

    # Gone for good: interrupted during the grace period, then ended as before.
    await page.wait_for_function(f"() => document.getElementById('event-state').textContent === {INTERRUPTED!r}",
                                 timeout=7_000)
    await page.wait_for_function("() => document.getElementById('event-state').textContent === 'This event has ended.'",
                                 timeout=15_000)
    assert not await page.is_visible("#player-notice")
    assert errors == []
