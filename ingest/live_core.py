"""The live-event state machine, sans I/O: fed ``(input, now)``, it returns commands.

Every rule of a live run lives here: who may publish (refusals in a protocol-neutral
``RefusalReason``), takeover by a newer publisher, reconnects within the grace period, the
grace period's end, draining and shutdown, a packager that gave up. It sleeps on nothing,
spawns nothing and writes nothing: the asyncio shell (``ingest.live.LiveStreams``) runs the
commands (ffmpeg, catalog rows, taps) and feeds back what happened. Time is injected (``now``,
seconds on any monotonic clock); timers are exposed as ``next_timer()`` / ``handle_timer(now)``
as in aioquic, so tests drive hours of grace periods in microseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from ingest.publishing import RefusalReason, printable_app

__all__ = [
    "Accept", "BeginRun", "CloseSession", "Command", "EndPackagerSession", "EndRun", "EventLookup",
    "GraceStarted", "LiveEventCore", "MarkLive", "NotifyPublishEnded", "NotifyPublishStarted", "OpenSession",
    "RefusalReason", "Refuse", "RunPhase", "StartPackagerSession", "StopPublisher",
]


class RunPhase(enum.Enum):
    """Where a run is. A run with no entry in the core has ended (or never started)."""

    STARTING = "starting"  # publishing, no segment listed yet (the catalog still says scheduled)
    LIVE = "live"  # a publisher feeds it and a segment was listed (the catalog says live)
    GRACE = "grace"  # the publisher left; it ends at the deadline unless one comes back


@dataclass(frozen=True)
class EventLookup:
    """What the catalog says about the event a stream key opens (the shell looks it up)."""

    event_id: int
    slug: str
    dvr: bool
    abr: bool


# --- commands (what the shell must do, in order) --------------------------------------------


@dataclass(frozen=True)
class Refuse:
    """Refuse the publish; ``message`` is protocol-neutral text the client may be shown."""

    reason: RefusalReason
    message: str


@dataclass(frozen=True)
class StopPublisher:
    """Ask a publisher's connection to go away. ``detached``: the run is already handed over, so
    its later close has nothing left to do (takeover)."""

    publisher: int
    reason: str
    detached: bool = False


@dataclass(frozen=True)
class CloseSession:
    """Close a publisher's broadcast-session row in the catalog."""

    publisher: int
    reason: str


@dataclass(frozen=True)
class EndPackagerSession:
    """The packager's input ends (the next publish is a discontinuity)."""

    event_id: int


@dataclass(frozen=True)
class BeginRun:
    """Start a new run: catalog start time, run folder, packager (DVR/ABR as the event says; how long
    its ladder waits for the tallest picture as the first publisher's ``protocol`` needs)."""

    event_id: int
    slug: str
    dvr: bool
    abr: bool
    protocol: str


@dataclass(frozen=True)
class OpenSession:
    """Open the publisher's broadcast-session row in the catalog."""

    event_id: int
    publisher: int
    protocol: str
    remote: str


@dataclass(frozen=True)
class StartPackagerSession:
    """The packager's input begins (a new publish of the run)."""

    event_id: int


@dataclass(frozen=True)
class NotifyPublishStarted:
    """Tell the taps a publish of the run started."""

    event_id: int
    publisher: int


@dataclass(frozen=True)
class Accept:
    """The publish is accepted; the shell hands the publisher its sink."""

    event_id: int
    publisher: int
    takeover: bool
    reconnect: bool


@dataclass(frozen=True)
class NotifyPublishEnded:
    """Tell the taps the run's publish ended."""

    event_id: int


@dataclass(frozen=True)
class GraceStarted:
    """The run waits ``seconds`` for a publisher (the core's timer; the shell only logs it)."""

    event_id: int
    seconds: float
    reason: str


@dataclass(frozen=True)
class MarkLive:
    """Mark the event live in the catalog (its first segment is listed)."""

    event_id: int
    slug: str


@dataclass(frozen=True)
class EndRun:
    """End the run: close ``publisher``'s session if any, finish the media (ENDLIST), tell the
    taps, mark the event ended in the catalog (when it had segments or was live)."""

    event_id: int
    reason: str
    publisher: int | None
    had_segments: bool


Command = Union[Refuse, StopPublisher, CloseSession, EndPackagerSession, BeginRun, OpenSession,
                StartPackagerSession, NotifyPublishStarted, Accept, NotifyPublishEnded, GraceStarted,
                MarkLive, EndRun]


@dataclass
class _Run:
    event_id: int
    slug: str
    publisher: int | None = None
    listed: bool = False
    segments: int = 0
    grace_deadline: float | None = None
    failed: str | None = None


class LiveEventCore:
    """Live runs of every event of this node, and the rules between publishers and runs."""

    def __init__(self, *, grace_seconds: float, takeover: bool) -> None:
        self.grace_seconds = grace_seconds
        self.takeover = takeover
        self.accepting = True
        self.draining = False
        self._runs: dict[int, _Run] = {}
        self._publishers: dict[int, int] = {}  # publisher → event
        self._next_publisher = 0

    # --- queries ---------------------------------------------------------------------------
    def phase(self, event_id: int) -> RunPhase | None:
        run = self._runs.get(event_id)
        if run is None:
            return None
        if run.publisher is None:
            return RunPhase.GRACE
        return RunPhase.LIVE if run.listed else RunPhase.STARTING

    def publisher(self, event_id: int) -> int | None:
        run = self._runs.get(event_id)
        return None if run is None else run.publisher

    def failed(self, event_id: int) -> str | None:
        run = self._runs.get(event_id)
        return None if run is None else run.failed

    @property
    def events(self) -> list[int]:
        return list(self._runs)

    def next_timer(self) -> float | None:
        """When ``handle_timer`` has something to do (the earliest grace deadline), or None."""
        deadlines = [r.grace_deadline for r in self._runs.values() if r.grace_deadline is not None]
        return min(deadlines) if deadlines else None

    # --- inputs ----------------------------------------------------------------------------
    def check_request(self, protocol: str, app: str) -> Refuse | None:
        """What can be refused before the stream key is looked up (no catalog work for these)."""
        if not self.accepting:
            return Refuse(RefusalReason.SHUTTING_DOWN, "server is shutting down; retry shortly")
        if protocol == "rtmp" and app != "live":
            return Refuse(RefusalReason.BAD_APP,
                          f"unknown application {printable_app(app)}; publish to /live/<stream key>")
        return None

    def publish(self, protocol: str, app: str, remote: str, event: EventLookup | None, now: float) -> list[Command]:
        """A publish whose key was looked up (``event`` None: no event has that key). Ends with
        ``Accept`` or is a single ``Refuse``."""
        refused = self.check_request(protocol, app)
        if refused is not None:
            return [refused]
        if event is None:
            return [Refuse(RefusalReason.BAD_KEY, "unknown or revoked stream key")]
        commands: list[Command] = []
        run = self._runs.get(event.event_id)
        takeover = reconnect = False
        if run is not None and run.publisher is not None:
            if not self.takeover:
                return [Refuse(RefusalReason.ALREADY_LIVE, "this event already has a publisher")]
            old, run.publisher = run.publisher, None
            del self._publishers[old]
            takeover = True
            commands += [StopPublisher(old, "taken over by a newer publisher", detached=True),
                         CloseSession(old, "taken over"), EndPackagerSession(event.event_id)]
        if run is None:
            run = self._runs[event.event_id] = _Run(event.event_id, event.slug)
            commands.append(BeginRun(event.event_id, event.slug, event.dvr, event.abr, protocol))
        elif not takeover:
            reconnect = True
        run.grace_deadline = None
        self._next_publisher += 1
        publisher = self._next_publisher
        run.publisher = publisher
        self._publishers[publisher] = event.event_id
        commands += [OpenSession(event.event_id, publisher, protocol, remote), StartPackagerSession(event.event_id),
                     NotifyPublishStarted(event.event_id, publisher),
                     Accept(event.event_id, publisher, takeover=takeover, reconnect=reconnect)]
        return commands

    def run_failed_to_start(self, event_id: int) -> None:
        """``BeginRun`` failed (catalog, ffmpeg): forget the run so that the next publish starts afresh."""
        run = self._runs.pop(event_id, None)
        if run is not None and run.publisher is not None:
            self._publishers.pop(run.publisher, None)

    def publisher_gone(self, publisher: int, reason: str, now: float) -> list[Command]:
        """The publisher's connection ended (or its publish failed half-way)."""
        commands: list[Command] = [CloseSession(publisher, reason)]
        event_id = self._publishers.pop(publisher, None)
        run = self._runs.get(event_id) if event_id is not None else None
        if run is None or run.publisher != publisher:
            return commands  # taken over, or its run already ended: nothing more is its business
        run.publisher = None
        grace = 0.0 if self.draining else self.grace_seconds
        run.grace_deadline = now + grace
        return commands + [EndPackagerSession(run.event_id), NotifyPublishEnded(run.event_id),
                           GraceStarted(run.event_id, grace, reason)]

    def segment_listed(self, event_id: int, now: float) -> list[Command]:
        run = self._runs.get(event_id)
        if run is None:
            return []
        run.segments += 1
        if run.listed:
            return []
        run.listed = True
        return [MarkLive(event_id, run.slug)]

    def packager_failed(self, event_id: int, reason: str, now: float) -> list[Command]:
        """The packager gave up (ffmpeg kept crashing): the publisher is told to go away; the run
        then ends like any other, after its grace period."""
        run = self._runs.get(event_id)
        if run is None:
            return []
        run.failed = reason
        return [] if run.publisher is None else [StopPublisher(run.publisher, f"packaging failed: {reason}")]

    def handle_timer(self, now: float) -> list[Command]:
        """End every run whose grace period is over."""
        commands: list[Command] = []
        for run in list(self._runs.values()):
            if run.grace_deadline is not None and run.grace_deadline <= now and run.publisher is None:
                commands.append(self._end(run, "grace period over"))
        return commands

    def drain(self, now: float) -> list[Command]:
        """Rolling restart: refuse new publishes; runs without a publisher end now, the others when
        their publisher leaves (no grace period: a reconnecting encoder lands on another node)."""
        self.accepting = False
        self.draining = True
        return [self._end(run, "node draining") for run in list(self._runs.values()) if run.publisher is None]

    def shutdown(self, now: float) -> list[Command]:
        """Stop: every publisher is told to go and every run ends."""
        self.accepting = False
        commands: list[Command] = []
        for run in list(self._runs.values()):
            if run.publisher is not None:
                commands.append(StopPublisher(run.publisher, "server shutting down"))
            commands.append(self._end(run, "server shutdown"))
        return commands

    def _end(self, run: _Run, reason: str) -> EndRun:
        del self._runs[run.event_id]
        if run.publisher is not None:
            self._publishers.pop(run.publisher, None)
        return EndRun(run.event_id, reason, run.publisher, had_segments=run.segments > 0)
