"""Replay beacons: ranges a player played become the recording's heatmap buckets; garbage gets a 4xx."""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import pytest

from audience.collector import AUDIENCE
from audience.ranges import BeaconError, bucket_counts, parse_beacon
from live_server.db import DB
from live_server.models import Recording, RecordingState, Visibility
from live_server.settings import Settings
from tests.audience.watching import live_event
from tests.support import Account, login


@pytest.mark.parametrize("body, error", [
    (b"not json", "malformed JSON"),
    (b"[]", 'send {"ranges": [[start, end], ...]}'),
    (b'{"ranges": []}', "no ranges"),
    (b'{"ranges": [[1]]}', "each range is [start, end] in seconds"),
    (b'{"ranges": [["0", "5"]]}', "each range is [start, end] in seconds"),
    (b'{"ranges": [[true, 5]]}', "each range is [start, end] in seconds"),
    (b'{"ranges": [[5, 5]]}', "each range needs 0 <= start < end"),
    (b'{"ranges": [[-1, 5]]}', "each range needs 0 <= start < end"),
    (b'{"ranges": [[0, NaN]]}', "each range needs 0 <= start < end"),
    (b'{"ranges": [[0, 1e300]]}', "each range needs 0 <= start < end"),
    (json.dumps({"ranges": [[i, i + 1] for i in range(5)]}).encode(), "at most 4 ranges per beacon"),
    (b'{"ranges": [[0, 100], [200, 301]]}', "more than 200 s of media in one beacon"),
])
def test_bad_beacons_say_why(body: bytes, error: str) -> None:
    with pytest.raises(BeaconError) as caught:
        parse_beacon(body, max_ranges=4, max_seconds=200)
    assert str(caught.value) == error


def test_ranges_cover_half_open_buckets() -> None:
    beacon = parse_beacon(b'{"ranges": [[0, 30], [30, 32.5], [61, 62]]}', 4, 200)
    assert math.isclose(beacon.seconds, 33.5)
    counts = bucket_counts(beacon.ranges, 5)
    assert counts == {0: 1, 5: 1, 10: 1, 15: 1, 20: 1, 25: 1, 30: 1, 60: 1}  # 30 once: [0,30) ends where [30,..) starts


def _recording(app: Any, owner_id: int, visibility: Visibility = Visibility.PUBLIC, duration: float = 60.0,
               event_id: int | None = None) -> int:
    def work(session: Any) -> int:
        row = Recording(owner_id=owner_id, title="Replay", visibility=visibility, state=RecordingState.READY,
                        media_path="recordings/0/test", duration_seconds=duration, event_id=event_id)
        session.add(row)
        session.flush()
        return int(row.id)

    return int(app[DB].transaction(work))


async def _beacon(client: Any, recording: int, ranges: Any, **headers: str) -> Any:
    return await client.post(f"/api/v1/recordings/{recording}/watch", data=json.dumps({"ranges": ranges}),
                             headers={"Content-Type": "application/json", **headers})


async def test_beacons_become_the_heatmap(client: Any, settings: Settings, make_user: Callable[..., Account]) -> None:
    app = client.server.app
    prof, student = make_user("lecturer"), make_user("viewer")
    event_id = live_event(app[DB], settings.media_dir, prof.id)["id"]
    recording = _recording(app, prof.id, event_id=event_id)
    other_browser = {"Cookie": "live_viewer=" + "a1" * 12}  # an anonymous player's own handle
    assert (await _beacon(client, recording, [[0, 30]], **other_browser)).status == 204
    assert (await _beacon(client, recording, [[20, 40]], **other_browser)).status == 204  # the same player rewinds
    csrf = await login(client, student)
    assert (await _beacon(client, recording, [[20, 25]])).status == 403  # a login session needs its CSRF token
    first = await _beacon(client, recording, [[20, 25]], **{"X-CSRF-Token": csrf})
    assert first.status == 204 and len(first.cookies["live_viewer"].value) == 24  # a replay-only player gets its handle
    await app[AUDIENCE].flush()
    assert (await _beacon(client, recording, [[55, 60]], **{"X-CSRF-Token": csrf})).status == 204
    await app[AUDIENCE].flush()  # a second batch adds to the same rows

    await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    client.session.cookie_jar.clear()
    assert (await client.get(f"/api/v1/recordings/{recording}/audience")).status == 404
    await login(client, prof)
    resp = await client.get(f"/api/v1/recordings/{recording}/audience")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["bucket_seconds"] == 5
    assert [b["views"] for b in body["heatmap"]] == [1, 1, 1, 1, 3, 2, 1, 1, 0, 0, 0, 1]
    assert body["most_watched"] == 20
    assert body["viewers"] == {"total": 2, "logged_in": 1, "anonymous": 1}  # the anonymous player, the student
    assert body["watch_seconds"]["total"] == 60.0  # 30 + 20 anonymous, 5 + 5 the student
    event = await (await client.get(f"/api/v1/events/{event_id}/audience")).json()
    assert event["replay"] == {"viewers": 2, "watch_seconds": 60.0}  # the event's figures include its replays


async def test_garbage_beacons_get_4xx_and_count_nothing(
        client: Any, settings: Settings, make_user: Callable[..., Account]) -> None:
    app = client.server.app
    prof = make_user("lecturer")
    recording = _recording(app, prof.id)
    private = _recording(app, prof.id, Visibility.AUTHENTICATED)
    url = f"/api/v1/recordings/{recording}/watch"
    too_big = json.dumps({"ranges": [[0, 1]], "pad": "x" * settings.audience_beacon_max_bytes})
    cases = [
        (await client.post(url, data=too_big, headers={"Content-Type": "application/json"}), 413),
        (await client.post(url, data="ranges=0-5", headers={"Content-Type": "text/plain"}), 400),
        (await client.post(url, data="{", headers={"Content-Type": "application/json"}), 422),
        (await _beacon(client, recording, [[10, 5]]), 422),
        (await _beacon(client, recording, [[i, i + 1] for i in range(settings.audience_beacon_max_ranges + 1)]), 422),
        (await _beacon(client, recording, [[0, 10_000]]), 422),
        (await _beacon(client, 999_999, [[0, 5]]), 404),
        (await _beacon(client, private, [[0, 5]]), 404),  # the access rule: an anonymous viewer may not watch it
        (await _beacon(client, recording, [[0, 5]], Origin="https://elsewhere.example"), 403),  # cross-origin
    ]
    assert [resp.status for resp, _ in cases] == [status for _, status in cases]
    assert await app[AUDIENCE].flush() == 0  # nothing was counted
