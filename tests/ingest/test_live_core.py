"""The live-event core without I/O: every transition fed ``(input, now)``, checked on the commands.

No server, no ffmpeg, no clock: time is a number passed in, so hours of grace periods take
microseconds. The end-to-end runs of the same rules (RTMP with ffmpeg, WHIP) are in
``test_live.py`` and ``whip/test_whip_publish.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ingest.live_core import (
    Accept, BeginRun, CloseSession, EndPackagerSession, EndRun, EventLookup, GraceStarted, LiveEventCore, MarkLive,
    NotifyPublishEnded, NotifyPublishStarted, OpenSession, RefusalReason, Refuse, RunPhase, StartPackagerSession,
    StopPublisher,
)

LECTURE = EventLookup(event_id=7, slug="lecture", dvr=True, abr=False)
GRACE = 60.0


def core(takeover: bool = False) -> LiveEventCore:
    return LiveEventCore(grace_seconds=GRACE, takeover=takeover)


def publish(c: LiveEventCore, now: float = 0.0, protocol: str = "rtmp", event: EventLookup | None = LECTURE) -> int:
    """A publish that must be accepted; its publisher id."""
    accepted = c.publish(protocol, "live", "10.0.0.1", event, now)[-1]
    assert isinstance(accepted, Accept), accepted
    return accepted.publisher


# --- refusals ---------------------------------------------------------------------------


def test_an_unknown_or_revoked_key_is_refused() -> None:
    assert core().publish("rtmp", "live", "10.0.0.1", None, 0.0) == [
        Refuse(RefusalReason.BAD_KEY, "unknown or revoked stream key")]


def test_a_wrong_rtmp_application_is_refused_before_the_key_is_looked_up() -> None:
    c = core()
    assert c.check_request("rtmp", "lve") == Refuse(
        RefusalReason.BAD_APP, "unknown application 'lve'; publish to /live/<stream key>")
    assert c.check_request("rtmp", "secret-key-in-the-wrong-place" * 2) == Refuse(
        RefusalReason.BAD_APP, "unknown application (not shown); publish to /live/<stream key>")
    assert c.check_request("whip", "anything") is None  # WHIP has no application name
    assert c.check_request("rtmp", "live") is None


def test_a_second_publisher_is_refused_without_takeover() -> None:
    c = core()
    first = publish(c)
    assert c.publish("whip", "live", "10.0.0.2", LECTURE, 1.0) == [
        Refuse(RefusalReason.ALREADY_LIVE, "this event already has a publisher")]
    assert c.publisher(LECTURE.event_id) == first


def test_publishes_are_refused_after_shutdown_and_while_draining() -> None:
    for stop in (LiveEventCore.shutdown, LiveEventCore.drain):
        c = core()
        stop(c, 0.0)
        refusal = Refuse(RefusalReason.SHUTTING_DOWN, "server is shutting down; retry shortly")
        assert c.check_request("rtmp", "live") == refusal
        assert c.publish("rtmp", "live", "10.0.0.1", LECTURE, 0.0) == [refusal]  # stopped during the key lookup
        assert not c.accepting


# --- a run from first publish to its end ------------------------------------------------


def test_the_first_publish_begins_a_run_and_the_first_segment_makes_it_live() -> None:
    c = core()
    commands = c.publish("rtmp", "live", "10.0.0.1", LECTURE, 0.0)
    assert commands == [
        BeginRun(7, "lecture", dvr=True, abr=False, protocol="rtmp"), OpenSession(7, 1, "rtmp", "10.0.0.1"), StartPackagerSession(7),
        NotifyPublishStarted(7, 1), Accept(7, 1, takeover=False, reconnect=False),
    ]
    assert c.phase(7) is RunPhase.STARTING and c.next_timer() is None
    assert c.segment_listed(7, 2.0) == [MarkLive(7, "lecture")]
    assert c.segment_listed(7, 4.0) == []  # marked live once
    assert c.phase(7) is RunPhase.LIVE


def test_the_run_ends_when_the_grace_period_is_over() -> None:
    c = core()
    publisher = publish(c)
    c.segment_listed(7, 2.0)
    assert c.publisher_gone(publisher, "publisher ended the stream", 10.0) == [
        CloseSession(publisher, "publisher ended the stream"), EndPackagerSession(7), NotifyPublishEnded(7),
        GraceStarted(7, GRACE, "publisher ended the stream"),
    ]
    assert c.phase(7) is RunPhase.GRACE and c.next_timer() == 10.0 + GRACE
    assert c.handle_timer(10.0 + GRACE - 0.001) == []
    assert c.handle_timer(10.0 + GRACE) == [EndRun(7, "grace period over", None, had_segments=True)]
    assert c.phase(7) is None and c.next_timer() is None and c.events == []
    assert c.handle_timer(10.0 + 2 * GRACE) == []  # ended once


def test_a_run_that_never_listed_a_segment_ends_without_segments() -> None:
    c = core()
    c.publisher_gone(publish(c), "connection reset", 1.0)
    assert c.handle_timer(1.0 + GRACE) == [EndRun(7, "grace period over", None, had_segments=False)]


def test_a_reconnect_within_the_grace_period_continues_the_run() -> None:
    c = core()
    first = publish(c)
    c.segment_listed(7, 2.0)
    c.publisher_gone(first, "connection reset", 10.0)
    commands = c.publish("whip", "live", "10.0.0.9", LECTURE, 30.0)
    assert not any(isinstance(command, BeginRun) for command in commands)  # the same run, the same packager
    assert commands == [OpenSession(7, 2, "whip", "10.0.0.9"), StartPackagerSession(7), NotifyPublishStarted(7, 2),
                        Accept(7, 2, takeover=False, reconnect=True)]
    assert c.phase(7) is RunPhase.LIVE and c.next_timer() is None
    assert c.handle_timer(10.0 + GRACE) == []  # the old deadline is gone
    assert c.segment_listed(7, 32.0) == []  # still live: not marked again


def test_a_publish_after_the_run_ended_begins_a_new_run() -> None:
    c = core()
    c.publisher_gone(publish(c), "gone", 0.0)
    c.handle_timer(GRACE)
    commands = c.publish("rtmp", "live", "10.0.0.1", LECTURE, GRACE + 1)
    assert commands[0] == BeginRun(7, "lecture", dvr=True, abr=False, protocol="rtmp")
    assert c.segment_listed(7, GRACE + 3) == [MarkLive(7, "lecture")]  # a new run is marked live again


def test_a_rotated_key_refuses_the_old_one_and_the_new_one_reconnects() -> None:
    """The shell looks keys up: after a rotation the old key finds no event, the new one the same event."""
    c = core()
    publisher = publish(c)
    c.segment_listed(7, 2.0)
    assert c.publish("rtmp", "live", "10.0.0.1", None, 5.0)[0].reason is RefusalReason.BAD_KEY  # type: ignore[union-attr]
    assert c.publisher(7) == publisher  # the publisher holding the run is not disturbed
    c.publisher_gone(publisher, "encoder restarted with the new key", 6.0)
    assert publish(c, 7.0) == publisher + 1 and c.phase(7) is RunPhase.LIVE


def test_a_newer_publisher_takes_over_when_allowed() -> None:
    c = core(takeover=True)
    old = publish(c)
    commands = c.publish("whip", "live", "10.0.0.2", LECTURE, 5.0)
    assert commands == [
        StopPublisher(old, "taken over by a newer publisher", detached=True), CloseSession(old, "taken over"),
        EndPackagerSession(7), OpenSession(7, old + 1, "whip", "10.0.0.2"), StartPackagerSession(7),
        NotifyPublishStarted(7, old + 1), Accept(7, old + 1, takeover=True, reconnect=False),
    ]
    # The old connection closes later: only its session row is its business, the run stays with the new one.
    assert c.publisher_gone(old, "connection closed", 6.0) == [CloseSession(old, "connection closed")]
    assert c.publisher(7) == old + 1 and c.next_timer() is None


def test_runs_of_different_events_are_independent() -> None:
    c = core()
    other = EventLookup(8, "seminar", dvr=False, abr=True)
    a, b = publish(c), publish(c, event=other)
    c.publisher_gone(a, "gone", 0.0)
    c.publisher_gone(b, "gone", 30.0)
    assert c.next_timer() == GRACE
    assert [command.event_id for command in c.handle_timer(GRACE)] == [7]  # type: ignore[union-attr]
    assert c.phase(8) is RunPhase.GRACE and c.next_timer() == 30.0 + GRACE


# --- drain, shutdown, failures ----------------------------------------------------------


def test_drain_ends_idle_runs_now_and_the_others_when_their_publisher_leaves() -> None:
    c = core()
    idle = EventLookup(8, "seminar", dvr=False, abr=False)
    busy = publish(c)
    c.segment_listed(7, 1.0)
    c.publisher_gone(publish(c, event=idle), "gone", 2.0)
    assert c.drain(3.0) == [EndRun(8, "node draining", None, had_segments=False)]
    assert c.draining and c.phase(7) is RunPhase.LIVE
    commands = c.publisher_gone(busy, "encoder stopped", 9.0)
    assert commands[-1] == GraceStarted(7, 0.0, "encoder stopped")  # no grace period while draining
    assert c.next_timer() == 9.0
    assert c.handle_timer(9.0) == [EndRun(7, "grace period over", None, had_segments=True)]


def test_shutdown_stops_every_publisher_and_ends_every_run() -> None:
    c = core()
    publisher = publish(c)
    c.publisher_gone(publish(c, event=EventLookup(8, "seminar", dvr=False, abr=False)), "gone", 1.0)
    assert c.shutdown(2.0) == [
        StopPublisher(publisher, "server shutting down"), EndRun(7, "server shutdown", publisher, had_segments=False),
        EndRun(8, "server shutdown", None, had_segments=False),
    ]
    assert c.events == [] and c.next_timer() is None
    assert c.publisher_gone(publisher, "terminated", 3.0) == [CloseSession(publisher, "terminated")]


def test_a_packager_that_gives_up_stops_the_publisher_then_the_run_ends_after_its_grace() -> None:
    c = core()
    publisher = publish(c)
    assert c.packager_failed(7, "ffmpeg exited 5 times", 4.0) == [
        StopPublisher(publisher, "packaging failed: ffmpeg exited 5 times")]
    assert c.failed(7) == "ffmpeg exited 5 times"
    c.publisher_gone(publisher, "terminated", 4.5)
    assert c.handle_timer(4.5 + GRACE)[0] == EndRun(7, "grace period over", None, had_segments=False)
    assert c.packager_failed(7, "late report", 100.0) == []  # about a run that is gone: nothing to do


def test_a_run_that_failed_to_start_is_forgotten() -> None:
    c = core()
    publish(c)
    c.run_failed_to_start(7)
    assert c.phase(7) is None
    assert c.publish("rtmp", "live", "10.0.0.1", LECTURE, 1.0)[0] == BeginRun(7, "lecture", dvr=True, abr=False, protocol="rtmp")


@pytest.mark.parametrize("module", ["live_core.py", "live_run.py", "publishing.py"])
def test_the_core_does_no_io(module: str) -> None:
    tree = ast.parse((Path(__file__).resolve().parents[2] / "ingest" / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"asyncio", "socket", "selectors", "trio", "time", "subprocess", "sqlalchemy"}, imported
