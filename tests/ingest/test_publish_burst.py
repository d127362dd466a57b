"""Many publishes at once (lectures starting on the hour): each event's publish runs on its own.

A publish awaits the catalog (key lookup, run, session, live mark), the packager's start and the
media taps. These used to run under one lock for the whole node, so a burst of 50 publishes queued
every one of those steps behind each other and the last ones outlasted the 10 s publish timeout
("Server busy"). Now the lock is per event. The 50-pusher burst is in ``bench/publish_burst.py``;
here real ffmpeg pushers on 127.0.0.1, fewer and short, take the same path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.live import LIVE
from ingest.live_run import LiveRun
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp, stop


class _HeldTap:
    """A media tap whose ``publish_started`` for one event waits until released: a publish whose steps
    take long (a slow catalog, a slow tap), held inside its event's publish."""

    def __init__(self, held_event: int) -> None:
        self.held_event = held_event
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def publish_started(self, run: LiveRun) -> None:
        if run.event_id == self.held_event:
            self.entered.set()
            await self.release.wait()

    def on_media(self, run: LiveRun, kind: str, timestamp_ms: int, payload: bytes) -> None:
        pass

    async def publish_ended(self, run: LiveRun) -> None:
        pass

    async def run_ended(self, run: LiveRun) -> None:
        pass

    def health(self, event_id: int) -> dict[str, Any] | None:
        return None


async def test_a_slow_publish_does_not_hold_up_another_events_publish(live: Live) -> None:
    slow, other = await live.create_event(), await live.create_event()
    tap = _HeldTap(slow["id"])
    live.app[LIVE].media_taps.append(tap)
    pushers = [await push_rtmp(live.publish_url(slow), seconds=8)]
    try:
        await asyncio.wait_for(tap.entered.wait(), 15)
        pushers.append(await push_rtmp(live.publish_url(other), seconds=8))
        # With one lock for every event this publish would wait for the held one, until the RTMP publish
        # timeout (10 s) refused the held one ("Server busy"): which then never goes live below.
        await wait_for(lambda: event_state_is(live, other, "live"), 15, "the other event to go live")
        assert (await live.event(slow["id"]))["state"] == "scheduled"
        tap.release.set()
        await wait_for(lambda: event_state_is(live, slow, "live"), 15, "the held event to go live once released")
    finally:
        tap.release.set()
        for pusher in pushers:
            await stop(pusher)


async def test_simultaneous_publishes_all_go_live(live: Live) -> None:
    events = [await live.create_event(title=f"Lecture {i}") for i in range(6)]
    pushers = await asyncio.gather(*(push_rtmp(live.publish_url(e), seconds=6) for e in events))
    try:
        for event in events:
            await wait_for(lambda: event_state_is(live, event, "live"), 20, f"event {event['id']} to go live")
        assert all(p.returncode is None for p in pushers)  # none was refused ("Server busy") and gave up
    finally:
        for pusher in pushers:
            await stop(pusher)
