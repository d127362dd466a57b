"""The transcription queue in the catalog: one row per job, every state change one transaction.

Each function takes a SQLAlchemy ``Session`` (run it with ``Database.run``) and the time, so the
rules are tested on both catalogs without a clock. A job is claimed with ``SELECT ... FOR UPDATE
SKIP LOCKED`` on PostgreSQL (two workers never take the same row and never wait on each other)
and, on SQLite, which has no row locks but serializes writers, with a compare-and-set ``UPDATE ...
WHERE state = 'queued'``; both backends also run that compare-and-set, so a row is claimed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from live_server.models import (
    CaptionSegment, CaptionTrack, CaptionTrackVersion, Event, JobState, Recording, RecordingState, TranscriptionJob, User,
)

from .cues import Cue

__all__ = [
    "ACTIVE", "ClaimedJob", "JobConflict", "enqueue", "claim", "heartbeat", "finish", "fail", "release", "cancel",
    "requeue_stale", "fail_orphans", "latest_job", "owner_jobs", "has_captions", "auto_language", "job_json", "time_left",
]

ACTIVE = (JobState.QUEUED, JobState.RUNNING)
TRIGGERS = ("import", "live_ended", "request")


class JobConflict(Exception):
    """The recording already has a queued or running transcription."""


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    recording_id: int
    event_id: int | None
    language: str
    media_path: str
    storage_url: str | None
    attempts: int
    worker: str


def _active(session: Session, recording_id: int) -> TranscriptionJob | None:
    return session.scalar(select(TranscriptionJob).where(TranscriptionJob.recording_id == recording_id,
                                                         TranscriptionJob.state.in_(ACTIVE)).limit(1))


def enqueue(session: Session, recording_id: int, language: str, trigger: str, requested_by_id: int | None,
            now: datetime) -> TranscriptionJob:
    """A queued job; raises :class:`JobConflict` when one is already queued or running for the recording."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    if _active(session, recording_id) is not None:
        raise JobConflict("this recording is already being transcribed")
    job = TranscriptionJob(recording_id=recording_id, language=language, trigger=trigger, requested_by_id=requested_by_id,
                           state=JobState.QUEUED, created_at=now, progress_seconds=0.0, total_seconds=0.0, attempts=0,
                           cues=0)
    session.add(job)
    session.flush()
    return job


def claim(session: Session, worker: str, now: datetime) -> ClaimedJob | None:
    """The oldest queued job of a ready recording, now ``running`` for ``worker`` (None when there is none)."""
    query = (select(TranscriptionJob.id)
             .join(Recording, Recording.id == TranscriptionJob.recording_id)
             .where(TranscriptionJob.state == JobState.QUEUED, Recording.state == RecordingState.READY,
                    or_(TranscriptionJob.not_before.is_(None), TranscriptionJob.not_before <= now))
             .order_by(TranscriptionJob.created_at, TranscriptionJob.id).limit(1))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=TranscriptionJob)
    job_id = session.scalar(query)
    if job_id is None:
        return None
    taken = session.execute(
        update(TranscriptionJob).where(TranscriptionJob.id == job_id, TranscriptionJob.state == JobState.QUEUED)
        .values(state=JobState.RUNNING, worker=worker, attempts=TranscriptionJob.attempts + 1, started_at=now,
                heartbeat_at=now, progress_seconds=0.0, finished_at=None)
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another worker took it between the read and the write (SQLite)
    job = session.get(TranscriptionJob, job_id, populate_existing=True)
    recording = session.get(Recording, job.recording_id) if job is not None else None
    if job is None or recording is None:
        return None
    job.total_seconds = recording.duration_seconds  # a first estimate; the worker sets the full timeline's
    return ClaimedJob(job.id, recording.id, recording.event_id, job.language, recording.media_path, recording.storage_url,
                      job.attempts, worker)


def _mine(session: Session, job_id: int, worker: str) -> TranscriptionJob | None:
    job = session.get(TranscriptionJob, job_id, populate_existing=True)
    return job if job is not None and job.state == JobState.RUNNING and job.worker == worker else None


def heartbeat(session: Session, job_id: int, worker: str, progress: float, total: float | None, now: datetime) -> bool:
    """Save the progress; False when the job is no longer this worker's (cancelled, or re-queued as stale)."""
    job = _mine(session, job_id, worker)
    if job is None:
        return False
    job.progress_seconds = round(progress, 3)
    if total:
        job.total_seconds = round(total, 3)
    job.heartbeat_at = now
    return True


def finish(session: Session, job: ClaimedJob, cues: list[Cue], audio_seconds: float, real_time_factor: float | None,
           now: datetime) -> bool:
    """The transcript becomes the recording's caption track, in the same transaction as the job's end:
    the previous track is replaced, and search (FTS5 triggers, PostgreSQL GIN indexes) follows the rows."""
    row = _mine(session, job.id, job.worker)
    if row is None or session.get(Recording, job.recording_id) is None:
        return False
    # The automatic track's rows only: uploaded tracks (rows with a track_id) stay. Versions of the automatic
    # track saved in the caption editor were corrections of the transcript this one replaces: they go too.
    session.execute(delete(CaptionSegment).where(CaptionSegment.recording_id == job.recording_id,
                                                 CaptionSegment.track_id.is_(None))
                    .execution_options(synchronize_session=False))
    automatic = session.scalar(select(CaptionTrack).where(CaptionTrack.automatic_of == job.recording_id))
    if automatic is not None:
        session.execute(delete(CaptionSegment).where(CaptionSegment.track_id == automatic.id)
                        .execution_options(synchronize_session=False))
        session.execute(delete(CaptionTrackVersion).where(CaptionTrackVersion.track_id == automatic.id)
                        .execution_options(synchronize_session=False))
        automatic.published_version, automatic.language, automatic.origin = 0, job.language, "transcription"
    elif cues:  # the recording's first automatic captions: their track (vod.tracks lists it)
        session.add(CaptionTrack(recording_id=job.recording_id, language=job.language, kind="captions", label="",
                                 origin="transcription", automatic_of=job.recording_id))
    session.add_all(CaptionSegment(event_id=job.event_id, recording_id=job.recording_id, language=job.language,
                                   start_seconds=c.start, end_seconds=c.end, text=c.text, created_at=now) for c in cues)
    row.state, row.finished_at, row.heartbeat_at = JobState.DONE, now, now
    row.progress_seconds = row.total_seconds = round(audio_seconds, 3)
    row.cues, row.real_time_factor, row.error = len(cues), (round(real_time_factor, 4) if real_time_factor else None), None
    return True


def fail(session: Session, job: ClaimedJob, reason: str, now: datetime, max_attempts: int, retry_seconds: float,
         final: bool = False) -> JobState | None:
    """A failed attempt: queued again after ``retry_seconds`` while attempts remain, else ``failed``; the
    reason is kept either way. Returns the new state (None when the job is no longer this worker's)."""
    row = _mine(session, job.id, job.worker)
    if row is None:
        return None
    row.error = reason[:2000]
    row.heartbeat_at = now
    if final or row.attempts >= max_attempts:
        row.state, row.finished_at = JobState.FAILED, now
    else:
        row.state, row.not_before, row.worker = JobState.QUEUED, now + timedelta(seconds=retry_seconds), None
    return row.state


def release(session: Session, job: ClaimedJob) -> bool:
    """The server stops mid-job: back to the queue, and this attempt does not count."""
    row = _mine(session, job.id, job.worker)
    if row is None:
        return False
    row.state, row.worker, row.attempts = JobState.QUEUED, None, max(0, row.attempts - 1)
    return True


def cancel(session: Session, recording_id: int, now: datetime) -> TranscriptionJob | None:
    """Cancel the recording's queued or running job (its worker sees it at its next heartbeat)."""
    job = _active(session, recording_id)
    if job is None:
        return None
    job.state, job.finished_at = JobState.CANCELLED, now
    return job


def requeue_stale(session: Session, now: datetime, stale_seconds: float, node: str | None = None) -> list[int]:
    """Running jobs whose worker is gone go back to the queue: those of ``node`` (this process starts,
    so none of its jobs can still run) and any without a heartbeat for ``stale_seconds``."""
    dead = TranscriptionJob.heartbeat_at < now - timedelta(seconds=stale_seconds)
    if node is not None:
        dead = or_(dead, TranscriptionJob.worker.like(node.replace("%", r"\%").replace("_", r"\_") + " %", escape="\\"))
    ids = list(session.scalars(select(TranscriptionJob.id).where(TranscriptionJob.state == JobState.RUNNING, dead)))
    if ids:
        session.execute(update(TranscriptionJob).where(TranscriptionJob.id.in_(ids), TranscriptionJob.state == JobState.RUNNING)
                        .values(state=JobState.QUEUED, worker=None).execution_options(synchronize_session=False))
    return ids


def fail_orphans(session: Session, now: datetime) -> int:
    """Queued jobs of recordings that will never be ready (a failed import) fail, with the reason."""
    ids = list(session.scalars(select(TranscriptionJob.id).join(Recording, Recording.id == TranscriptionJob.recording_id)
                               .where(TranscriptionJob.state == JobState.QUEUED, Recording.state == RecordingState.FAILED)))
    if ids:
        session.execute(update(TranscriptionJob).where(TranscriptionJob.id.in_(ids))
                        .values(state=JobState.FAILED, finished_at=now, error="the recording could not be imported")
                        .execution_options(synchronize_session=False))
    return len(ids)


def latest_job(session: Session, recording_id: int) -> TranscriptionJob | None:
    return session.scalar(select(TranscriptionJob).where(TranscriptionJob.recording_id == recording_id)
                          .order_by(TranscriptionJob.created_at.desc(), TranscriptionJob.id.desc()).limit(1))


def owner_jobs(session: Session, owner_id: int, limit: int) -> list[tuple[TranscriptionJob, Recording]]:
    """Each recording's latest job of this owner, when queued, running or failed (what still needs them)."""
    rows = session.execute(select(TranscriptionJob, Recording).join(Recording, Recording.id == TranscriptionJob.recording_id)
                           .where(Recording.owner_id == owner_id)
                           .order_by(TranscriptionJob.created_at.desc(), TranscriptionJob.id.desc()).limit(limit * 4)).all()
    seen: set[int] = set()
    found: list[tuple[TranscriptionJob, Recording]] = []
    for job, recording in rows:
        if recording.id in seen:
            continue
        seen.add(recording.id)
        if job.state in (*ACTIVE, JobState.FAILED):
            found.append((job, recording))
    return found[:limit]


def has_captions(session: Session, recording: Recording) -> bool:
    """Whether the recording already has a caption track (its own rows, or its event's live captions not yet handed over)."""
    owned = CaptionSegment.recording_id == recording.id
    if recording.event_id is not None:
        owned = or_(owned, (CaptionSegment.event_id == recording.event_id) & CaptionSegment.recording_id.is_(None))
    edited = exists().where(CaptionTrack.automatic_of == recording.id, CaptionTrack.published_version > 0)
    return bool(session.scalar(select(exists().where(owned, CaptionSegment.track_id.is_(None))))) \
        or bool(session.scalar(select(edited)))


def auto_language(session: Session, recording_id: int, languages: set[str]) -> str | None:
    """The language to transcribe a recording in without being asked, or None: a ready recording with no
    caption track and no job yet, in its event's caption language (the live captions did not happen) or
    else its owner's transcription language, when a model is configured for it."""
    recording = session.get(Recording, recording_id)
    if recording is None or recording.state != RecordingState.READY or has_captions(session, recording):
        return None
    if session.scalar(select(exists().where(TranscriptionJob.recording_id == recording_id))):
        return None
    event = session.get(Event, recording.event_id) if recording.event_id is not None else None
    owner = session.get(User, recording.owner_id)
    for language in (event.caption_language if event is not None else None,
                     owner.transcription_language if owner is not None else None):
        if language and language in languages:
            return language
    return None


def time_left(progress: float, total: float, started_at: datetime | None, now: datetime) -> float | None:
    """Seconds until the job ends at its pace so far (None before there is a pace to go by)."""
    if started_at is None or progress <= 0 or total <= 0:
        return None
    elapsed = (now - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return max(0.0, (total - progress) * elapsed / progress)


def job_json(job: TranscriptionJob, now: datetime) -> dict[str, Any]:
    total = job.total_seconds or 0.0
    running = job.state == JobState.RUNNING
    return {
        "id": job.id,
        "recording_id": job.recording_id,
        "language": job.language,
        "state": job.state.value,
        "trigger": job.trigger,
        "progress_seconds": round(job.progress_seconds, 1),
        "total_seconds": round(total, 1),
        "fraction": round(min(1.0, job.progress_seconds / total), 4) if total > 0 else (1.0 if job.state == JobState.DONE else 0.0),
        "seconds_left": (round(left) if (left := time_left(job.progress_seconds, total, job.started_at, now)) is not None
                         else None) if running else None,
        "attempts": job.attempts,
        "error": job.error,
        "cues": job.cues,
        "real_time_factor": job.real_time_factor,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
