"""Issue 17 (9): unlisted means "only with the link". Sequential ids do not find unlisted events or
recordings (for anyone but their owner); their links carry an unguessable part."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp


async def _status(client: Any, path: str) -> int:
    resp = await client.get(path, allow_redirects=False)
    await resp.read()
    return int(resp.status)


async def test_unlisted_events_and_recordings_are_not_found_by_counting(live: Live, aiohttp_client: Any) -> None:
    event = await live.create_event(title="Office hours", visibility="unlisted")
    assert re.fullmatch(r"office-hours-[0-9a-f]{16}", event["slug"]), event["slug"]
    stranger = await aiohttp_client(live.client.server)
    eid, slug = event["id"], event["slug"]
    for path in (f"/api/v1/events/{eid}", f"/events/{eid}", f"/api/v1/events/{eid}/chat/messages",
                 f"/api/v1/events/{eid}/transcript", f"/api/v1/events/{eid}/chapters", f"/api/v1/recordings?event={eid}",
                 "/api/v1/events/office-hours", "/events/office-hours"):
        assert await _status(stranger, path) == 404, path
    for path in (f"/api/v1/events/{slug}", f"/events/{slug}", f"/api/v1/events/{slug}/chat/messages"):
        assert await _status(stranger, path) == 200, path
    assert await _status(live.client, f"/api/v1/events/{eid}") == 200  # the owner keeps the id

    pusher = await push_rtmp(live.publish_url(event), frames=20)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    [recording] = (await (await live.client.get(f"/api/v1/recordings?event={eid}")).json())["recordings"]
    rid = recording["id"]
    assert recording["visibility"] == "unlisted" and recording["state"] == "ready"
    public = recording["page_url"].rsplit("/", 1)[1]
    assert public != str(rid) and len(public) >= 16
    assert recording["playback_url"].endswith(f"/vod/{public}/master.m3u8")
    for path in (f"/recordings/{rid}", f"/vod/{rid}/master.m3u8", f"/vod/{rid}/vod.m3u8", f"/api/v1/recordings/{rid}",
                 f"/api/v1/recordings/{rid}/replay", f"/embed/recordings/{rid}"):
        assert await _status(stranger, path) == 404, path
    for path in (f"/recordings/{public}", f"/vod/{public}/master.m3u8", f"/vod/{public}/vod.m3u8",
                 f"/api/v1/recordings/{public}", f"/api/v1/recordings/{public}/replay", f"/embed/recordings/{public}"):
        assert await _status(stranger, path) == 200, path
    assert await _status(live.client, f"/vod/{rid}/master.m3u8") == 200  # the owner keeps the id

    # A listed event made unlisted gets a new, unguessable slug: its old link stops working.
    listed = await live.create_event(title="Seminar")
    resp = await live.client.patch(f"/api/v1/events/{listed['id']}", json={"visibility": "unlisted"},
                                   headers={"X-CSRF-Token": live.csrf})
    changed = await resp.json()
    assert changed["slug"] != listed["slug"] and changed["slug"].startswith("seminar-")
    assert await _status(stranger, f"/events/{listed['slug']}") == 404
    assert await _status(stranger, f"/events/{changed['slug']}") == 200
