"""A BigBlueButton recording's spoken words found by search, end to end: BBB's "video" playback is an MP4 whose
sound is espeak-ng speaking Korean (the language of the Vosk test model); the lecturer, who said in their profile
that they lecture in Korean, imports it in one click from /dashboard/bigbluebutton; the import path transcribes it
like any upload, and the catalog's search finds a spoken word and returns the recording at that moment."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bbb import servers as srv
from bbb.deposit import BBB_DEPOSIT
from live_server.db import DB
from live_server.models import BbbImport
from tests.bbb.fake_bbb import SECRET, FakeBbb, FakeRecording
from tests.captions.speech import SPEECH_TEXT, Speech, ko_model, ko_registry, ko_speech  # noqa: F401  (fixtures)
from tests.captions.transcribing import spoken_video, transcribing_app, transcribing_settings, transcription_job  # noqa: F401  (fixture)

SPOKEN_AT = 1.0
HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]{2,}")


async def test_a_bbb_recording_is_transcribed_and_found_by_a_spoken_word(
        aiohttp_client: Any, transcribing_settings: Any, ko_registry: Any, ko_speech: Speech, tmp_path: Path) -> None:
    live = await transcribing_app(aiohttp_client, transcribing_settings(), ko_registry)
    profile = await live.client.post("/profile", allow_redirects=False, data={
        "display_name": "Prof", "language": "", "transcription_language": "ko", "csrf_token": live.csrf})
    assert profile.status == 303
    bbb = await FakeBbb(SECRET, spoken_video(ko_speech, tmp_path, seconds=5.0, at=(SPOKEN_AT,))).start()
    try:
        bbb.recordings.append(FakeRecording("rec-algo-1", "moodle-course-42", "Algorithms week 1", {"live-server-owner": "prof"}))
        server_id = live.app[DB].transaction(lambda s: srv.add_server(s, "campus", bbb.api_url, SECRET, "sha256").id)
        assert "Algorithms week 1" in await (await live.client.get("/dashboard/bigbluebutton")).text()
        started = time.monotonic()
        click = await live.client.post("/dashboard/bigbluebutton/import", allow_redirects=False, data={
            "csrf_token": live.csrf, "server": str(server_id), "record": "rec-algo-1"})
        assert click.status == 303 and click.headers["Location"] == "/dashboard/bigbluebutton?done=import"
        await live.app[BBB_DEPOSIT].settled()
    finally:
        await bbb.close()
    [recording_id] = live.app[DB].transaction(lambda s: [i.recording_id for i in s.query(BbbImport)])
    job = await transcription_job(live, recording_id, ("done", "failed"))
    print(f"BBB recording (5 s of speech) from the click to a transcribed replay: {time.monotonic() - started:.2f} s")
    assert job["state"] == "done" and job["language"] == "ko" and job["trigger"] == "import", job

    captions = (await (await live.client.get(f"/api/v1/recordings/{recording_id}/replay")).json())["captions"]
    spoken = [w for w in HANGUL_WORD.findall(" ".join(c["text"] for c in captions)) if w in SPEECH_TEXT]
    # what the test model hears in espeak-ng's voice is rough: the word searched for is a piece of the sentence said
    assert spoken, captions
    found = await (await live.client.get("/api/v1/search", params={"q": spoken[0]})).json()
    [hit] = found["results"]
    assert hit["recording"]["id"] == recording_id and hit["recording"]["title"].startswith("Algorithms week 1 (")
    assert hit["title_match"] is False  # found by what was said
    onset = SPOKEN_AT + ko_speech.onset
    assert any(spoken[0] in m["text"] and abs(m["start"] - onset) < 1.5 for m in hit["matches"]), (hit["matches"], onset)
    page = await (await live.client.get("/search", params={"q": spoken[0]})).text()  # the site's search page too
    ref = hit["recording"]["page_url"].rsplit("/", 1)[-1]
    assert f'/recordings/{ref}#t=' in page  # each moment links to the replay at that time
