"""A word spoken in a live lecture is found in the recording's transcript, at the time it was said."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.captions.speech import Speech, push_track, speech_track
from tests.ingest.live import Live, event_state_is, wait_for

HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]{2,}")
SPEECH_AT = 2.0


async def test_search_finds_a_spoken_word_at_its_time_in_the_replay(captioned: Live, ko_speech: Speech,
                                                                     tmp_path: Any) -> None:
    live = captioned
    event = await live.create_event(caption_language="ko", title="Algorithms")
    pusher = await push_track(live.publish_url(event), speech_track(ko_speech, [SPEECH_AT], 8.0, tmp_path))
    assert await asyncio.wait_for(pusher.wait(), 40) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 30, "the event to end")

    async def ready() -> Any:
        body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}&state=ready")).json()
        return body["recordings"][0] if body["recordings"] else None
    recording = await wait_for(ready, 15, "the recording")
    replay = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/replay")).json()
    captions = replay["captions"]
    assert captions, "the replay carries the live captions"
    onset = SPEECH_AT + ko_speech.onset
    assert abs(captions[0]["start"] - onset) < 1.0, (captions[0], onset)  # lines up with the pushed timeline

    word = HANGUL_WORD.search(" ".join(c["text"] for c in captions))
    assert word is not None, captions
    body = await (await live.client.get("/api/v1/search", params={"q": word.group(0)})).json()
    [hit] = [r for r in body["results"] if r["recording"]["id"] == recording["id"]]
    assert any(abs(m["start"] - onset) < 1.0 and word.group(0) in m["text"] for m in hit["matches"]), hit["matches"]
