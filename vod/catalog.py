"""The catalog of recordings: it persists the recorder's events and manages recordings afterwards.

``RecordingCatalog`` is the recorder's ``RecordingSink`` (rows for its events, a thumbnail from
the first segment) and the one service that changes recording rows and their folders together:
edit, trim (rewrites the playable view), delete (files and rows, nothing orphaned), recovery
after a crash, retention.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live_server.db import Database
from live_server.errors import Conflict, ServiceError, Unprocessable
from live_server.layout import live_run_of_recording
from live_server.models import CaptionSegment, Event, Recording, RecordingState, Visibility, utcnow
from recorder.events import RecordingFinished, RecordingStarted, SegmentCompleted
from recorder.storage import DOWNLOAD, MASTER, THUMBNAIL, RecordingFiles, TrimError

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


class RecordingCatalog:
    """Recording rows and the folders they point to; one owner for both."""

    def __init__(self, db: Database, media_dir: Path, ffmpeg: str) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ffmpeg = ffmpeg
        self._tasks: set[asyncio.Task[Any]] = set()
        self._download_locks: dict[int, asyncio.Lock] = {}

    def files(self, media_path: str) -> RecordingFiles:
        return RecordingFiles(self.media_dir / media_path)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- RecordingSink ---------------------------------------------------------------------
    async def recording_started(self, started: RecordingStarted) -> int | None:
        def work(session: Session) -> int | None:
            event = session.get(Event, started.event_id)
            if event is None or not event.record:
                return None
            row = Recording(
                event_id=event.id, owner_id=event.owner_id, title=event.title, description=event.description or "",
                visibility=event.visibility, state=RecordingState.RECORDING, media_path=started.media_path,
                created_at=started.started_at,
            )
            session.add(row)
            session.flush()
            return row.id

        return await self.db.run(work)

    def segment_completed(self, completed: SegmentCompleted) -> None:
        if completed.index == 0:
            self._spawn(self._thumbnail(completed.recording_id, completed.path))

    async def recording_finished(self, finished: RecordingFinished) -> None:
        def work(session: Session) -> None:
            row = session.get(Recording, finished.recording_id)
            if row is None:
                return
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

        await self.db.run(work)

    async def _thumbnail(self, recording_id: int, segment: Path) -> None:
        output = segment.parent / THUMBNAIL
        try:
            await make_thumbnail(self.ffmpeg, segment, output)
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
                master = live_run_of_recording(self.media_dir, media_path) / MASTER
                try:
                    text = master.read_text(encoding="utf-8") if master.exists() else None
                    summary = await loop.run_in_executor(None, files.finalize, segments, text, None)
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
            if summary is not None and not (files.folder / THUMBNAIL).exists():
                await self._thumbnail(recording_id, files.folder / segments[0].uri)
            log.warning("recording %d was still recording when the server stopped; recovered %d segments (%.1f s)",
                        recording_id, len(segments), summary.duration_seconds if summary else 0.0)
            recovered.append(recording_id)
        return recovered

    async def apply_retention(self, days: int) -> list[int]:
        """Delete finished recordings older than ``days`` (opt-in policy: days > 0)."""
        if days <= 0:
            return []
        cutoff = utcnow() - timedelta(days=days)

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
        def work(session: Session) -> Recording:
            row = session.get(Recording, recording_id)
            assert row is not None
            fields = data.model_fields_set
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
                    offset, duration = self.files(row.media_path).write_view(start, end)
                except TrimError as exc:
                    raise Unprocessable(f"invalid recording: {exc}") from None
                # Stored snapped to the segment boundaries actually kept: every offset shifts by trim_start.
                row.trim_start, row.duration_seconds = offset, duration
                row.trim_end = round(offset + duration, 3) if end is not None else None
            session.flush()
            return row

        return await self.db.run(work)

    async def delete(self, recording_id: int) -> str | None:
        """Rows and files together: the folder is moved aside inside the transaction, removed after it."""
        trash: list[Path] = []

        def work(session: Session) -> str | None:
            row = session.get(Recording, recording_id)
            if row is None:
                return None
            if row.state == RecordingState.RECORDING:
                raise Conflict("the recording is in progress; end the live event first")
            media_path = row.media_path
            session.delete(row)
            session.flush()  # foreign keys checked before any file moves
            folder = self.media_dir / media_path
            if media_path and folder.is_dir():
                aside = folder.with_name(f".deleted-{folder.name}")
                os.replace(folder, aside)
                trash.append(aside)
            return media_path

        try:
            media_path = await self.db.run(work)
        except BaseException:
            for aside in trash:  # the rows stayed: put the files back
                if aside.exists():
                    os.replace(aside, aside.with_name(aside.name.removeprefix(".deleted-")))
            raise
        for aside in trash:
            await asyncio.get_running_loop().run_in_executor(None, RecordingFiles(aside).delete)
        self._download_locks.pop(recording_id, None)
        return media_path

    async def download(self, recording: Recording) -> Path:
        """The MP4 of the playable view: a remux made once (again after a trim), then served as a file."""
        files = self.files(recording.media_path)
        output = files.folder / DOWNLOAD
        lock = self._download_locks.setdefault(recording.id, asyncio.Lock())
        async with lock:
            if not output.exists():
                segments = await asyncio.get_running_loop().run_in_executor(None, files.view_segments)
                if not segments:
                    raise Conflict("the recording has no playable media")
                try:
                    await remux_mp4(self.ffmpeg, [files.folder / s.uri for s in segments], output)
                except (FfmpegFailed, OSError) as exc:
                    log.error("recording %d: MP4 remux failed: %s", recording.id, exc)
                    raise MediaToolFailed("the MP4 could not be made; try again later") from None
        return output

