"""Issue 17 (8): a full disk at the end of an event does not leave it live forever.

The failure is injected at the file-system boundary: ``tempfile.mkstemp`` (how every playlist is
written, atomically) answers ENOSPC for files under the media folder once the encoder has left,
as a full disk would; the packager, the hub and the catalog run for real.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from ingest.live import LIVE
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp
from tests.support import fill_disk_under


async def test_an_event_ends_in_the_catalog_when_its_disk_is_full_and_readiness_says_so(
        live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), frames=20)
    await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
    assert (await live.client.get("/readyz")).status == 200

    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    fill_disk_under(monkeypatch, live.settings.media_dir)
    with caplog.at_level(logging.WARNING):
        await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the event to end despite the full disk")
        assert event["id"] not in live.app[LIVE].events  # a later publish starts afresh, not into a half-ended run
        ready = await live.client.get("/readyz")
        body = await ready.json()
        assert ready.status == 503 and body["checks"]["media_disk"].startswith("error"), body
    assert any("No space left" in r.getMessage() for r in caplog.records if r.name == "ingest.live")
    assert not any("never retrieved" in r.getMessage() for r in caplog.records)

    recordings = (await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json())["recordings"]
    assert [(r["state"], "No space left" in (r["error"] or "")) for r in recordings] == [("failed", True)]  # not stuck
    monkeypatch.undo()  # space freed: ready again
    assert (await live.client.get("/readyz")).status == 200
