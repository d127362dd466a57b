"""Live events at run time: the asyncio shell around the live-event core (``ingest.live_core``).

``LiveStreams`` is the ``StreamPublisher`` every ingest protocol (RTMP, WHIP) talks to. The rules
(refusals, takeover, reconnect within the grace period, the grace period's end, drain) are the
core's; this shell looks stream keys up, feeds the core ``(input, now)`` and runs the commands it
returns: packagers (ffmpeg), catalog rows (through ``Database.run``, never per media message),
taps (which see a frozen ``LiveRun``), and the one timer the core asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from formats import flv
from ingest.disk import MediaDiskGuard
from ingest.packaging.dts_guard import DtsGuard
from ingest.packaging.options import DEFAULT_LADDER, PackagerOptions
from ingest.packaging.ll_packager import LlPackager, LlPlaylists
from ingest.packaging.packager import LivePackager, Packager
from formats.m3u8 import Segment, SubtitleRendition
from ingest.live_core import (
    Accept, BeginRun, CloseSession, Command, EndPackagerSession, EndRun, EventLookup, GraceStarted, LiveEventCore,
    MarkLive, NotifyPublishEnded, NotifyPublishStarted, OpenSession, RefusalReason, Refuse, RunPhase,
    StartPackagerSession, StopPublisher,
)
from ingest.live_run import LiveRun
from ingest.publishing import MediaSink, PublishRejected, redact_key
from live_server import events as ev
from live_server.db import Database
from live_server.layout import live_run_folder
from live_server.metrics import Metrics
from live_server.models import BroadcastSession, Event, EventState, utcnow
from live_server.settings import Settings

log = logging.getLogger(__name__)
END_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # catalog writes when an event ends, then one last try

def stall_seconds(segment_seconds: float) -> float:
    """No media for this long while connected: the stream is unhealthy (players will soon starve)."""
    return max(3.0, 2 * segment_seconds)


#: A segment the media says ffmpeg owes us (its closing keyframe arrived) unlisted for this long: unhealthy.
SEGMENT_OVERDUE_SECONDS = 2.0
#: Media flowing and no segment listed for this long (or 2.5 keyframe intervals, if longer): unhealthy.
#: Long enough for the first segment of a 20 s keyframe interval.
NO_SEGMENT_SECONDS = 25.0


def keyframe_advice(keyframe_interval: float | None, segment_seconds: float) -> float | None:
    """The keyframe interval to recommend (the segment length) when the measured one is longer.

    Segments cannot be shorter than the encoder's keyframe interval, so a longer interval makes
    longer segments and more delay for every viewer. Slack: 5 % (a late frame, timestamp jitter).
    """
    if keyframe_interval is None or keyframe_interval <= segment_seconds * 1.05:
        return None
    return segment_seconds


class SegmentObserver(Protocol):
    """Something that wants to know about every listed segment (recorder, captions)."""

    def on_segment(self, event_id: int, rendition: str, segment: Segment) -> None: ...


class MediaTap(Protocol):
    """Something that taps an event's live media (captions, recorder). ``on_media`` must never block.

    Taps see a frozen ``LiveRun``; what they add to the run goes through ``LiveRun.media``."""

    async def publish_started(self, run: LiveRun) -> None: ...

    def on_media(self, run: LiveRun, kind: str, timestamp_ms: int, payload: bytes) -> None: ...

    async def publish_ended(self, run: LiveRun) -> None: ...

    async def run_ended(self, run: LiveRun) -> None: ...

    def health(self, event_id: int) -> dict[str, Any] | None: ...


@dataclass
class IngestStats:
    """Per-publish counters, updated per message with a few additions; rates computed on demand."""

    stall_after: float = 4.0
    started: float = field(default_factory=time.monotonic)
    bytes_in: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    last_media_at: float = 0.0
    keyframe_times: deque[int] = field(default_factory=lambda: deque(maxlen=8))
    window: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))

    def add(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        self.bytes_in += len(payload)
        self.last_media_at = time.monotonic()
        if kind == "video":
            self.video_frames += 1
            if flv.is_keyframe(payload) and not flv.is_sequence_header("video", payload):
                self.keyframe_times.append(timestamp_ms)
        else:
            self.audio_frames += 1

    def sample(self) -> None:
        """Called about once a second to keep a short history for rates."""
        self.window.append((time.monotonic(), self.bytes_in, self.video_frames))

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        bitrate = fps = 0.0
        recent = [s for s in self.window if now - s[0] <= 10.0]
        if len(recent) >= 2:
            (t0, b0, f0), (t1, b1, f1) = recent[0], recent[-1]
            if t1 > t0:
                bitrate, fps = (b1 - b0) * 8 / (t1 - t0), (f1 - f0) / (t1 - t0)
        keys = list(self.keyframe_times)
        gaps = [b - a for a, b in zip(keys, keys[1:]) if b > a]
        gop = max(gaps) / 1000 if gaps else None  # the longest recent one: it sets segment lengths
        stalled = (now - (self.last_media_at or self.started)) > self.stall_after
        return {
            "bitrate_bps": round(bitrate),
            "fps": round(fps, 2),
            "keyframe_interval_seconds": gop,
            "bytes_in": self.bytes_in,
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "stalled": stalled,
            "healthy": not stalled,
        }


class PublishSession:
    """One accepted publish: the ``MediaSink`` an ingest connection pushes into."""

    def __init__(self, live: "LiveEventRuntime", publisher_id: int, session_id: int, protocol: str, remote: str,
                 terminate: Callable[[str], None] | None) -> None:
        self.live = live
        self.publisher_id = publisher_id
        self.session_id = session_id
        self.protocol = protocol
        self.remote = remote
        self.stats = IngestStats(stall_after=stall_seconds(live.options.segment_seconds))
        self.dts = DtsGuard()  # decode times that only go forward, before anything downstream sees them
        self.closed = False
        self.dts_warned = False
        self._terminate = terminate

    async def on_metadata(self, metadata: dict[str, Any]) -> None:
        if not self.closed:
            self.live.packager.on_metadata(metadata)

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        if self.closed:
            return
        self.stats.add(kind, timestamp_ms, payload)
        guarded = self.dts.check(kind, timestamp_ms, payload)
        if guarded != timestamp_ms:
            if not self.dts_warned:
                self.dts_warned = True
                log.warning("event %s: the publisher's %s time %d ms does not follow its last one; %s (counted in "
                            "the stream health's dts_adjusted / dts_dropped)", self.live.event_id, kind, timestamp_ms,
                            "dropped" if guarded is None else f"passed on as {guarded} ms")
            if guarded is None:
                return
            timestamp_ms = guarded
        live = self.live
        live.packager.on_media(kind, timestamp_ms, payload)
        for tap in live.media_taps:
            tap.on_media(live.run, kind, timestamp_ms, payload)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        await self.live.on_publisher_gone(self, reason)

    def terminate(self, reason: str) -> None:
        """Ask the ingest connection to go away (takeover, packaging failed, shutdown)."""
        if self._terminate is not None:
            self._terminate(reason)


class RunCallbacks(Protocol):
    """What a run's runtime reports to its hub (``LiveStreams``)."""

    disk: MediaDiskGuard
    media_taps: list[MediaTap]

    def segment_listed(self, live: "LiveEventRuntime", rendition: str, segment: Segment) -> None: ...

    def packager_failed(self, live: "LiveEventRuntime", reason: str) -> None: ...

    def in_grace(self, event_id: int) -> bool: ...

    async def publisher_gone(self, publisher: PublishSession, reason: str) -> None: ...


class LiveEventRuntime:
    """The I/O side of one event's live run: its packager, its publisher, its counters.

    It is the packager's listener and the ``RunMedia`` its taps reach through their ``LiveRun``.
    """

    def __init__(self, hub: RunCallbacks, packager_factory: Callable[["LiveEventRuntime"], LivePackager], event_id: int,
                 slug: str, started_at: datetime, folder: Path, options: PackagerOptions) -> None:
        self.hub = hub
        self.event_id = event_id
        self.slug = slug
        self.started_at = started_at
        self.folder = folder
        self.options = options
        self.packager = packager_factory(self)
        self.publisher: PublishSession | None = None
        self.sessions = 0
        self.segments = 0
        self.last_segment_at: float | None = None  # monotonic
        self.failed: str | None = None
        self.ended = False
        self.run = LiveRun(event_id, slug, started_at, folder, options, "", self)

    @property
    def media_taps(self) -> list[MediaTap]:
        return self.hub.media_taps

    async def on_publisher_gone(self, publisher: PublishSession, reason: str) -> None:
        await self.hub.publisher_gone(publisher, reason)

    # RunMedia (what taps may ask through LiveRun.media)
    def playlist_segments(self, rendition: str) -> list[Segment]:
        return self.packager.playlist_segments(rendition)

    def target_duration(self, rendition: str) -> int | None:
        return self.packager.target_duration(rendition)

    def reference_rendition(self) -> str:
        return self.packager.rendition

    def set_subtitles(self, subtitles: Sequence[SubtitleRendition]) -> None:
        self.packager.set_subtitles(subtitles)

    def is_publishing(self) -> bool:
        return self.publisher is not None

    # PackagerListener
    def on_segment(self, rendition: str, segment: Segment) -> None:
        self.segments += 1
        self.last_segment_at = time.monotonic()
        self.hub.segment_listed(self, rendition, segment)

    def on_packager_failed(self, reason: str) -> None:
        self.failed = reason
        log.error("event %s: packager gave up: %s", self.event_id, reason)
        self.hub.packager_failed(self, reason)

    def health(self) -> dict[str, Any]:
        disk = self.hub.disk
        data: dict[str, Any] = {
            "publishing": self.publisher is not None,
            "protocol": self.publisher.protocol if self.publisher else None,
            "segments": self.segments,
            "in_grace_period": self.hub.in_grace(self.event_id),
            "packager_restarts": self.packager.restarts,
            "dropped_tags": self.packager.dropped_tags,
            "packager_failed": self.failed,
            "playlist_write_errors": self.packager.write_errors,
            "disk_low": disk.low,
            "disk_message": disk.message(),
            "dvr_paused": self.packager.history_paused,
        }
        if self.publisher is not None:
            data.update(self.publisher.stats.health())
            data.update(dts_adjusted=self.publisher.dts.adjusted + self.publisher.dts.rebased,
                        dts_dropped=self.publisher.dts.dropped)
            data.update(self._packaging_health(self.publisher, data))
        else:
            data.update({"healthy": False, "stalled": True})
        if self.failed:
            data["healthy"] = False
        for tap in self.media_taps:
            data.update(tap.health(self.event_id) or {})
        return data

    def _packaging_health(self, publisher: "PublishSession", ingest: dict[str, Any]) -> dict[str, Any]:
        """Whether segments come out as the media says they should, and the keyframe advice."""
        segment_seconds = self.options.segment_seconds
        gop = ingest.get("keyframe_interval_seconds")
        overdue = self.packager.segment_overdue_seconds
        since = max(self.last_segment_at or 0.0, publisher.stats.started)
        quiet = time.monotonic() - since
        # The ABR ladder re-encodes with a keyframe every segment: the source GOP costs no delay
        # there. WHIP publishers get keyframe requests on the segment clock: nothing to set.
        advisable = self.options.passthrough and publisher.protocol == "rtmp"
        advice = keyframe_advice(gop, segment_seconds) if advisable else None
        healthy = (bool(ingest.get("healthy")) and overdue <= SEGMENT_OVERDUE_SECONDS
                   and quiet <= max(NO_SEGMENT_SECONDS, 2.5 * (gop or 0.0)))
        return {
            "healthy": healthy,
            "segment_seconds": segment_seconds,
            "target_duration": self.packager.target_duration(self.packager.rendition),
            "seconds_since_segment": round(quiet, 1),
            "segment_overdue_seconds": round(overdue, 1),
            "recommended_keyframe_interval_seconds": advice,
            "recommendation": (f"set the keyframe interval to {advice:g} s for lower delay"
                               if advice is not None else None),
        }


class LiveStreams:
    """The ``StreamPublisher`` for every ingest protocol, and the registry of live events.

    The asyncio shell of ``LiveEventCore``: each input goes to the core with the time, and the
    commands it returns run here, in order. Publishes and publisher ends run under one lock (their
    commands await the catalog and ffmpeg); ends of runs run as background tasks, and a new run of
    the same event waits for the previous one's end.
    """

    def __init__(self, settings: Settings, db: Database, metrics: Metrics, ffmpeg: str) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.packager_dropped = metrics.drop_counter("packager")
        self.ffmpeg = ffmpeg
        self.core = LiveEventCore(grace_seconds=settings.grace_period_seconds, takeover=settings.publish_takeover)
        self.events: dict[int, LiveEventRuntime] = {}
        self.publishers: dict[int, PublishSession] = {}
        self.observers: list[SegmentObserver] = []
        self.media_taps: list[MediaTap] = []
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}  # per event: its lock, how many hold or wait
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ending: dict[int, asyncio.Task[None]] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_changed = asyncio.Event()
        self.media_errors = 0  # live runs whose media could not be finished (reported by /readyz)
        self.disk = MediaDiskGuard(settings.media_dir, settings.recording_min_free_mb * 2**20, metrics)

    @property
    def accepting(self) -> bool:
        return self.core.accepting

    @property
    def draining(self) -> bool:
        return self.core.draining

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.db.run(_end_orphaned_runs)
        self._sampler = asyncio.create_task(self._sample_loop(), name="live-stats")

    async def close(self) -> None:
        """Stop accepting, end every live event (ENDLIST, catalog), wait for the background work."""
        if self._sampler is not None:
            self._sampler.cancel()
        for command in self.core.shutdown(self._now()):
            if isinstance(command, EndRun):
                await self._end_run(command)
            else:
                await self._run(command)
        if self._timer is not None:
            self._timer.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """Rolling restart: refuse new publishes and let the current events finish, for up to ``timeout``.

        A publisher that leaves while draining ends its event at once (no grace period), so an
        encoder that reconnects lands on another ingest node and starts afresh there.
        """
        if self.events and timeout > 0:
            log.info("draining: %d live event(s) may finish within %.0f s; new publishes are refused",
                     len(self.events), timeout)
        for command in self.core.drain(self._now()):  # runs without a publisher end now
            await self._run(command)
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.events and loop.time() < deadline:
            await asyncio.sleep(0.2)

    @contextlib.asynccontextmanager
    async def _event_lock(self, event_id: int) -> AsyncIterator[None]:
        """Publishes and publisher ends of one event, one at a time (their commands await the catalog and
        the packager, and each must see the state the previous one left). Per event, not one lock for all:
        a burst of publishes to different events (a morning of lectures starting at 9:00) would otherwise
        queue every catalog write and packager start behind each other and outlast the publish timeout."""
        lock, users = self._locks.get(event_id) or (asyncio.Lock(), 0)
        self._locks[event_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[event_id]
            if users > 1:
                self._locks[event_id] = (lock, users - 1)
            else:
                del self._locks[event_id]

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("live background task failed", exc_info=task.exception())

    # --- the core's timer ----------------------------------------------------------------
    def _timer_may_have_changed(self) -> None:
        self._timer_changed.set()
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._timer_loop(), name="live-timer")

    async def _timer_loop(self) -> None:
        """Sleep until the core's next deadline (or a change of it), then hand it the time; gone
        while the core has no deadline (the next grace period starts it again)."""
        while True:
            due = self.core.next_timer()
            self._timer_changed.clear()
            if due is None:
                return
            delay = due - self._now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._timer_changed.wait(), delay)
                continue
            for command in self.core.handle_timer(self._now()):
                await self._run(command)

    # --- StreamPublisher -----------------------------------------------------------------
    async def start_publish(self, *, protocol: str, app: str, stream_key: str, remote_address: str,
                            terminate: Callable[[str], None] | None = None) -> MediaSink:
        refused = self.core.check_request(protocol, app)
        if refused is not None:
            raise self._reject(protocol, refused)
        found = await self.db.run(lambda s: _event_for_key(s, stream_key))
        if found is None:
            log.warning("%s publish from %s refused: unknown or revoked stream key %s", protocol, remote_address, redact_key(stream_key))
        lookup = None if found is None else EventLookup(*found)
        if lookup is None:  # refused without touching any run: no lock to take
            [refusal] = self.core.publish(protocol, app, remote_address, None, self._now())
            assert isinstance(refusal, Refuse)
            raise self._reject(protocol, refusal)
        async with self._event_lock(lookup.event_id):
            commands = self.core.publish(protocol, app, remote_address, lookup, self._now())
            if isinstance(commands[0], Refuse):
                raise self._reject(protocol, commands[0])
            accepted = commands[-1]
            assert isinstance(accepted, Accept)
            begun = not any(isinstance(command, BeginRun) for command in commands)
            try:
                for command in commands[:-1]:
                    await self._run(command, terminate=terminate)
                    begun = begun or isinstance(command, BeginRun)
            except BaseException:  # the catalog, ffmpeg, or the adapter's deadline (a cancellation)
                if not begun:
                    self.core.run_failed_to_start(accepted.event_id)
                else:
                    self._spawn(self._publish_failed(accepted.event_id, accepted.publisher))
                raise
            publisher = self.publishers.get(accepted.publisher)
            if publisher is None or publisher.live.ended:  # the server stopped under this publish
                raise self._reject(protocol, self.core.check_request(protocol, app) or Refuse(
                    RefusalReason.SHUTTING_DOWN, "server is shutting down; retry shortly"))
            live = publisher.live
        if accepted.takeover:
            log.info("event %s: %s publisher from %s took over", live.event_id, protocol, remote_address)
        log.info("event %s (%s): %s publish #%d from %s accepted", live.event_id, live.slug, protocol, live.sessions,
                 remote_address)
        return publisher

    async def _publish_failed(self, event_id: int, publisher_id: int) -> None:
        """A publish failed half-way (catalog, ffmpeg): its run goes on as if it had left."""
        publisher = self.publishers.get(publisher_id)
        if publisher is not None:
            await publisher.close("publish failed")
            return
        async with self._event_lock(event_id):
            for command in self.core.publisher_gone(publisher_id, "publish failed", self._now()):
                await self._run(command)

    def _reject(self, protocol: str, refusal: Refuse) -> PublishRejected:
        self.metrics.rejected_publishes.labels(protocol, refusal.reason.value).inc()
        return PublishRejected(refusal.reason, refusal.message)

    def _options(self, dvr: bool, abr: bool, protocol: str) -> PackagerOptions:
        """A run's packaging. Its ladder's rungs are chosen once, at ffmpeg's first start: from the first
        picture of an RTMP publisher (its real size), from the tallest a WHIP publisher sends within
        ``whip_ladder_settle_seconds`` (a browser's encoder starts smaller while it probes the bandwidth)."""
        s = self.settings
        return PackagerOptions(
            segment_seconds=s.segment_seconds,
            live_window_seconds=s.segment_seconds * s.live_window_segments,
            dvr=dvr,
            ladder=DEFAULT_LADDER if abr else (),
            ladder_settle_seconds=s.whip_ladder_settle_seconds if protocol == "whip" else 0.0,
        )

    # --- RunCallbacks (from runtimes) ----------------------------------------------------
    def segment_listed(self, live: LiveEventRuntime, rendition: str, segment: Segment) -> None:
        if self.events.get(live.event_id) is live:
            for command in self.core.segment_listed(live.event_id, self._now()):
                self._run_now(command)
        for observer in self.observers:
            observer.on_segment(live.event_id, rendition, segment)

    def packager_failed(self, live: LiveEventRuntime, reason: str) -> None:
        if self.events.get(live.event_id) is live:
            for command in self.core.packager_failed(live.event_id, reason, self._now()):
                self._run_now(command)

    def in_grace(self, event_id: int) -> bool:
        return self.core.phase(event_id) is RunPhase.GRACE

    async def publisher_gone(self, publisher: PublishSession, reason: str) -> None:
        async with self._event_lock(publisher.live.event_id):
            for command in self.core.publisher_gone(publisher.publisher_id, reason, self._now()):
                await self._run(command)

    # --- running the core's commands -----------------------------------------------------
    def _run_now(self, command: Command) -> None:
        """A command from a synchronous callback: what awaits runs as a background task."""
        if isinstance(command, StopPublisher):
            self._stop_publisher(command)
        else:
            self._spawn(self._run(command))

    async def _run(self, command: Command, terminate: Callable[[str], None] | None = None) -> None:
        if isinstance(command, StopPublisher):
            self._stop_publisher(command)
        elif isinstance(command, CloseSession):
            closing = self.publishers.pop(command.publisher, None)
            if closing is not None:
                if closing.live.publisher is closing:
                    closing.live.publisher = None
                await self.db.run(lambda s: _close_session(s, closing.session_id, command.reason))
        elif isinstance(command, BeginRun):
            await self._begin_run(command)
        elif isinstance(command, (EndPackagerSession, OpenSession, StartPackagerSession, NotifyPublishStarted,
                                  NotifyPublishEnded)):
            live = self.events.get(command.event_id)
            if live is not None and not live.ended:  # else the run ended under it (shutdown): nothing to do
                await self._run_on(live, command, terminate)
        elif isinstance(command, GraceStarted):
            log.info("event %s: publisher left (%s); ending in %.0f s unless it reconnects", command.event_id,
                     command.reason, command.seconds)
            self._timer_may_have_changed()
        elif isinstance(command, MarkLive):
            await self.db.run(lambda s: _set_live(s, command.event_id))
            log.info("event %s (%s) is live", command.event_id, command.slug)
        elif isinstance(command, EndRun):
            task = self._spawn(self._end_run(command))
            self._ending[command.event_id] = task
        else:  # Accept and Refuse are answers to start_publish, handled there
            raise AssertionError(f"unexpected command {command!r}")

    async def _run_on(self, live: LiveEventRuntime, command: Command, terminate: Callable[[str], None] | None) -> None:
        """A command about the run's own media and publishers."""
        if isinstance(command, EndPackagerSession):
            await live.packager.end_session()
        elif isinstance(command, OpenSession):
            session_id = await self.db.run(lambda s: _open_session(s, command.event_id, command.protocol, command.remote))
            publisher = PublishSession(live, command.publisher, session_id, command.protocol, command.remote, terminate)
            self.publishers[command.publisher] = publisher
            live.publisher = publisher
            live.run = dataclasses.replace(live.run, protocol=command.protocol)
        elif isinstance(command, StartPackagerSession):
            await live.packager.begin_session()
            live.sessions += 1
        elif isinstance(command, NotifyPublishStarted):
            for tap in self.media_taps:
                await _tap_safely(tap.publish_started(live.run), live.event_id)
        elif isinstance(command, NotifyPublishEnded):
            for tap in self.media_taps:
                await _tap_safely(tap.publish_ended(live.run), live.event_id)

    def _stop_publisher(self, command: StopPublisher) -> None:
        publisher = self.publishers.get(command.publisher)
        if publisher is None:
            return
        if command.detached:
            publisher.closed = True  # its later close() finds nothing to do: the event is handed over here
            log.info("event %s: publisher from %s: %s", publisher.live.event_id, publisher.remote, command.reason)
        publisher.terminate(command.reason)

    async def _begin_run(self, command: BeginRun) -> None:
        previous = self._ending.get(command.event_id)
        if previous is not None:  # the previous run of this event is still ending: let it finish first
            await asyncio.gather(asyncio.shield(previous), return_exceptions=True)
        started_at = await self.db.run(lambda s: _begin_run(s, command.event_id))
        folder = live_run_folder(self.settings.media_dir, command.event_id, started_at)

        def packager(live: LiveEventRuntime) -> LivePackager:
            if self.settings.ll_hls:  # passthrough muxed in-process; an ABR ladder transcoded by ffmpeg, then muxed
                return LlPackager(folder, live.options, live, part_target=self.settings.ll_hls_part_target_seconds,
                                  ffmpeg=self.ffmpeg, on_drop=self.packager_dropped,
                                  on_write_error=self.metrics.media_write_errors.inc,
                                  playlist_files_every_part=self.settings.effective_ll_hls_playlist_files_every_part)
            return Packager(self.ffmpeg, folder, live.options, live, self.packager_dropped,
                            self.metrics.media_write_errors.inc)

        live = LiveEventRuntime(self, packager, command.event_id, command.slug, started_at, folder,
                                self._options(command.dvr, command.abr, command.protocol))
        live.packager.pause_history(await self.disk.check())
        await live.packager.start()
        self.events[command.event_id] = live
        self.metrics.live_streams.set(len(self.events))

    async def _end_run(self, command: EndRun) -> None:
        """End the run whatever fails on the way: a full disk while writing ENDLIST (or a tap's error)
        is logged and the event still leaves the registry and is marked ended in the catalog (retried),
        so it never stays live and a later publish starts a fresh run."""
        live = self.events.get(command.event_id)
        if live is None or live.ended:
            return
        live.ended = True
        reason = command.reason
        publisher = self.publishers.pop(command.publisher, None) if command.publisher is not None else None
        if publisher is not None:
            live.publisher = None
            publisher.closed = True
            await self._catalog(lambda s: _close_session(s, publisher.session_id, reason), live, "closing its session")
        try:
            await live.packager.finish()
        except Exception as exc:  # OSError (ENOSPC, EIO) writing the final playlists, a dead ffmpeg...
            self.media_errors += 1
            log.error("event %s: finishing its media failed (%s); ending it anyway", live.event_id, exc)
            with contextlib.suppress(Exception):
                await live.packager.close()
        for tap in self.media_taps:
            await _tap_safely(tap.run_ended(live.run), live.event_id)
        if self.events.get(live.event_id) is live:
            del self.events[live.event_id]
        if self._ending.get(live.event_id) is asyncio.current_task():
            del self._ending[live.event_id]
        self.metrics.live_streams.set(len(self.events))
        for gauge in (self.metrics.ingest_bitrate, self.metrics.ingest_fps, self.metrics.ingest_keyframe_interval):
            _remove_label(gauge, str(live.event_id))
        had_segments = command.had_segments or live.segments > 0
        ended = await self._catalog(lambda s: _end_event_row(s, live.event_id, had_segments=had_segments),
                                    live, "marking it ended")
        log.info("event %s: ended (%s) after %d segments%s", live.event_id, reason, live.segments,
                 "" if ended else "; the catalog still says live until it answers (or the next start)")

    async def _catalog(self, work: Callable[[Session], None], live: LiveEventRuntime, what: str) -> bool:
        """A catalog write of the ending path, retried a few times (a locked or briefly unreachable catalog)."""
        for delay in END_RETRY_DELAYS:
            try:
                await self.db.run(work)
                return True
            except Exception as exc:
                log.warning("event %s: %s failed (%s); retrying in %.1f s", live.event_id, what, exc, delay)
                await asyncio.sleep(delay)
        try:
            await self.db.run(work)
            return True
        except Exception as exc:
            log.error("event %s: %s failed for good: %s", live.event_id, what, exc)
            return False

    # --- observability -------------------------------------------------------------------
    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.events:
                await self._guard_disk()
            for live in list(self.events.values()):
                if live.publisher is None:
                    continue
                stats = live.publisher.stats
                stats.sample()
                health = stats.health()
                label = str(live.event_id)
                self.metrics.ingest_bitrate.labels(label).set(health["bitrate_bps"])
                self.metrics.ingest_fps.labels(label).set(health["fps"])
                if health["keyframe_interval_seconds"] is not None:
                    self.metrics.ingest_keyframe_interval.labels(label).set(health["keyframe_interval_seconds"])

    async def _guard_disk(self) -> None:
        """Below the media disk's floor, live events keep only their live window (and the recorder
        pauses, reading the same guard); when space returns, their DVR grows again."""
        try:
            low = await self.disk.check()
        except Exception:  # never let a disk probe stop the sampler
            log.exception("checking the media disk failed")
            return
        for live in list(self.events.values()):
            if live.packager.history_paused != low:
                live.packager.pause_history(low)
                log.log(logging.WARNING if low else logging.INFO, "event %s: DVR %s", live.event_id,
                        "drops to the live window (media disk low)" if low else "grows again")

    def ll_playlists(self, event_id: int, folder: Path, rendition: str) -> LlPlaylists | None:
        """An LL-HLS event's playlists in memory (``web.media.LowLatencyStreams``; the hub knows its run's
        ``folder``); None for plain HLS."""
        live = self.events.get(event_id)
        if live is None or not isinstance(live.packager, LlPackager):
            return None
        return live.packager.ll_playlists(rendition)

    def health(self, event_id: int) -> dict[str, Any] | None:
        live = self.events.get(event_id)
        return live.health() if live is not None else None


async def _tap_safely(call: Awaitable[None], event_id: int) -> None:
    """A failing tap (captions) is logged; it never takes the live event down."""
    try:
        await call
    except Exception:
        log.exception("event %s: media tap failed", event_id)


def _remove_label(gauge: Any, label: str) -> None:
    try:
        gauge.remove(label)
    except KeyError:
        pass


# --- catalog units of work (run in the database thread) ---------------------------------


def _event_for_key(session: Session, key: str) -> tuple[int, str, bool, bool] | None:
    event = ev.event_for_stream_key(session, key)
    return None if event is None else (event.id, event.slug, event.dvr, event.abr)


def _begin_run(session: Session, event_id: int) -> datetime:
    event = session.get(Event, event_id)
    assert event is not None
    now = utcnow()
    event.started_at = now
    event.ended_at = None
    return now


def _open_session(session: Session, event_id: int, protocol: str, remote: str) -> int:
    row = BroadcastSession(event_id=event_id, protocol=protocol, remote_address=remote)
    session.add(row)
    session.flush()
    return row.id


def _close_session(session: Session, session_id: int, reason: str) -> None:
    row = session.get(BroadcastSession, session_id)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        row.end_reason = reason[:200]


def _set_live(session: Session, event_id: int) -> None:
    event = session.get(Event, event_id)
    if event is not None:
        event.state = EventState.LIVE


def _end_event_row(session: Session, event_id: int, had_segments: bool) -> None:
    event = session.get(Event, event_id)
    if event is None:
        return
    if had_segments or event.state == EventState.LIVE:
        event.state = EventState.ENDED
        event.ended_at = utcnow()


def _end_orphaned_runs(session: Session) -> None:
    """After a crash, events still marked live have no packager any more: end them and their sessions."""
    now = utcnow()
    for event in session.scalars(select(Event).where(Event.state == EventState.LIVE)):
        event.state = EventState.ENDED
        event.ended_at = now
        log.warning("event %s was live when the server stopped; marked ended", event.id)
    for row in session.scalars(select(BroadcastSession).where(BroadcastSession.ended_at.is_(None))):
        row.ended_at = now
        row.end_reason = "server restarted"


LIVE = web.AppKey("live_streams", LiveStreams)  # the app's live events, on ingest nodes (tests inspect them)
