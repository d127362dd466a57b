"""Chromium plays a real recording on its replay page, then seeks back and plays again: the page's watch
beacons (web/static/watch-beacon.js) become the recording's heatmap, the replayed part counted twice."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from audience.collector import AUDIENCE
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (fixture)
from tests.media import push_rtmp


@pytest.mark.live_settings(audience_bucket_seconds=1, audience_flush_seconds=300)
async def test_playing_and_seeking_in_chromium_fills_the_heatmap(live: Live, browser: Any) -> None:  # noqa: F811
    event = await live.create_event(title="Replayed lecture")
    pusher = await push_rtmp(live.publish_url(event), frames=40)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "ended")
    body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json()
    [recording] = body["recordings"]

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/recordings/{recording['id']}")))
    await page.evaluate("() => { const v = document.getElementById('replay'); v.muted = true; v.playbackRate = 2; v.play(); }")
    await page.wait_for_function("() => document.getElementById('replay').ended", timeout=20_000)
    duration = await page.evaluate("document.getElementById('replay').duration")
    await page.evaluate("() => { const v = document.getElementById('replay'); v.currentTime = 1; v.play(); }")
    await page.wait_for_function("() => { const v = document.getElementById('replay'); return v.ended && v.played.length }",
                                 timeout=20_000)

    last = math.ceil(duration) - 1  # the last, partial bucket may be rounded either way
    deadline = time.monotonic() + 10
    while True:  # beacons are sent on pause and end; they arrive shortly after
        await live.app[AUDIENCE].flush()
        heatmap = (await (await live.client.get(f"/api/v1/recordings/{recording['id']}/audience")).json())["heatmap"]
        views = [b["views"] for b in heatmap]
        if len(views) > last and views[0] >= 1 and all(v >= 2 for v in views[1:last]) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert duration > 3 and views[0] == 1, views  # played once from the start
    assert views[1:last] == [2] * (last - 1), views  # played, then replayed after the seek to 1 s
    assert errors == []
    await page.close()
