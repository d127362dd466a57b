"""The lecturer sees the live stream's health on the event page: status, bitrate, frame rate, keyframes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401 (fixture)
from tests.media import push_rtmp, stop
from tests.web.browsing import check_page, new_page, open_context


async def test_the_owner_sees_stream_health_and_viewers_do_not(live: Live, browser: Any, tmp_path: Path) -> None:
    event = await live.create_event()
    base = str(live.client.make_url("")).rstrip("/")
    lecturer = await open_context(browser, base, live.lecturer)
    page, errors = await new_page(lecturer)
    await page.goto(f"/events/{event['slug']}")
    status = page.locator('#stream-health [data-field="status"]')
    await status.filter(has_text="No encoder connected").wait_for(timeout=10_000)

    pusher = await push_rtmp(live.publish_url(event), seconds=10)
    await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
    await status.filter(has_text="Receiving").wait_for(timeout=15_000)
    await page.locator('#stream-health [data-field="fps"]').filter(has_text=re.compile(r"^(8|9|10|11|12)(\.\d+)? frames/s$")).wait_for(timeout=10_000)
    bitrate = await page.locator('#stream-health [data-field="bitrate"]').text_content()
    assert bitrate and int(bitrate.split()[0]) > 10, bitrate
    assert await page.locator('#stream-health [data-field="protocol"]').text_content() == "RTMP"
    assert await page.locator('#stream-health [data-field="gop"]').text_content() == "1 s"
    assert await page.locator('#stream-health [data-field="gop_advice"]').is_hidden()  # 1 s = the segment length
    assert await page.locator('#stream-health [data-field="captions"]').text_content() == "Off"
    assert not await check_page(page, tmp_path / "screenshots", "stream-health")
    assert errors == []

    anonymous = await open_context(browser, base)
    viewer_page, _ = await new_page(anonymous)
    await viewer_page.goto(f"/events/{event['slug']}")
    assert await viewer_page.locator("#stream-health").count() == 0
    await stop(pusher)


async def test_a_long_keyframe_interval_gets_a_plain_recommendation(live: Live, browser: Any) -> None:
    """3 s between keyframes with 1 s segments: the panel says what to set, and why."""
    event = await live.create_event()
    base = str(live.client.make_url("")).rstrip("/")
    lecturer = await open_context(browser, base, live.lecturer)
    page, errors = await new_page(lecturer)
    await page.goto(f"/events/{event['slug']}")
    pusher = await push_rtmp(live.publish_url(event), seconds=10, gop_seconds=3.0)
    try:
        await page.locator('#stream-health [data-field="gop"]').filter(has_text="3 s").wait_for(timeout=15_000)
        advice = page.locator('#stream-health [data-field="gop_advice"]')
        await advice.filter(has_text="Set the keyframe interval to 1 s for lower delay").wait_for(timeout=5_000)
        assert await advice.is_visible()
        health = (await live.event(event["id"]))["stream"]["health"]
        assert health["recommended_keyframe_interval_seconds"] == 1.0 and health["healthy"] is True
        assert errors == []
    finally:
        await stop(pusher)
