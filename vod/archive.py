"""Moves ready recordings to object storage, off the event loop, and frees their local copies.

With ``recording_storage = "s3"`` every recording that becomes ready (a live run, a recovery, an
import) is uploaded in the background: the files in a small thread pool, one recording at a time.
Until the upload has finished the recording plays from local disk; then its row records where it
lives (``storage_url``) and the local media files go (the small playlists stay as a cached copy).
A failed upload keeps the local files, is logged, and is tried again every ``s3_retry_seconds``
and at start; ``live_recording_uploads_pending`` counts what waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from live_server.metrics import Metrics
from live_server.models import Recording, RecordingState

from .catalog import RecordingCatalog
from .objects import S3RecordingStore, StoredRecording

log = logging.getLogger(__name__)


class RecordingArchiver:
    """Uploads ready recordings that are still on local disk; the catalog's ready listener."""

    def __init__(self, catalog: RecordingCatalog, store: S3RecordingStore, metrics: Metrics, retry_seconds: float,
                 on_archived: Callable[[int, str], None] | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.metrics = metrics
        self.retry_seconds = retry_seconds
        self.on_archived = on_archived  # (recording id, media path): drop caches that point at the local files
        self._slot = asyncio.Semaphore(1)  # one recording at a time; its files in parallel (s3_upload_threads)
        self._queued: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # --- scheduling ------------------------------------------------------------------------
    def schedule(self, recording_id: int) -> None:
        """Upload this recording soon (a ready listener: returns at once)."""
        if recording_id in self._queued:
            return
        self._queued.add(recording_id)
        task = asyncio.create_task(self._archive_queued(recording_id), name=f"archive-{recording_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _archive_queued(self, recording_id: int) -> None:
        try:
            await self.archive(recording_id)
        except Exception:  # the catalog unreachable, say: the retry loop picks it up again
            log.exception("recording %d: upload failed", recording_id)
        finally:
            self._queued.discard(recording_id)

    def start(self) -> None:
        """Upload what is pending now and every ``retry_seconds`` (processes that hold the media: ingest)."""
        self._loop_task = asyncio.create_task(self._retry_loop(), name="recording-archiver")

    async def close(self) -> None:
        tasks = [t for t in [self._loop_task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()  # an upload already in a thread finishes there; its row is not updated: retried at start
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _retry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.store.check)
            log.info("recordings: ready recordings go to %s", self.store.location("").rstrip("/"))
        except Exception as exc:
            log.error("recordings: the bucket %r is not reachable (%s); uploads will be retried", self.store.bucket, exc)
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("recordings: an upload round failed")
            await asyncio.sleep(self.retry_seconds)

    async def sweep(self) -> list[int]:
        """Upload every ready recording still on local disk; returns those uploaded."""
        uploaded = []
        for recording_id in await self.catalog.db.run(_pending_ids):
            if recording_id in self._queued:
                continue  # already on its way
            self._queued.add(recording_id)
            try:
                if await self.archive(recording_id):
                    uploaded.append(recording_id)
            finally:
                self._queued.discard(recording_id)
        await self._count_pending()
        return uploaded

    # --- one recording ---------------------------------------------------------------------
    async def archive(self, recording_id: int) -> bool:
        """Upload one ready recording, record where it is, free the local media; False if not done."""
        async with self._slot, self.catalog.media_lock(recording_id):
            media_path = await self.catalog.db.run(lambda s: _uploadable(s, recording_id))
            if media_path is None:
                return False  # gone, not ready, or already uploaded
            await self.catalog.thumbnail_made(recording_id)  # the thumbnail goes with it
            files = self.catalog.files(media_path)
            location = self.store.location(media_path)
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            try:
                count, sent = await loop.run_in_executor(None, files.upload, StoredRecording(self.store, location))
            except Exception as exc:  # botocore's errors, a vanished folder: keep the files, try later
                self.metrics.recording_upload_failures.inc()
                log.warning("recording %d: upload to %s failed, kept on local disk, retried within %.0f s: %s",
                            recording_id, location, self.retry_seconds, exc)
                await self._count_pending()
                return False
            if not await self.catalog.db.run(lambda s: _stored(s, recording_id, location)):
                return False
            if self.on_archived is not None:
                self.on_archived(recording_id, media_path)
            try:
                freed = await loop.run_in_executor(None, files.drop_media)
            except OSError as exc:
                freed = 0
                log.warning("recording %d: uploaded, but the local copies could not all be removed: %s", recording_id, exc)
            self.metrics.recording_uploaded_bytes.inc(sent)
            log.info("recording %d: %d files (%.1f MB) uploaded to %s in %.1f s; %.1f MB freed on local disk",
                     recording_id, count, sent / 1e6, location, time.monotonic() - started, freed / 1e6)
        await self._count_pending()
        return True

    async def _count_pending(self) -> None:
        try:
            self.metrics.recording_uploads_pending.set(await self.catalog.db.run(_pending_count))
        except Exception as exc:  # a metric is not worth failing an upload for
            log.debug("recordings: pending uploads not counted: %s", exc)


def _pending_query() -> Any:
    return select(Recording.id).where(Recording.state == RecordingState.READY, Recording.storage_url.is_(None),
                                      Recording.media_path != "")


def _pending_ids(session: Session) -> list[int]:
    return list(session.scalars(_pending_query().order_by(Recording.id)))


def _pending_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(_pending_query().subquery())) or 0)


def _uploadable(session: Session, recording_id: int) -> str | None:
    row = session.get(Recording, recording_id)
    if row is None or row.state != RecordingState.READY or row.storage_url or not row.media_path:
        return None
    return row.media_path


def _stored(session: Session, recording_id: int, location: str) -> bool:
    row = session.get(Recording, recording_id)
    if row is None:
        return False
    row.storage_url = location
    return True
