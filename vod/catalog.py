"""The catalog of recordings: it persists the recorder's events and manages recordings afterwards.

``RecordingCatalog`` is the recorder's ``RecordingSink`` (rows for its events, a thumbnail from
the first segment) and the one service that changes recording rows and their folders together:
edit, trim (rewrites the playable view), delete (files and rows, nothing orphaned), recovery
after a crash, retention. A recording moved to object storage (``vod/archive.py``) keeps its
playlists here as a cached copy; trim, download and delete then also act on its objects. Work on
one recording's media (upload, trim, remux, delete) is serialised by a per-recording lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live_server.db import Database
from live_server.errors import Conflict, ServiceError, Unprocessable
from live_server.layout import delete_live_run, live_runs
from live_server.models import CaptionSegment, Event, EventState, Recording, RecordingState, Visibility, new_access_secret, utcnow
from formats.m3u8 import Segment
from recorder.recording_events import PublisherChanged, RecordingFinished, RecordingStarted, SegmentCompleted
from recorder.storage import RecordingFiles, TrimError

from . import tracks
from .objects import LocalDiskStore, RecordingStores, StoredRecording, StoreUnavailable
from .tools import FfmpegFailed, make_thumbnail, remux_mp4

log = logging.getLogger(__name__)


class MediaToolFailed(ServiceError):
    status, code = 503, "media_tool_failed"


class RecordingUpdate(BaseModel):
    """What owners may change (PATCH /api/v1/recordings/{id})."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20000)
    visibility: Visibility | None = None
    trim_start: float | None = Field(None, ge=0)
    trim_end: float | None = Field(None, gt=0)


@dataclass
class LivePosition:
    """Where a recording in progress stands, kept from the recorder's events (chapters marked live)."""

    event_id: int
    recording_id: int
    segment_seconds: float
    recorded_seconds: float = 0.0
    media_end: datetime | None = None  # wall clock of the end of the last recorded segment
    publishing: bool = True

    def at(self, now: float) -> float:
        """Where wall-clock ``now`` falls on the recording's timeline: past its last segment by the time
        since that segment's media ended, while the publisher is there (at most three segments ahead)."""
        if not self.publishing or self.media_end is None:
            return self.recorded_seconds
        ahead = now - self.media_end.timestamp()
        return self.recorded_seconds + min(max(ahead, 0.0), 3 * self.segment_seconds)


class RecordingCatalog:
    """Recording rows and the folders they point to; one owner for both."""

    def __init__(self, db: Database, media_dir: Path, ffmpeg: str, stores: RecordingStores | None = None) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ffmpeg = ffmpeg
        self.stores = stores or RecordingStores(LocalDiskStore(media_dir))
        self.ready_listeners: list[Callable[[int], None]] = []  # told the id of each recording that became ready
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thumbnails: dict[int, asyncio.Future[Any]] = {}
        self._media_locks: dict[int, asyncio.Lock] = {}
        self._live: dict[int, LivePosition] = {}  # by recording id, while the recorder records it

    def files(self, media_path: str) -> RecordingFiles:
        """A recording's folder: the only way this catalog reads, writes or deletes its files."""
        return RecordingFiles.of(self.media_dir, media_path)

    def media_lock(self, recording_id: int) -> asyncio.Lock:
        """Serialises work on one recording's media: upload, trim, MP4 remux, delete."""
        return self._media_locks.setdefault(recording_id, asyncio.Lock())

    async def thumbnail_made(self, recording_id: int) -> None:
        """Wait for the thumbnail being made from the first segment, if any (before an upload)."""
        task = self._thumbnails.get(recording_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def journal_segments(self, media_path: str, storage_url: str | None) -> list[Segment]:
        """The recording's segments with their wall clocks (blocking): the local journal, else its object."""
        files = self.files(media_path)
        segments = files.journal_segments(require_files=storage_url is None)
        if segments or not storage_url:
            return segments
        try:
            store, location = self.stores.of(storage_url)
            return files.remote_journal(StoredRecording(store, location or ""))
        except Exception as exc:  # the replay still works, its chat just cannot be placed by wall clock
            log.warning("recordings: journal of %s not read from object storage: %s", media_path, exc)
            return []

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any]) -> "asyncio.Future[Any]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- RecordingSink ---------------------------------------------------------------------
    async def recording_started(self, started: RecordingStarted) -> int | None:
        def work(session: Session) -> int | None:
            event = session.get(Event, started.event_id)
            if event is None or not event.record:
                return None
            row = Recording(
                event_id=event.id, owner_id=event.owner_id, title=event.title, description=event.description or "",
                visibility=event.visibility, state=RecordingState.RECORDING, media_path=started.media_path,
                created_at=started.started_at, lti_context_id=event.lti_context_id,  # a course event's replay: its course's
            )
            session.add(row)
            session.flush()
            return row.id

        recording_id = await self.db.run(work)
        if recording_id is not None:
            self._live[recording_id] = LivePosition(started.event_id, recording_id, started.segment_seconds)
        return recording_id

    def segment_completed(self, completed: SegmentCompleted) -> None:
        position = self._live.get(completed.recording_id)
        if position is not None:
            position.recorded_seconds = completed.start_seconds + completed.duration
            position.media_end = completed.media_end
        if completed.index == 0:
            files = RecordingFiles.containing(completed.path)
            task = self._spawn(self._thumbnail(completed.recording_id, files, completed.path, completed.init))
            self._thumbnails[completed.recording_id] = task
            task.add_done_callback(lambda _: self._thumbnails.pop(completed.recording_id, None))

    def publisher_changed(self, changed: PublisherChanged) -> None:
        position = self._live.get(changed.recording_id)
        if position is not None:
            position.publishing = changed.publishing

    def stream_time(self, event_id: int, now: float | None = None) -> tuple[int, float] | None:
        """(recording id, current position on its timeline) while the event is being recorded here."""
        position = next((p for p in self._live.values() if p.event_id == event_id), None)
        if position is None:
            return None
        return position.recording_id, position.at(time.time() if now is None else now)

    async def recording_finished(self, finished: RecordingFinished) -> None:
        self._live.pop(finished.recording_id, None)

        def work(session: Session) -> bool:
            row = session.get(Recording, finished.recording_id)
            if row is None:
                return False
            row.ended_at = finished.ended_at
            row.duration_seconds = finished.duration_seconds
            row.size_bytes = finished.size_bytes
            row.discontinuities = finished.discontinuities
            if finished.error:
                row.state, row.error = RecordingState.FAILED, finished.error
            else:
                row.state, row.ready_at = RecordingState.READY, utcnow()
            if row.event_id is not None:
                # Captions of the run belong to its recording from now on (the next run makes a new one).
                session.execute(update(CaptionSegment)
                                .where(CaptionSegment.event_id == row.event_id, CaptionSegment.recording_id.is_(None))
                                .values(recording_id=row.id))
            tracks.ensure_automatic(session, row)  # the run's live captions are the recording's automatic track
            return row.state == RecordingState.READY

        if await self.db.run(work):
            self.became_ready(finished.recording_id)

    def became_ready(self, recording_id: int) -> None:
        """Tell the listeners (the archiver) that a recording is ready; they must not block."""
        for listener in self.ready_listeners:
            try:
                listener(recording_id)
            except Exception:
                log.exception("recording %d: a ready listener raised", recording_id)

    async def _thumbnail(self, recording_id: int, files: RecordingFiles, segment: Path, init: Path | None) -> None:
        output = files.thumbnail
        try:
            await make_thumbnail(self.ffmpeg, segment, output, init)
        except (FfmpegFailed, OSError) as exc:
            log.warning("recording %d: no thumbnail: %s", recording_id, exc)
            return
        relative = output.relative_to(self.media_dir).as_posix()

        def work(session: Session) -> None:
            row = session.get(Recording, recording_id)
            if row is not None:
                row.thumbnail_path = relative

        await self.db.run(work)

    # --- recovery and retention ------------------------------------------------------------
    async def recover(self) -> list[int]:
        """Finalize recordings a crash left in "recording": from what reached disk, nothing less."""
        def pending(session: Session) -> list[tuple[int, str]]:
            rows = session.scalars(select(Recording).where(
                Recording.state.in_([RecordingState.RECORDING, RecordingState.PROCESSING])))
            return [(r.id, r.media_path) for r in rows]

        recovered = []
        loop = asyncio.get_running_loop()
        for recording_id, media_path in await self.db.run(pending):
            files = self.files(media_path)
            segments = await loop.run_in_executor(None, files.journal_segments)
            error = None
            summary = None
            if segments:
                try:
                    summary = await loop.run_in_executor(None, files.finalize_recovered, segments)
                except OSError as exc:
                    error = f"recovery could not write the playlists: {exc}"
            else:
                error = "the server stopped before any media reached the recording"
            last = segments[-1] if segments else None
            ended = utcnow()
            if last is not None and last.program_date_time is not None:
                ended = last.program_date_time + timedelta(seconds=last.duration)
            await self.recording_finished(RecordingFinished(
                recording_id, ended, summary.segments if summary else 0,
                summary.duration_seconds if summary else 0.0, summary.size_bytes if summary else 0,
                summary.discontinuities if summary else 0, error if summary is None else None,
            ))
            if summary is not None and not files.thumbnail.exists():
                await self._thumbnail(recording_id, files, files.path_of(segments[0]), files.init_of(segments[0]))
            log.warning("recording %d was still recording when the server stopped; recovered %d segments (%.1f s)",
                        recording_id, len(segments), summary.duration_seconds if summary else 0.0)
            recovered.append(recording_id)
        return recovered

    async def apply_retention(self, days: int, now: datetime | None = None) -> list[int]:
        """Delete finished recordings older than ``days``, and live run folders as old (opt-in policy: days > 0)."""
        if days <= 0:
            return []
        cutoff = (now or utcnow()) - timedelta(days=days)
        await self.clean_live_runs(cutoff)

        def old(session: Session) -> list[int]:
            return list(session.scalars(select(Recording.id).where(
                Recording.created_at < cutoff, Recording.state.in_([RecordingState.READY, RecordingState.FAILED]))))

        deleted = []
        for recording_id in await self.db.run(old):
            if await self.delete(recording_id) is not None:
                deleted.append(recording_id)
        if deleted:
            log.info("retention: deleted %d recordings older than %d days", len(deleted), days)
        return deleted

    async def clean_live_runs(self, started_before: datetime) -> int:
        """Remove live run folders started before the cutoff, except the run of an event live now.

        A live run's folder is the live copy of its segments (the recording holds hard links of its
        own): nothing else ever removes it, so without this the media disk only fills.
        """
        def live_now(session: Session) -> set[tuple[int, datetime]]:
            rows = session.execute(select(Event.id, Event.started_at).where(Event.state == EventState.LIVE)).all()
            return {(event_id, started) for event_id, started in rows if started is not None}

        current = await self.db.run(live_now)
        loop = asyncio.get_running_loop()
        runs = await loop.run_in_executor(None, live_runs, self.media_dir)
        removed = 0
        for event_id, started, folder in runs:
            if started < started_before and (event_id, started) not in current:
                await loop.run_in_executor(None, delete_live_run, folder)
                removed += 1
        if removed:
            log.info("retention: removed %d live run folders", removed)
        return removed

    async def retention_loop(self, days: int, interval_seconds: float) -> None:
        """Apply the retention policy now and then; a failing round is logged and retried."""
        while True:
            try:
                await self.apply_retention(days)
            except Exception:
                log.exception("retention: a round failed")
            await asyncio.sleep(interval_seconds)

    # --- management ------------------------------------------------------------------------
    async def update(self, recording_id: int, data: RecordingUpdate) -> Recording:
        """Apply an owner's edit; a trim rewrites the playable view in the same unit of work."""
        if {"trim_start", "trim_end"} & data.model_fields_set:
            async with self.media_lock(recording_id):  # not while it is being uploaded or remuxed
                return await self._update(recording_id, data)
        return await self._update(recording_id, data)

    async def _update(self, recording_id: int, data: RecordingUpdate) -> Recording:
        def work(session: Session) -> Recording:
            row = session.get(Recording, recording_id)
            assert row is not None
            fields = data.model_fields_set
            if "visibility" in fields and data.visibility is not None and data.visibility != row.visibility:
                row.access_secret = new_access_secret()  # media passes granted before are void (access.Target)
            for name in ("title", "visibility", "description"):
                if name in fields:
                    value = getattr(data, name)
                    if value is None:
                        raise Unprocessable(f"invalid recording: {name}: may not be null")
                    setattr(row, name, value)
            if row.visibility == Visibility.PASSWORD:
                event = session.get(Event, row.event_id) if row.event_id is not None else None
                if event is None or not event.password_hash:
                    raise Unprocessable("invalid recording: visibility: a password-protected recording uses its "
                                        "event's password; give the event one first")
            if "trim_start" in fields or "trim_end" in fields:
                if row.state != RecordingState.READY:
                    raise Conflict("only a ready recording can be trimmed")
                start = data.trim_start if "trim_start" in fields else row.trim_start
                end = data.trim_end if "trim_end" in fields else row.trim_end
                start = start or 0.0
                if end is not None and end <= start:
                    raise Unprocessable("invalid recording: trim_end must be after trim_start")
                try:
                    offset, duration = self._write_view(row, start, end)
                except TrimError as exc:
                    raise Unprocessable(f"invalid recording: {exc}") from None
                # Stored snapped to the segment boundaries actually kept: every offset shifts by trim_start.
                row.trim_start, row.duration_seconds = offset, duration
                row.trim_end = round(offset + duration, 3) if end is not None else None
            session.flush()
            return row

        return await self.db.run(work)

    def _write_view(self, row: Recording, start: float, end: float | None) -> tuple[float, float]:
        """The trimmed view on disk and, for an archived recording, in its objects (blocking)."""
        files = self.files(row.media_path)
        if not row.storage_url:
            return files.trim(start, end)
        try:
            return files.trim(start, end, self._stored(row.storage_url))
        except (TrimError, ServiceError):
            raise
        except Exception as exc:  # the row keeps the old trim: so does the cached copy (trim put it back)
            log.error("recording %d: trim not stored in object storage: %s", row.id, exc)
            raise MediaToolFailed("the object store did not take the trim; try again later") from None

    def _stored(self, storage_url: str) -> StoredRecording:
        """The objects of an archived recording; 503 when this server cannot reach its store."""
        try:
            store, location = self.stores.of(storage_url)
        except StoreUnavailable as exc:
            log.error("recordings: %s", exc)
            raise MediaToolFailed("the recording's storage is not reachable from this server") from None
        return StoredRecording(store, location or "")

    async def delete(self, recording_id: int) -> str | None:
        """Rows, files and objects together: the folder is moved aside inside the transaction and removed
        after it; objects are deleted inside it (a failure keeps the row, so nothing is orphaned)."""
        async with self.media_lock(recording_id):  # an upload in flight finishes first
            media_path = await self._delete(recording_id)
        self._media_locks.pop(recording_id, None)
        return media_path

    async def _delete(self, recording_id: int) -> str | None:
        trash: list[Path] = []  # the recording's folder and the live run it was made from, set aside
        leftovers: list[str] = []

        def work(session: Session) -> str | None:
            row = session.get(Recording, recording_id)
            if row is None:
                return None
            if row.state == RecordingState.RECORDING:
                raise Conflict("the recording is in progress; end the live event first")
            media_path = row.media_path
            storage_url = row.storage_url
            session.delete(row)
            session.flush()  # foreign keys checked before any file moves
            if storage_url:
                stored = self._stored(storage_url)
                try:
                    stored.store.delete(stored.location)
                except Exception as exc:
                    log.error("recording %d: objects at %s not deleted: %s", recording_id, stored.location, exc)
                    raise MediaToolFailed("the object store did not delete the media; try again later") from None
            elif media_path and self.stores.target is not None:
                leftovers.append(self.stores.target.location(media_path))  # a failed upload's partial objects
            if media_path:  # nothing of it stays served or on disk
                trash.extend(self.files(media_path).set_aside())
            return media_path

        try:
            media_path = await self.db.run(work)
        except BaseException:
            RecordingFiles.put_back(trash)  # the rows stayed: so do the files
            raise
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, RecordingFiles.remove_aside, trash)
        target = self.stores.target
        for location in leftovers:
            if target is not None:
                try:
                    await loop.run_in_executor(None, target.delete, location)
                except Exception as exc:  # the row never pointed there: log for the operator, carry on
                    log.warning("recording %d: could not clear partial upload at %s: %s", recording_id, location, exc)
        return media_path

    async def download(self, recording: Recording, filename: str) -> Path | str:
        """The MP4 of the playable view: a remux made once (again after a trim) and kept beside the
        segments. Returns the file to send or, for a recording in object storage, a presigned URL
        (its segments are fetched into a scratch folder for the remux, the MP4 stored as an object)."""
        async with self.media_lock(recording.id):
            storage_url = await self.db.run(lambda s: s.scalar(select(Recording.storage_url).where(Recording.id == recording.id)))
            if storage_url:
                return await self._download_url(recording, storage_url, filename)
            files = self.files(recording.media_path)
            output = files.download
            if not output.exists():
                loop = asyncio.get_running_loop()
                segments = await loop.run_in_executor(None, files.view_segments)
                if not segments:
                    raise Conflict("the recording has no playable media")
                inputs: list[Path] = []
                try:
                    inputs = await loop.run_in_executor(None, files.remux_inputs, segments)
                    audio = await loop.run_in_executor(None, files.remux_audio, segments)
                    await remux_mp4(self.ffmpeg, inputs, output, audio=audio)
                except (FfmpegFailed, OSError) as exc:
                    log.error("recording %d: MP4 remux failed: %s", recording.id, exc)
                    raise MediaToolFailed("the MP4 could not be made; try again later") from None
                finally:
                    await loop.run_in_executor(None, files.discard_remux_inputs, inputs)
        return output

    async def _download_url(self, recording: Recording, storage_url: str, filename: str) -> str:
        stored = self._stored(storage_url)
        files = self.files(recording.media_path)
        loop = asyncio.get_running_loop()
        try:
            made = await loop.run_in_executor(None, files.remote_download, stored)
        except Exception as exc:
            log.error("recording %d: object storage unreachable: %s", recording.id, exc)
            raise MediaToolFailed("the recording's storage is not reachable; try again later") from None
        if not made:
            await self._remux_from_store(recording, files, stored)
        url = files.remote_download_url(stored, filename)
        if url is None:
            raise MediaToolFailed("the recording's storage gives no download link")
        return url

    async def _remux_from_store(self, row: Recording, files: RecordingFiles, stored: StoredRecording) -> None:
        loop = asyncio.get_running_loop()
        scratch = self.media_dir / ".downloads" / f"{row.id}-{secrets.token_hex(4)}"
        try:
            segments, output = await loop.run_in_executor(None, files.fetch_view, stored, scratch)
            if not segments:
                raise Conflict("the recording has no playable media")
            audio = await loop.run_in_executor(None, lambda: files.remux_audio(files.view_segments(), scratch))
            await remux_mp4(self.ffmpeg, segments, output, audio=audio)
            await loop.run_in_executor(None, files.store_download, stored, scratch)
        except ServiceError:
            raise
        except (FfmpegFailed, OSError) as exc:
            log.error("recording %d: MP4 remux from object storage failed: %s", row.id, exc)
            raise MediaToolFailed("the MP4 could not be made; try again later") from None
        except Exception as exc:  # the store's own errors (botocore)
            log.error("recording %d: object storage failed during the MP4 remux: %s", row.id, exc)
            raise MediaToolFailed("the MP4 could not be made; try again later") from None
        finally:
            await loop.run_in_executor(None, shutil.rmtree, scratch, True)


RECORDINGS = web.AppKey("recordings", RecordingCatalog)  # the app's catalog (tests run retention)
