"""Records every live run from the packager's output, across reconnects, and says so in events.

``Recorder`` plugs into ``LiveStreams`` twice: as a ``MediaTap`` for the run's lifecycle (a
publish started, the run ended) and as a ``SegmentObserver`` for each listed segment. It records
the top rendition (the only one in passthrough): each listed segment is hard-linked and journaled
inline, within the listing callback, so what the packager listed is on the recording's disk
before the next segment. fMP4 segments (LL-HLS) bring their init section, linked once per
recording with the first segment that names it (one per publish session). Reconnects arrive as the packager's discontinuities; a segment missing
in between (a gap) is marked as one too. At the run's end the VOD playlists are written and the
catalog told, before the event itself is marked ended: the replay is ready when the live ends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ingest.disk import MediaDiskGuard
from formats.m3u8 import Segment
from ingest.live_run import LiveRun
from live_server.layout import recording_folder
from live_server.metrics import Metrics

from .recording_events import PublisherChanged, RecordingFinished, RecordingSink, RecordingStarted, SegmentCompleted
from .storage import RecordingFiles, read_live_master

log = logging.getLogger(__name__)


@dataclass
class ActiveRecording:
    """One recording in progress (one live run of one event)."""

    recording_id: int
    event_id: int
    run: LiveRun
    rendition: str
    files: RecordingFiles
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    size_bytes: int = 0
    last_source_sequence: int | None = None
    copying: "asyncio.Future[None] | None" = None  # chain of copies when links are impossible
    inits: set[str] = field(default_factory=set)  # init sections (fMP4) already in the recording
    failed: str | None = None
    paused: bool = False  # the media disk is below its floor: segments are skipped (a gap on resume)


class Recorder:
    """``MediaTap`` + ``SegmentObserver`` that turns live runs into recordings."""

    def __init__(self, media_dir: Path, sink: RecordingSink, metrics: Metrics, disk: MediaDiskGuard) -> None:
        self.media_dir = media_dir
        self.sink = sink
        self.metrics = metrics
        self.disk = disk  # shared with the live packagers: one floor for the one media disk
        self.active: dict[int, ActiveRecording] = {}

    # --- MediaTap --------------------------------------------------------------------------
    async def publish_started(self, live: LiveRun) -> None:
        current = self.active.get(live.event_id)
        if current is not None and current.run.media is live.media:
            self._publisher_changed(current, True)
            return  # a reconnect: the packager marks the discontinuity, the recording goes on
        if await self.disk.check(force=True):
            self.metrics.recordings_refused.labels("disk_space").inc()
            log.error("event %s: not recording: %d MiB free on the media disk, below the %d MiB floor",
                      live.event_id, (self.disk.free_bytes or 0) // 2**20, self.disk.floor_bytes // 2**20)
            return
        folder = recording_folder(self.media_dir, live.event_id, live.started_at)
        started = RecordingStarted(live.event_id, live.started_at, folder.relative_to(self.media_dir).as_posix(),
                                   live.options.segment_seconds)
        recording_id = await self.sink.recording_started(started)
        if recording_id is None:
            return  # this event opted out
        files = RecordingFiles(folder)
        await asyncio.get_running_loop().run_in_executor(None, files.create)
        self.active[live.event_id] = ActiveRecording(recording_id, live.event_id, live, live.media.reference_rendition(), files)
        self.metrics.recordings_active.set(len(self.active))
        log.info("event %s: recording %d into %s", live.event_id, recording_id, started.media_path)

    def on_media(self, live: LiveRun, kind: str, timestamp_ms: int, payload: bytes) -> None:
        return  # segments, not media messages, are what gets recorded

    async def publish_ended(self, live: LiveRun) -> None:
        recording = self.active.get(live.event_id)
        if recording is not None and recording.run.media is live.media:
            self._publisher_changed(recording, False)

    def _publisher_changed(self, recording: ActiveRecording, publishing: bool) -> None:
        try:
            self.sink.publisher_changed(PublisherChanged(recording.recording_id, publishing))
        except Exception:
            log.exception("recording %d: publisher_changed raised", recording.recording_id)

    async def run_ended(self, live: LiveRun) -> None:
        recording = self.active.get(live.event_id)
        if recording is None or recording.run.media is not live.media:
            return
        del self.active[live.event_id]
        self.metrics.recordings_active.set(len(self.active))
        if recording.copying is not None:
            await asyncio.gather(recording.copying, return_exceptions=True)  # copies still in flight
        loop = asyncio.get_running_loop()
        error = recording.failed
        segments = recording.segments
        summary = None
        if segments:
            try:
                master_text = read_live_master(live.folder)
                summary = await loop.run_in_executor(None, recording.files.finalize, segments, master_text, recording.rendition)
            except OSError as exc:
                error = f"cannot write the VOD playlists: {exc}"
                log.exception("recording %d: finalizing failed", recording.recording_id)
        elif error is None:
            error = "no media was recorded"
        await self.sink.recording_finished(RecordingFinished(
            recording_id=recording.recording_id,
            ended_at=datetime.now(timezone.utc),
            segments=summary.segments if summary else 0,
            duration_seconds=summary.duration_seconds if summary else 0.0,
            size_bytes=summary.size_bytes if summary else 0,
            discontinuities=summary.discontinuities if summary else 0,
            error=None if summary else error,
        ))
        log.info("event %s: recording %d finished: %d segments, %.1f s", live.event_id, recording.recording_id,
                 len(segments), recording.duration)

    def health(self, event_id: int) -> dict[str, Any] | None:
        recording = self.active.get(event_id)
        if recording is None:
            return {"recording": False}
        return {"recording": True, "recording_id": recording.recording_id, "recorded_seconds": round(recording.duration, 3),
                "recording_paused": recording.paused}

    # --- SegmentObserver -------------------------------------------------------------------
    def on_segment(self, event_id: int, rendition: str, segment: Segment) -> None:
        recording = self.active.get(event_id)
        # The top rendition encoded: an ABR event skips the rungs taller than its source, chosen once
        # media flows, so the reference is asked for, not the one known when the recording started.
        if recording is None or recording.failed or rendition != recording.run.media.reference_rendition():
            return
        recording.rendition = rendition
        if recording.paused != self.disk.low:  # the guard's verdict, refreshed by the live sampler
            recording.paused = self.disk.low
            log.warning("recording %d: %s", recording.recording_id, "paused: the media disk is low"
                        if recording.paused else "resumed (the gap is marked as a discontinuity)")
        if recording.paused:
            return  # not linked: the live window's files can be deleted and the disk stops filling
        gap = recording.last_source_sequence is not None and segment.sequence != recording.last_source_sequence + 1
        recording.last_source_sequence = segment.sequence
        entry = replace(segment, sequence=len(recording.segments),
                        discontinuity=bool(recording.segments) and (segment.discontinuity or gap))
        sources = [recording.run.folder / rendition / segment.uri]  # the segment last: its size is what is counted
        if segment.map_uri is not None and segment.map_uri not in recording.inits:
            recording.inits.add(segment.map_uri)
            sources.insert(0, recording.run.folder / rendition / segment.map_uri)
        if recording.copying is None or recording.copying.done():
            try:
                size = [recording.files.link(source) for source in sources][-1]
            except OSError:
                pass
            else:
                self._recorded(recording, entry, size)
                return
        recording.copying = asyncio.ensure_future(self._copy(recording, recording.copying, sources, entry))

    async def _copy(self, recording: ActiveRecording, previous: "asyncio.Future[None] | None", sources: list[Path],
                    entry: Segment) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)  # keep the journal in listing order
        try:
            loop = asyncio.get_running_loop()
            size = [await loop.run_in_executor(None, recording.files.copy, source) for source in sources][-1]
        except OSError as exc:
            log.error("recording %d: cannot store %s: %s", recording.recording_id, sources[-1].name, exc)
            recording.failed = f"cannot store segments: {exc}"
            return
        self._recorded(recording, entry, size)

    def _recorded(self, recording: ActiveRecording, entry: Segment, size: int) -> None:
        try:
            recording.files.append(entry, recording.run.media.target_duration(recording.rendition))
        except OSError as exc:
            log.error("recording %d: cannot journal %s: %s", recording.recording_id, entry.uri, exc)
            recording.failed = f"cannot write the journal: {exc}"
            return
        start = recording.duration
        recording.segments.append(entry)
        recording.duration += entry.duration
        recording.size_bytes += size
        self.metrics.recorded_segments.inc()
        try:
            media_end = entry.program_date_time + timedelta(seconds=entry.duration) if entry.program_date_time else None
            self.sink.segment_completed(SegmentCompleted(
                recording.recording_id, entry.sequence, recording.files.path_of(entry), start,
                entry.duration, size, entry.discontinuity, media_end, recording.files.init_of(entry),
            ))
        except Exception:
            log.exception("recording %d: segment_completed raised", recording.recording_id)
