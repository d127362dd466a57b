"""hls.js on the event page plays a stream whose encoder kept libx264's default keyframe interval.

10 s between keyframes makes 10 s segments and a TARGETDURATION of 10: the page must go from
waiting to playing at the first segment. Real time here: what is tested is live playback.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (the `live` fixture)
from tests.media import push_with_defaults, stop
from tests.web.browsing import new_page, open_context

PLAYING = "() => { const v = document.getElementById('player'); return v.readyState >= 3 && v.currentTime > 1.5; }"


# Plain HLS, where the GOP sets how far behind players sit (three TARGETDURATIONs); the LL-HLS page with the
# same encoder is tests/ingest/test_ll_hls.py's (parts every 0.334 s whatever the GOP).
@pytest.mark.live_settings(ll_hls=False)
async def test_the_event_page_plays_a_10_second_gop_live(live: Live, browser: Any) -> None:  # noqa: F811
    event = await live.create_event(dvr=False)
    viewer = await open_context(browser, str(live.client.make_url("")).rstrip("/"))
    page, errors = await new_page(viewer)
    await page.goto(f"/events/{event['slug']}")
    pusher = await push_with_defaults(live.publish_url(event), seconds=40, readrate=1.0)  # still pushing while the page is checked
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "live after the first 10 s segment")
        playlist = await (await live.client.get(f"/live/{event['slug']}/source/live.m3u8")).text()
        assert "#EXT-X-TARGETDURATION:10\n" in playlist and re.search(r"#EXTINF:10\.0\d+,", playlist), playlist
        await page.wait_for_function(PLAYING, timeout=20_000)
        assert await page.inner_text("#event-state") == "Live now."
        assert errors == []
    finally:
        await stop(pusher)
