"""Transcribing recordings end to end: real ffmpeg, the real Vosk test model, espeak-ng speech at known times."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from captions.transcription import TRANSCRIPTIONS
from live_server import accounts
from live_server.db import DB
from live_server.models import CaptionSegment, JobState, Recording, RecordingState, TranscriptionJob
from tests.captions.speech import Speech, speech_track
from tests.ingest.live import Live, wait_for
from tests.captions.transcribing import (SPEECH_AT, spoken_video, transcribing_app, transcribing_settings,  # noqa: F401  (fixture)
                                        transcription_job)
from tests.media import FAST

HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]{2,}")


async def _import(live: Live, path: Path, **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", path.read_bytes(), filename=path.name, content_type="video/mp4")
    return await live.client.post("/api/v1/recordings/import", data=form, headers={"X-CSRF-Token": live.csrf})


async def test_an_imported_lecture_is_transcribed_and_searchable(aiohttp_client: Any, transcribing_settings: Any, ko_registry: Any,
                                                                 ko_speech: Speech, tmp_path: Path) -> None:
    live = await transcribing_app(aiohttp_client, transcribing_settings(), ko_registry)
    resp = await _import(live, spoken_video(ko_speech, tmp_path), title="Algorithms", language="ko")
    assert resp.status == 202, await resp.text()
    recording = await resp.json()
    job = await transcription_job(live, recording["id"], ("done", "failed"))
    assert job["state"] == "done", job
    assert job["trigger"] == "import" and job["attempts"] == 1 and job["cues"] >= 1 and job["fraction"] == 1.0
    assert abs(job["total_seconds"] - 8.0) < 0.5 and job["real_time_factor"] > 0  # its figure is the bench's (a loaded box)

    replay = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/replay")).json()
    captions = replay["captions"]
    onset = SPEECH_AT + ko_speech.onset
    assert captions and abs(captions[0]["start"] - onset) < 1.0, (captions, onset)  # within 1 s of the words
    assert captions[-1]["end"] <= SPEECH_AT + ko_speech.offset + 1.5 and {c["language"] for c in captions} == {"ko"}
    vtt = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/captions.vtt")).text()
    assert vtt.startswith("WEBVTT") and captions[0]["text"].split("\n")[0] in vtt
    # The transcript to keep: WebVTT, SubRip, plain text, as attachments named after the recording.
    files = {}
    for kind in ("vtt", "srt", "txt"):
        resp = await live.client.get(f"/api/v1/recordings/{recording['id']}/transcript.{kind}")
        assert resp.status == 200 and resp.headers["Content-Disposition"] == f'attachment; filename="Algorithms.{kind}"'
        files[kind] = await resp.text()
    assert files["vtt"] == vtt
    assert files["srt"].startswith("1\n00:00:0") and f"{len(captions)}\n" in files["srt"] and "," in files["srt"].split("\n")[1]
    assert files["txt"].split() == " ".join(c["text"] for c in captions).split()

    word = HANGUL_WORD.search(" ".join(c["text"] for c in captions))
    assert word is not None, captions
    body = await (await live.client.get("/api/v1/search", params={"q": word.group(0)})).json()
    [hit] = [r for r in body["results"] if r["recording"]["id"] == recording["id"]]
    assert any(abs(m["start"] - onset) < 1.0 and word.group(0) in m["text"] for m in hit["matches"]), hit["matches"]

    # Asked again from the recording page: the new transcript replaces the track (no duplicate rows).
    resp = await live.client.post(f"/api/v1/recordings/{recording['id']}/transcription", json={"language": "ko"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 202 and (await resp.json())["trigger"] == "request"
    await transcription_job(live, recording["id"], ("done",))
    again = await (await live.client.get(f"/api/v1/recordings/{recording['id']}/replay")).json()
    assert [c["text"] for c in again["captions"]] == [c["text"] for c in captions]

    # Refusals: unknown language, another lecturer, no CSRF.
    resp = await live.client.post(f"/api/v1/recordings/{recording['id']}/transcription", json={"language": "xx"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 422
    resp = await live.client.post(f"/api/v1/recordings/{recording['id']}/transcription", json={"language": "ko"})
    assert resp.status == 403
    resp = await _import(live, spoken_video(ko_speech, tmp_path, seconds=2.0), language="xx")
    assert resp.status == 422 and list((live.settings.media_dir / "imports").iterdir()) == []
    stranger = live.app[DB].transaction(lambda s: accounts.create_user(s, "other", "other-password", "lecturer"))
    async with aiohttp.ClientSession(base_url=str(live.client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        csrf = (await (await other.post("/api/v1/auth/login", json={"username": "other", "password": "other-password"})).json())["csrf_token"]
        resp = await other.post(f"/api/v1/recordings/{recording['id']}/transcription", json={"language": "ko"},
                                headers={"X-CSRF-Token": csrf})
        assert resp.status == 404 and stranger.id


async def test_a_job_left_running_by_a_dead_process_resumes_after_a_restart(
        aiohttp_client: Any, transcribing_settings: Any, ko_registry: Any, ko_speech: Speech, tmp_path: Path) -> None:
    first = await transcribing_app(aiohttp_client, transcribing_settings(transcription_workers=0), ko_registry)  # queues, runs nothing
    resp = await _import(first, spoken_video(ko_speech, tmp_path), language="ko")
    recording_id = (await resp.json())["id"]

    async def imported() -> bool:
        return (await (await first.client.get(f"/api/v1/recordings/{recording_id}")).json())["state"] == "ready"
    await wait_for(imported, 30, "the import")
    node = first.settings.effective_node_name
    db = first.app[DB]
    # What a process killed mid-job leaves behind: a running row, claimed by its pid, with a fresh heartbeat.
    db.transaction(lambda s: s.execute(update(TranscriptionJob).values(
        state=JobState.RUNNING, worker=f"{node} 999999 #0", attempts=1, progress_seconds=3.0)))
    await first.client.close()

    second = await transcribing_app(aiohttp_client, transcribing_settings(), ko_registry)
    job = await transcription_job(second, recording_id, ("done", "failed"))
    assert job["state"] == "done" and job["attempts"] == 2 and job["cues"] >= 1, job


async def test_cancel_stops_a_running_job_which_writes_nothing(aiohttp_client: Any, transcribing_settings: Any, ko_registry: Any,
                                                              ko_speech: Speech, tmp_path: Path) -> None:
    live = await transcribing_app(aiohttp_client, transcribing_settings(transcription_workers=0), ko_registry)
    resp = await _import(live, spoken_video(ko_speech, tmp_path, seconds=120.0, at=tuple(range(2, 118, 6))))
    recording_id = (await resp.json())["id"]

    async def imported() -> bool:
        return (await (await live.client.get(f"/api/v1/recordings/{recording_id}")).json())["state"] == "ready"
    await wait_for(imported, 60, "the import")
    transcriptions = live.app[TRANSCRIPTIONS]
    transcriptions.workers = 1
    await transcriptions.start()
    resp = await live.client.post(f"/api/v1/recordings/{recording_id}/transcription", json={"language": "ko"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 202
    running = await transcription_job(live, recording_id, ("running",), timeout=20)
    resp = await live.client.delete(f"/api/v1/recordings/{recording_id}/transcription", headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    job = await transcription_job(live, recording_id, ("cancelled",))
    assert job["fraction"] < 1.0 and running["id"] == job["id"]
    await wait_for(lambda: _idle(transcriptions), 60, "the worker to let go (after the model has loaded)")
    rows = live.app[DB].transaction(lambda s: s.scalars(select(CaptionSegment)).all())
    assert rows == []  # nothing written by the cancelled job
    resp = await live.client.delete(f"/api/v1/recordings/{recording_id}/transcription", headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 404


async def _idle(transcriptions: Any) -> bool:
    return not transcriptions._running


async def test_corrupt_media_fails_after_its_retries_and_the_catalog_is_intact(
        aiohttp_client: Any, transcribing_settings: Any, ko_registry: Any, ko_speech: Speech, tmp_path: Path) -> None:
    live = await transcribing_app(aiohttp_client, transcribing_settings(transcription_attempts=2), ko_registry)
    resp = await _import(live, spoken_video(ko_speech, tmp_path), language="ko")
    recording_id = (await resp.json())["id"]
    done = await transcription_job(live, recording_id, ("done", "failed"))
    assert done["state"] == "done"
    before = await (await live.client.get(f"/api/v1/recordings/{recording_id}/replay")).json()
    assert before["captions"]

    folder = live.settings.media_dir / "recordings" / "imported" / str(recording_id)
    for segment in folder.glob("*.ts"):
        segment.write_bytes(b"\x00garbage, not MPEG-TS" * 500)
    resp = await live.client.post(f"/api/v1/recordings/{recording_id}/transcription", json={"language": "ko"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 202
    job = await transcription_job(live, recording_id, ("failed",))
    assert job["attempts"] == 2 and job["error"] and "ffmpeg" in job["error"], job
    after = await (await live.client.get(f"/api/v1/recordings/{recording_id}/replay")).json()
    assert after["captions"] == before["captions"]  # the old track is kept
    row = live.app[DB].transaction(lambda s: s.get(Recording, recording_id))
    assert row is not None and row.state == RecordingState.READY
    # What the operator's dashboard sees: one attempt done, two failed, the audio transcribed, nothing running.
    samples = {(s.name, s.labels.get("outcome", "")): s.value for family in
               text_string_to_metric_families(await (await live.client.get("/metrics")).text()) for s in family.samples}
    assert samples[("live_transcription_jobs_total", "done")] == 1
    assert samples[("live_transcription_jobs_total", "failed")] == 2
    assert abs(samples[("live_transcribed_audio_seconds_total", "")] - 8.0) < 0.5
    assert samples[("live_transcriptions_running", "")] == 0


@pytest.mark.live_settings(grace_period_seconds=1.0)  # the run ends when its publisher does; how soon is not the subject
async def test_a_live_run_without_captions_is_transcribed_in_the_owners_language(captioned: Live, ko_speech: Speech,
                                                                                  tmp_path: Path) -> None:
    """No caption language on the event, so no live captions; the lecturer's profile says they lecture in
    Korean: when the run ends its recording is transcribed, and the replay has its captions."""
    from tests.captions.speech import push_track
    from tests.ingest.live import event_state_is

    live = captioned
    profile = await (await live.client.get("/profile")).text()
    assert 'id="transcription_language"' in profile
    resp = await live.client.post("/profile", data={"display_name": "Prof", "language": "", "transcription_language": "ko",
                                                    "csrf_token": live.csrf}, allow_redirects=False)
    assert resp.status == 303
    resp = await live.client.post("/profile", data={"display_name": "Prof", "transcription_language": "xx",
                                                    "csrf_token": live.csrf}, allow_redirects=False)
    assert resp.status == 422
    event = await live.create_event(title="Data structures")
    assert event["caption_language"] is None
    # No live captions to keep up with: published at 4x real time (the recording is what is transcribed).
    pusher = await push_track(live.publish_url(event), speech_track(ko_speech, [SPEECH_AT], 8.0, tmp_path), readrate=FAST)
    assert await pusher.wait() == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 30, "the event to end")

    async def recording() -> Any:
        body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}&state=ready")).json()
        return body["recordings"][0] if body["recordings"] else None
    row = await wait_for(recording, 15, "the recording")
    job = await transcription_job(live, row["id"], ("done", "failed"))
    assert job["state"] == "done" and job["trigger"] == "live_ended" and job["language"] == "ko", job
    captions = (await (await live.client.get(f"/api/v1/recordings/{row['id']}/replay")).json())["captions"]
    onset = SPEECH_AT + ko_speech.onset
    assert captions and abs(captions[0]["start"] - onset) < 1.0, (captions, onset)
