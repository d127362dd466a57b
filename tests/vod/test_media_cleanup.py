"""Issue 17 (2): once an event ends its live URLs serve nothing, and deleting a recording or an
event (or retention) removes every file of it, live run folders included. Real ffmpeg pushes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from vod.catalog import RECORDINGS
from live_server.layout import event_live_folder
from live_server.models import utcnow
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp


async def _run_to_the_end(live: Live, **fields: Any) -> dict[str, Any]:
    event = await live.create_event(**fields)
    pusher = await push_rtmp(live.publish_url(event), frames=20)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    return event


async def _recording(live: Live, event: dict[str, Any]) -> dict[str, Any]:
    [recording] = (await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json())["recordings"]
    return dict(recording)


async def test_ended_events_serve_no_live_media_and_deletes_remove_every_file(live: Live, aiohttp_client: Any) -> None:
    recorded, unrecorded, old = await asyncio.gather(
        _run_to_the_end(live, title="recorded"), _run_to_the_end(live, title="not recorded", record=False),
        _run_to_the_end(live, title="old"))
    headers = {"X-CSRF-Token": live.csrf}
    anonymous = await aiohttp_client(live.client.server)

    # Ended: the live URLs (DVR playlist, segments) answer 404, to anyone; the files are still on disk.
    run = live.folder(recorded["id"])
    segment = sorted(p.name for p in (run / "source").glob(f"*{live.segment_suffix}"))[0]
    for client in (anonymous, live.client):
        for tail in ("master-dvr.m3u8", "master.m3u8", "source/dvr.m3u8", f"source/{segment}"):
            assert (await client.get(f"/live/{recorded['slug']}/{tail}")).status == 404, tail

    # Deleting the recording removes its folder and the live run it was made from.
    recording = await _recording(live, recorded)
    recording_folder = live.settings.media_dir / recording["media_path"]
    assert recording_folder.is_dir() and run.is_dir()
    assert (await live.client.delete(f"/api/v1/recordings/{recording['id']}", headers=headers)).status == 204
    assert not recording_folder.exists() and not run.exists()
    assert not event_live_folder(live.settings.media_dir, recorded["id"]).exists()
    assert (await anonymous.get(f"/vod/{recording['id']}/{segment}")).status == 404

    # Deleting an event removes its live runs.
    unrecorded_runs = event_live_folder(live.settings.media_dir, unrecorded["id"])
    assert unrecorded_runs.is_dir()
    assert (await live.client.delete(f"/api/v1/events/{unrecorded['id']}", headers=headers)).status == 204
    assert not unrecorded_runs.exists()

    # Retention: runs and recordings older than the policy go, files first to last.
    old_recording = await _recording(live, old)
    old_runs = event_live_folder(live.settings.media_dir, old["id"])
    assert old_runs.is_dir()
    assert await live.app[RECORDINGS].apply_retention(1, now=utcnow() + timedelta(days=1, minutes=-5)) == []  # not old enough
    assert old_runs.is_dir()
    deleted = await live.app[RECORDINGS].apply_retention(1, now=utcnow() + timedelta(days=1, minutes=1))
    assert deleted == [old_recording["id"]]
    assert not old_runs.exists() and not (live.settings.media_dir / old_recording["media_path"]).exists()
