"""Transcription of recordings: the asyncio shell over the catalog queue and the blocking transcriber.

``Transcriptions`` runs ``transcription_workers`` worker tasks per process. Each claims one job at
a time from the catalog (``transcription_jobs``), runs ``transcriber.transcribe`` on its own
low-priority thread (the event loop never blocks), saves progress and checks for a cancel every
``transcription_progress_seconds``, and writes the transcript as the recording's caption track.
Jobs survive restarts: at start-up the jobs this node left running are queued again, and any job
whose worker stopped giving signs of life is too. Jobs queued by other processes are found by
polling; those queued here wake a worker at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import accounts
from live_server.db import Database
from live_server.models import JobState, Recording, utcnow
from live_server.metrics import Metrics
from live_server.settings import Settings

from . import transcription_jobs as jobs
from .decoder import recording_decoder_args
from .recognizer import StreamRecognizer
from .transcriber import Control, TranscriptionFailed, TranscriptionStopped, lower_priority, transcribe
from .vosk_models import ModelRegistry, ModelUnavailable

log = logging.getLogger(__name__)

__all__ = ["AudioSource", "RecordingAudio", "LiveBacklog", "Transcriptions", "TRANSCRIPTIONS"]


@dataclass(frozen=True)
class AudioSource:
    """A recording's audio as ffmpeg reads it: its full playlist (local files), and its length in seconds;
    ``cleanup`` removes what was fetched for the job (a recording in object storage), once it has ended."""

    playlist: Path
    seconds: float
    cleanup: Callable[[], None] | None = None


class RecordingAudio(Protocol):
    """Where a recording's playlist is (``recorder.storage.RecordingFiles``, wired in the app factory)."""

    def audio_source(self, media_path: str, storage_url: str | None) -> AudioSource:
        """Blocking; raises ``TranscriptionFailed`` with a reason for the owner when there is none."""


class LiveBacklog(Protocol):
    """How far behind the live caption streams of this process are (``LiveCaptions``)."""

    def backlog_seconds(self) -> float: ...


class Transcriptions:
    """The transcription workers of this process and the requests that feed them."""

    def __init__(self, settings: Settings, db: Database, registry: ModelRegistry, ffmpeg: str, audio: RecordingAudio,
                 live: LiveBacklog | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.db = db
        self.registry = registry
        self.ffmpeg = ffmpeg
        self.audio = audio
        self.live = live
        self.node = settings.effective_node_name
        self.workers = settings.transcription_workers
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Task[Any]] = set()
        self._wakeup = asyncio.Event()
        self._running: dict[int, Control] = {}
        self._closing = False

    @property
    def languages(self) -> set[str]:
        return set(self.registry.paths)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Queue again what this node left running, then start the workers (none when ``transcription_workers`` is 0)."""
        if self.workers <= 0:
            return
        now = utcnow()
        requeued = await self.db.run(lambda s: jobs.requeue_stale(s, now, self.settings.transcription_stale_seconds, self.node))
        if requeued:
            log.info("transcription: %d job(s) left running by a stopped worker queued again: %s", len(requeued), requeued)
        niceness = self.settings.transcription_nice
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="transcribe",
                                            initializer=lower_priority, initargs=(niceness,))
        self._tasks = [asyncio.create_task(self._work(f"{self.node} {os.getpid()} #{i}"), name=f"transcription-{i}")
                       for i in range(self.workers)]

    async def close(self) -> None:
        """Stop: running jobs go back to the queue (their attempt does not count)."""
        self._closing = True
        for control in self._running.values():
            control.stop.set()
        self._wakeup.set()
        if self._tasks:  # a stopped transcriber returns within a chunk; its job is then released
            await asyncio.wait(self._tasks, timeout=10.0)
        for task in [*self._tasks, *self._side]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._side, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    # -- requests -----------------------------------------------------------------------------
    async def request(self, recording_id: int, language: str, trigger: str, requested_by_id: int | None) -> dict[str, Any]:
        """Queue a transcription (raises ``JobConflict`` when one is queued or running); a worker here starts it."""
        now = utcnow()
        body: dict[str, Any] = await self.db.run(
            lambda s: jobs.job_json(jobs.enqueue(s, recording_id, language, trigger, requested_by_id, now), now))
        self._wakeup.set()
        return body

    async def cancel(self, recording_id: int) -> dict[str, Any] | None:
        """Cancel the recording's job; a worker of this process running it stops at once (others at their next heartbeat)."""
        now = utcnow()

        def work(session: Session) -> dict[str, Any] | None:
            job = jobs.cancel(session, recording_id, now)
            return None if job is None else jobs.job_json(job, now)

        body = await self.db.run(work)
        if body is not None and (control := self._running.get(body["id"])) is not None:
            control.stop.set()
        return body

    async def panel(self, recording_id: int, user: Any) -> dict[str, Any] | None:
        """What the recording page shows about transcription, or None when this person may not transcribe it:
        ``{"job": <latest job or None>, "languages": [codes with a model]}``."""
        now, languages = utcnow(), sorted(self.languages)

        def work(session: Session) -> dict[str, Any] | None:
            recording = session.get(Recording, recording_id)
            if recording is None or not accounts.can_process_recording(session, user, recording):
                return None
            job = jobs.latest_job(session, recording_id)
            return {"job": jobs.job_json(job, now) if job is not None else None, "languages": languages}

        return await self.db.run(work)

    async def owner_jobs(self, owner_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The lecturer's dashboard: jobs of their recordings that are queued, running or failed, newest first,
        each with its recording's ``title`` and ``ref`` (how links name it)."""
        now = utcnow()

        def work(session: Session) -> list[dict[str, Any]]:
            return [{**jobs.job_json(job, now), "title": recording.title, "ref": recording.public_ref}
                    for job, recording in jobs.owner_jobs(session, owner_id, limit)]

        return await self.db.run(work)

    def recording_ready(self, recording_id: int) -> None:
        """A recording became ready (an import, or the end of a live run): transcribe it when its event's
        captions did not happen or its owner set a transcription language (``catalog.ready_listeners``)."""
        if self._closing:
            return
        task = asyncio.create_task(self._auto(recording_id), name=f"transcription-auto-{recording_id}")
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _auto(self, recording_id: int) -> None:
        languages, now = self.languages, utcnow()

        def work(session: Session) -> int | None:
            language = jobs.auto_language(session, recording_id, languages)
            if language is None:
                return None
            recording = session.get(Recording, recording_id)
            trigger = "live_ended" if recording is not None and recording.event_id is not None else "import"
            return jobs.enqueue(session, recording_id, language, trigger, None, now).id

        try:
            job_id = await self.db.run(work)
        except jobs.JobConflict:
            return
        except Exception:
            log.exception("transcription: could not queue recording %d", recording_id)
            return
        if job_id is not None:
            log.info("transcription: recording %d queued (job %d)", recording_id, job_id)
            self._wakeup.set()

    # -- workers ------------------------------------------------------------------------------
    async def _work(self, worker: str) -> None:
        poll = self.settings.transcription_poll_seconds
        while not self._closing:
            try:
                now = utcnow()
                claimed = await self.db.run(lambda s: self._claim(s, worker, now))
            except Exception:
                log.exception("transcription: claiming a job failed")
                claimed = None
            if claimed is None:
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), poll)
                continue
            self._wakeup.set()  # another worker may find another job
            await self._run(claimed)

    def _claim(self, session: Session, worker: str, now: datetime) -> jobs.ClaimedJob | None:
        jobs.requeue_stale(session, now, self.settings.transcription_stale_seconds)
        jobs.fail_orphans(session, now)
        return jobs.claim(session, worker, now)

    def _live_behind(self) -> bool:
        return self.live is not None and self.live.backlog_seconds() > self.settings.transcription_yield_seconds

    async def _run(self, job: jobs.ClaimedJob) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        control = Control(live_behind=self._live_behind)
        self._running[job.id] = control
        self._count_running()
        source: AudioSource | None = None
        log.info("transcription: job %d (recording %d, %s) started, attempt %d", job.id, job.recording_id, job.language,
                 job.attempts)
        try:
            source = await asyncio.to_thread(self.audio.audio_source, job.media_path, job.storage_url)
            args = recording_decoder_args(self.ffmpeg, str(source.playlist))
            future = loop.run_in_executor(self._executor, self._transcribe, job.language, args, control)
            while not future.done():
                await asyncio.wait([future], timeout=settings.transcription_progress_seconds)
                now, progress = utcnow(), control.progress_seconds
                ours = await self.db.run(lambda s: jobs.heartbeat(s, job.id, job.worker, progress, source.seconds, now))
                if not ours:
                    control.stop.set()
            transcript = await future
        except TranscriptionStopped:
            if self._closing:
                await self._quietly(lambda s: jobs.release(s, job))
                log.info("transcription: job %d put back in the queue (the server stops)", job.id)
            else:
                log.info("transcription: job %d stopped (cancelled)", job.id)
            self._count("stopped")
            return
        except (TranscriptionFailed, ModelUnavailable, OSError) as exc:
            await self._failed(job, str(exc) or type(exc).__name__, final=isinstance(exc, ModelUnavailable))
            return
        except Exception as exc:  # the catalog was unreachable for a heartbeat, say: the thread must stop too
            control.stop.set()
            log.exception("transcription: job %d failed", job.id)
            await self._failed(job, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._running.pop(job.id, None)
            self._count_running()
            if source is not None and source.cleanup is not None:
                await asyncio.to_thread(source.cleanup)
        now = utcnow()
        done = await self.db.run(lambda s: jobs.finish(s, job, transcript.cues, transcript.audio_seconds,
                                                       transcript.real_time_factor, now))
        if done:
            self._count("done")
            if self.metrics is not None:
                self.metrics.transcribed_audio.inc(transcript.audio_seconds)
            log.info("transcription: job %d done: %d cues for %.1f s of audio (real-time factor %.3f)", job.id,
                     len(transcript.cues), transcript.audio_seconds, transcript.real_time_factor or 0.0)

    def _transcribe(self, language: str, args: list[str], control: Control) -> Any:
        settings = self.settings

        def make() -> StreamRecognizer:
            return StreamRecognizer(self.registry.get(language), None, settings.caption_pause_seconds)

        return transcribe(args, make, control, niceness=settings.transcription_nice)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.transcription_jobs.labels(outcome=outcome).inc()

    def _count_running(self) -> None:
        if self.metrics is not None:
            self.metrics.transcriptions_running.set(len(self._running))

    async def _failed(self, job: jobs.ClaimedJob, reason: str, final: bool = False) -> None:
        self._count("failed")
        settings, now = self.settings, utcnow()
        state = await self._quietly(lambda s: jobs.fail(s, job, reason, now, settings.transcription_attempts,
                                                        settings.transcription_retry_seconds, final))
        log.warning("transcription: job %d (recording %d) attempt %d failed (%s): %s", job.id, job.recording_id,
                    job.attempts, state.value if isinstance(state, JobState) else "not ours any more", reason)

    async def _quietly(self, work: Callable[[Session], Any]) -> Any:
        try:
            return await self.db.run(work)
        except Exception:
            log.exception("transcription: could not record a job's state")
            return None


TRANSCRIPTIONS = web.AppKey("transcriptions", Transcriptions)  # the app's transcription workers, for tests
