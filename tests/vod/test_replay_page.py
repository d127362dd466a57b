"""A student opens the replay page in Chromium: hls.js plays the VOD, chapters list, chat replays in sync."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

from live_server.db import DB
from live_server.models import ChatMessage
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp


async def test_replay_page_plays_with_chapters_and_chat(live: Live, browser: Any) -> None:
    event = await live.create_event(title="Replayed lecture")
    pusher = await push_rtmp(live.publish_url(event), frames=40)
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    resp = await live.client.post(f"/api/v1/events/{event['id']}/chapters", json={"title": "Welcome"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 201
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 10, "ended")
    body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json()
    [recording] = body["recordings"]
    index = (live.settings.media_dir / recording["media_path"] / "index.m3u8").read_text()
    first_wall = datetime.fromisoformat(re.search(r"PROGRAM-DATE-TIME:(\S+)", index).group(1).replace("Z", "+00:00"))  # type: ignore[union-attr]
    live.app[DB].transaction(lambda s: s.add(ChatMessage(
        event_id=event["id"], user_id=live.lecturer.id, text="Hello replay", created_at=first_wall + timedelta(seconds=1.5))))

    # A title typed by a lecturer is text, never markup: escaped in the chapters track.
    resp = await live.client.post(f"/api/v1/recordings/{recording['id']}/chapters",
                                  json={"title": "<script>&</script>", "offset": 2.0}, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 201, await resp.text()
    vtt = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/chapters.vtt")).text()
    assert "\n&lt;script&gt;&amp;&lt;/script&gt;\n" in vtt and "<script>" not in vtt

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(live.client.make_url(f"/recordings/{recording['id']}")))
    await page.wait_for_selector("#replay-chapters li")
    assert "Welcome" in await page.inner_text("#replay-chapters")
    assert "<script>&</script>" in await page.inner_text("#replay-chapters")
    # Chromium's own WebVTT parser shows the cue as that text, with no element in it.
    cue = await page.evaluate("""async () => {
        const track = [...document.getElementById('replay').textTracks].find(t => t.kind === 'chapters');
        track.mode = 'hidden';
        for (let i = 0; i < 100 && !(track.cues && track.cues.length === 2); i++) await new Promise(r => setTimeout(r, 50));
        const html = [...track.cues].find(c => c.startTime === 2).getCueAsHTML();
        return {text: html.textContent, elements: html.querySelectorAll('*').length};
    }""")
    assert cue == {"text": "<script>&</script>", "elements": 0}
    assert "Hello replay" not in await page.inner_text("#replay-chat")  # not yet: it was said at 1.5 s
    await page.evaluate("() => { const v = document.getElementById('replay'); v.muted = true; v.play(); }")
    await page.wait_for_function(
        "() => { const v = document.getElementById('replay'); return v.readyState >= 3 && v.currentTime > 2; }",
        timeout=20_000,
    )
    assert "Hello replay" in await page.inner_text("#replay-chat")
    assert await page.evaluate("document.getElementById('replay').duration") > 3.5
    assert errors == []
