"""The transcription queue in the catalog, on SQLite and PostgreSQL: claims, retries, cancel, recovery."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from captions import transcription_jobs as jobs
from captions.cues import Cue
from live_server.db import Database
from live_server.models import CaptionSegment, CaptionTrack, JobState, Recording, RecordingState, TranscriptionJob
from tests.support import Account

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _recording(db: Database, owner: int, state: RecordingState = RecordingState.READY) -> int:
    def work(session: Session) -> int:
        row = Recording(owner_id=owner, title="Lecture", state=state, media_path="recordings/imported/x",
                        duration_seconds=120.0)
        session.add(row)
        session.flush()
        return row.id

    return db.transaction(work)


def _job(db: Database, job_id: int) -> TranscriptionJob:
    job = db.transaction(lambda s: s.get(TranscriptionJob, job_id))
    assert job is not None
    return job


@pytest.fixture
def owner(make_user: Callable[..., Account]) -> int:
    return make_user("lecturer").id


def test_one_active_job_per_recording_and_claims_in_order(db: Database, owner: int) -> None:
    first, second, failed_import = _recording(db, owner), _recording(db, owner), _recording(db, owner, RecordingState.FAILED)
    processing = _recording(db, owner, RecordingState.PROCESSING)
    a = db.transaction(lambda s: jobs.enqueue(s, first, "fr", "request", owner, T0).id)
    with pytest.raises(jobs.JobConflict):
        db.transaction(lambda s: jobs.enqueue(s, first, "en", "request", owner, T0))
    b = db.transaction(lambda s: jobs.enqueue(s, second, "en", "import", None, T0 + timedelta(seconds=1)).id)
    db.transaction(lambda s: jobs.enqueue(s, processing, "en", "import", None, T0 - timedelta(seconds=5)))
    orphan = db.transaction(lambda s: jobs.enqueue(s, failed_import, "en", "import", None, T0).id)

    claimed = db.transaction(lambda s: jobs.claim(s, "node-a 1 #0", T0))
    assert claimed is not None and claimed.id == a and claimed.attempts == 1  # the processing one waits for its import
    assert db.transaction(lambda s: jobs.claim(s, "node-a 1 #1", T0)).id == b  # type: ignore[union-attr]
    assert db.transaction(lambda s: jobs.claim(s, "node-a 1 #2", T0)) is None
    assert db.transaction(lambda s: jobs.fail_orphans(s, T0)) == 1
    assert _job(db, orphan).state == JobState.FAILED and "imported" in (_job(db, orphan).error or "")


def test_a_failure_is_retried_then_failed_with_its_reason(db: Database, owner: int) -> None:
    recording = _recording(db, owner)
    job_id = db.transaction(lambda s: jobs.enqueue(s, recording, "fr", "request", owner, T0).id)
    now = T0
    for attempt in (1, 2, 3):
        claimed = db.transaction(lambda s: jobs.claim(s, "w 1 #0", now))
        assert claimed is not None and claimed.attempts == attempt
        state = db.transaction(lambda s: jobs.fail(s, claimed, f"broken {attempt}", now, 3, 60.0))
        row = _job(db, job_id)
        assert row.error == f"broken {attempt}"
        if attempt < 3:
            assert state == JobState.QUEUED and row.state == JobState.QUEUED
            assert db.transaction(lambda s: jobs.claim(s, "w 1 #0", now + timedelta(seconds=59))) is None  # backoff
            now += timedelta(seconds=60)
        else:
            assert state == JobState.FAILED and row.state == JobState.FAILED and row.finished_at is not None
    assert db.transaction(lambda s: jobs.claim(s, "w 1 #0", now + timedelta(days=1))) is None


def test_cancel_and_a_worker_that_finds_out(db: Database, owner: int) -> None:
    recording = _recording(db, owner)
    db.transaction(lambda s: jobs.enqueue(s, recording, "fr", "request", owner, T0))
    claimed = db.transaction(lambda s: jobs.claim(s, "w 1 #0", T0))
    assert claimed is not None
    assert db.transaction(lambda s: jobs.heartbeat(s, claimed.id, claimed.worker, 30.0, 120.0, T0)) is True
    assert db.transaction(lambda s: jobs.cancel(s, recording, T0)) is not None
    assert db.transaction(lambda s: jobs.heartbeat(s, claimed.id, claimed.worker, 40.0, 120.0, T0)) is False
    # A transcript finished after the cancel is thrown away: no caption row.
    assert db.transaction(lambda s: jobs.finish(s, claimed, [Cue(1.0, 2.0, ("bonjour",))], 120.0, 0.1, T0)) is False
    assert db.transaction(lambda s: s.scalars(select(CaptionSegment)).all()) == []
    assert _job(db, claimed.id).state == JobState.CANCELLED
    assert db.transaction(lambda s: jobs.cancel(s, recording, T0)) is None  # nothing active any more
    db.transaction(lambda s: jobs.enqueue(s, recording, "fr", "request", owner, T0))  # may be asked again


def test_jobs_of_a_dead_worker_are_queued_again(db: Database, owner: int) -> None:
    recordings = [_recording(db, owner) for _ in range(3)]
    for r in recordings:
        db.transaction(lambda s: jobs.enqueue(s, r, "fr", "request", owner, T0))
    mine = db.transaction(lambda s: jobs.claim(s, "node_a:8080 4242 #0", T0))  # this node, before a restart
    other = db.transaction(lambda s: jobs.claim(s, "nodeXa:8080 77 #0", T0))  # another node: "_" is no wildcard
    silent = db.transaction(lambda s: jobs.claim(s, "node-b 9 #0", T0 - timedelta(minutes=10)))
    assert mine and other and silent
    requeued = db.transaction(lambda s: jobs.requeue_stale(s, T0 + timedelta(seconds=5), 120.0, "node_a:8080"))
    assert sorted(requeued) == sorted([mine.id, silent.id])
    assert _job(db, other.id).state == JobState.RUNNING
    again = db.transaction(lambda s: jobs.claim(s, "node_a:8080 4243 #0", T0 + timedelta(seconds=6)))
    assert again is not None and again.id in requeued and again.attempts == 2


def test_a_transcript_replaces_the_track_in_one_transaction(db: Database, owner: int) -> None:
    recording = _recording(db, owner)
    db.transaction(lambda s: s.add(CaptionSegment(event_id=None, recording_id=recording, language="fr",
                                                  start_seconds=0.0, end_seconds=1.0, text="ancien")))
    db.transaction(lambda s: jobs.enqueue(s, recording, "fr", "request", owner, T0))
    claimed = db.transaction(lambda s: jobs.claim(s, "w 1 #0", T0))
    assert claimed is not None
    cues = [Cue(1.0, 2.5, ("bonjour à tous",)), Cue(3.0, 4.0, ("algorithmes",))]
    assert db.transaction(lambda s: jobs.finish(s, claimed, cues, 119.5, 0.08, T0 + timedelta(seconds=10))) is True
    rows = db.transaction(lambda s: [(c.start_seconds, c.text) for c in s.scalars(
        select(CaptionSegment).where(CaptionSegment.recording_id == recording).order_by(CaptionSegment.start_seconds))])
    assert rows == [(1.0, "bonjour à tous"), (3.0, "algorithmes")]
    automatic = db.transaction(lambda s: [(t.language, t.kind, t.origin, t.automatic_of) for t in s.scalars(
        select(CaptionTrack).where(CaptionTrack.recording_id == recording))])
    assert automatic == [("fr", "captions", "transcription", recording)]  # made with the transcript, not when listed
    job = _job(db, claimed.id)
    assert job.state == JobState.DONE and job.cues == 2 and job.progress_seconds == job.total_seconds == 119.5
    body = jobs.job_json(job, T0)
    assert body["fraction"] == 1.0 and body["seconds_left"] is None and body["real_time_factor"] == 0.08


def test_time_left_follows_the_pace_so_far() -> None:
    assert jobs.time_left(30.0, 120.0, T0, T0 + timedelta(seconds=10)) == pytest.approx(30.0)
    assert jobs.time_left(0.0, 120.0, T0, T0 + timedelta(seconds=10)) is None
    assert jobs.time_left(120.0, 120.0, T0, T0 + timedelta(seconds=40)) == 0.0


def test_postgresql_two_workers_never_claim_one_job_twice(postgres_url: str, make_settings: Callable[..., object]) -> None:
    """SKIP LOCKED: a job claimed in an open transaction is skipped by the other worker, which does not wait;
    then many workers race over many jobs and each job is claimed exactly once."""
    from live_server import migrations, accounts

    migrations.upgrade(postgres_url)
    db = Database(postgres_url)
    try:
        owner = db.transaction(lambda s: accounts.create_user(s, "prof", "prof-password", "lecturer")).id
        recordings = [_recording(db, owner) for _ in range(24)]
        for i, r in enumerate(recordings):
            db.transaction(lambda s: jobs.enqueue(s, r, "fr", "request", None, T0 + timedelta(seconds=i)))

        held = db.sessions()
        held.begin()
        first = jobs.claim(held, "w-held", T0 + timedelta(hours=1))  # not committed: its row stays locked
        assert first is not None and first.recording_id == recordings[0]
        other = db.transaction(lambda s: jobs.claim(s, "w-other", T0 + timedelta(hours=1)))  # returns at once
        assert other is not None and other.recording_id == recordings[1]
        held.commit()
        held.close()

        claimed: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def worker(name: str) -> None:
            start.wait()
            while (job := db.transaction(lambda s: jobs.claim(s, name, T0 + timedelta(hours=1)))) is not None:
                with lock:
                    claimed.append(job.id)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(claimed) == 22 and len(set(claimed)) == 22
        states = db.transaction(lambda s: [j.state for j in s.scalars(select(TranscriptionJob))])
        assert states == [JobState.RUNNING] * 24
    finally:
        db.close()
