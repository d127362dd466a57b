"""The replay page's Audience tab in Chromium: a real recording, watch beacons counted by the collector, the
heatmap's table equal to the API's buckets; a click on a bar seeks the video there, and so does a "Play from"
button reached with the keyboard alone; axe-core (WCAG 2.0/2.1 A and AA, every impact) finds nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from audience.collector import AUDIENCE
from audience.ranges import Beacon
from tests.audience.watching import axe
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (the `live` fixture)
from tests.media import FAST, push_rtmp
from tests.web.browsing import new_page, open_context

AT = "() => document.getElementById('replay').currentTime"


@pytest.mark.live_settings(audience_bucket_seconds=1, audience_flush_seconds=300, audience_beacon_seconds=7,
                           audience_beacon_max_ranges=9)
async def test_the_heatmap_seeks_the_replay_and_matches_the_api(live: Live, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    event = await live.create_event(title="Heatmap lecture")
    pusher = await push_rtmp(live.publish_url(event), frames=70, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 30) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")

    async def ready() -> Any:
        body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json()
        return next((r for r in body["recordings"] if r["state"] == "ready"), None)
    rid = (await wait_for(ready, 20, "the recording"))["id"]

    # two replay viewers: one watched the first 6 s, the other rewatched 2-4 s
    audience = live.app[AUDIENCE]
    audience.watched(rid, event["id"], "viewer-one", None, Beacon(((0.0, 6.0),)))
    audience.watched(rid, event["id"], "viewer-two", None, Beacon(((2.0, 4.0),)))
    assert await audience.flush() > 0
    body = await (await live.client.get(f"/api/v1/recordings/{rid}/audience")).json()
    views = [b["views"] for b in body["heatmap"]]
    assert views[:6] == [1, 1, 2, 2, 1, 1] and body["most_watched"] == 2

    owner = await open_context(browser, str(live.client.make_url("")).rstrip("/"), live.lecturer)
    page, errors = await new_page(owner)
    await page.goto(f"/recordings/{rid}")
    cells = await page.eval_on_selector_all("#chart-heatmap tbody td", "cells => cells.map(c => c.textContent.trim())")
    assert cells == [str(v) for v in views]
    assert await page.inner_text("#audience [data-figure=viewers]") == str(body["viewers"]["total"]) == "2"
    assert "starts at 0:02 (2 views)" in await page.inner_text("#chart-heatmap figcaption")
    # the player's beacons are paced and bounded by the settings, handed over on the video element
    beacon = await page.eval_on_selector("#replay", "v => [v.dataset.beaconSeconds, v.dataset.beaconMaxRanges, "
                                                    "v.dataset.beaconMaxSeconds]")
    assert [float(x) for x in beacon] == [7, 9, 7 * 4 + 60]
    # replay viewers joining and leaving: both started in the same minute
    joins = await page.eval_on_selector_all("#chart-joins tbody tr", "rows => rows.map(r => "
                                            "Array.from(r.children).map(c => c.textContent.trim()))")
    assert sum(int(r[1]) for r in joins) == 2 == sum(int(r[2]) for r in joins), joins
    assert joins == [[joins[0][0], "2", "2"]]  # one minute: both sessions began and ended in it
    assert "Viewers who joined: 2." in await page.inner_text("#chart-joins figcaption")
    await page.wait_for_function("() => document.getElementById('replay').readyState >= 1", timeout=15_000)

    # a click on the bar of 0:03 seeks there
    await page.click("#chart-heatmap rect[data-seek='3']")
    await page.wait_for_function(f"() => Math.abs(({AT})() - 3) < 0.5", timeout=10_000)

    # keyboard only: the table's toggle, then its "Play from 0:05" button
    await page.focus("#chart-heatmap summary")
    await page.keyboard.press("Enter")
    for _ in range(8):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.seek === '5'"):
            break
    assert await page.evaluate("document.activeElement.textContent") == "Play from 0:05–0:06"
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"() => Math.abs(({AT})() - 5) < 0.5", timeout=10_000)
    assert await page.evaluate("document.activeElement.id") == "replay"  # focus goes to the video it moved

    assert await axe(page, "#audience") == []
    await page.locator("#audience").screenshot(path=tmp_path / "audience-replay.png")  # an artifact to look at
    assert errors == []

    # viewers of the replay get no tab and no script of it
    viewer = await open_context(browser, str(live.client.make_url("")).rstrip("/"))
    other, _errors = await new_page(viewer)
    await other.goto(f"/recordings/{rid}")
    assert await other.locator("#audience").count() == 0
