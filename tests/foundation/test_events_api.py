"""The events API: CRUD, roles, stream keys, error bodies, one transaction per request."""

from __future__ import annotations

from typing import Any, Callable

from live_server import events as ev
from live_server.db import Database
from tests.support import Account, login


async def _as(client: Any, account: Account) -> dict[str, str]:
    return {"X-CSRF-Token": await login(client, account)}


async def test_create_read_update_delete(client: Any, make_user: Callable[..., Account]) -> None:
    h = await _as(client, make_user("lecturer"))
    payload = {
        "title": "Thermodynamics — Lecture 3",
        "description": "Entropy",
        "visibility": "public",
        "scheduled_start": "2026-12-01T10:00:00+01:00",
        "scheduled_end": "2026-12-01T12:00:00+01:00",
        "caption_language": "fr",
        "dvr": False,
    }
    resp = await client.post("/api/v1/events", json=payload, headers=h)
    assert resp.status == 201
    event = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/events/{event['id']}"
    assert event["slug"] == "thermodynamics-lecture-3"
    assert event["state"] == "scheduled" and event["dvr"] is False and event["caption_language"] == "fr"
    assert event["scheduled_start"] == "2026-12-01T09:00:00+00:00"
    stream = event["stream"]
    assert stream["publish_url"] == f"{stream['rtmp_url']}/{stream['stream_key']}"
    assert stream["whip_url"].endswith("/whip") and stream["whip_bearer_token"] == stream["stream_key"]
    assert event["playback_url"].endswith("/live/thermodynamics-lecture-3/master.m3u8")

    assert (await (await client.get(f"/api/v1/events/{event['slug']}")).json())["id"] == event["id"]
    resp = await client.patch(f"/api/v1/events/{event['id']}", json={"title": "Lecture 3", "dvr": True}, headers=h)
    assert resp.status == 200
    updated = await resp.json()
    assert updated["title"] == "Lecture 3" and updated["dvr"] is True and updated["slug"] == event["slug"]

    assert (await client.delete(f"/api/v1/events/{event['id']}", headers=h)).status == 204
    assert (await client.get(f"/api/v1/events/{event['id']}")).status == 404


async def test_roles(client: Any, aiohttp_client: Any, make_user: Callable[..., Account]) -> None:
    alice, bob, admin, viewer = make_user("lecturer"), make_user("lecturer"), make_user("admin"), make_user("viewer")
    h = await _as(client, alice)
    public = await (await client.post("/api/v1/events", json={"title": "Open"}, headers=h)).json()
    unlisted = await (await client.post("/api/v1/events", json={"title": "Hidden", "visibility": "unlisted"}, headers=h)).json()

    bob_client = await aiohttp_client(client.server)
    hb = await _as(bob_client, bob)
    seen = await (await bob_client.get(f"/api/v1/events/{public['id']}")).json()
    assert "stream" not in seen  # no stream key for people who do not own the event
    resp = await bob_client.patch(f"/api/v1/events/{public['id']}", json={"title": "Mine now"}, headers=hb)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    resp = await bob_client.patch(f"/api/v1/events/{unlisted['id']}", json={"title": "Mine now"}, headers=hb)
    assert resp.status == 404
    listing = await (await bob_client.get("/api/v1/events")).json()
    assert [e["title"] for e in listing["events"]] == ["Open"]  # unlisted events stay out of listings

    viewer_client = await aiohttp_client(client.server)
    hv = await _as(viewer_client, viewer)
    resp = await viewer_client.post("/api/v1/events", json={"title": "Nope"}, headers=hv)
    assert resp.status == 403

    admin_client = await aiohttp_client(client.server)
    ha = await _as(admin_client, admin)
    resp = await admin_client.patch(f"/api/v1/events/{unlisted['id']}", json={"title": "Fixed by admin"}, headers=ha)
    assert resp.status == 200 and (await resp.json())["stream"]["stream_key"]
    assert len((await (await admin_client.get("/api/v1/events")).json())["events"]) == 2

    anonymous = await aiohttp_client(client.server)
    assert (await anonymous.post("/api/v1/events", json={"title": "x"})).status == 401


async def test_bad_input(client: Any, make_user: Callable[..., Account]) -> None:
    h = await _as(client, make_user("lecturer"))
    resp = await client.post("/api/v1/events", data=b'{"title": ', headers={**h, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "malformed_json"
    resp = await client.post("/api/v1/events", json={"title": "x", "colour": "red"}, headers=h)
    body = await resp.json()
    assert resp.status == 422 and body["error"]["details"] == [{"field": "colour", "message": "unknown field"}]
    resp = await client.post("/api/v1/events", json={"title": "x", "visibility": "secret"}, headers=h)
    assert resp.status == 422 and "visibility" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/events", json={"title": "x", "scheduled_start": "2026-12-01T10:00:00"}, headers=h)
    assert resp.status == 422 and "time zone" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/events", json={"title": "x", "visibility": "password"}, headers=h)
    assert resp.status == 422 and "password" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/events", json=["title"], headers=h)
    assert resp.status == 422
    resp = await client.post("/api/v1/events", data=b"{}", headers={**h, "Content-Type": "text/plain"})
    assert resp.status == 400
    big = {"title": "x", "description": "a" * (2 * 1024 * 1024)}
    resp = await client.post("/api/v1/events", json=big, headers=h)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"
    resp = await client.get("/api/v1/events?state=bogus")
    assert resp.status == 422
    assert (await client.get("/api/v1/events/no-such-event")).status == 404
    assert (await client.get("/api/v1/nothing-here")).status == 404
    assert (await (await client.get("/api/v1/events")).json())["events"] == []  # none of the failures wrote anything


async def test_failed_request_writes_nothing(client: Any, make_user: Callable[..., Account]) -> None:
    h = await _as(client, make_user("lecturer"))
    first = await (await client.post("/api/v1/events", json={"title": "First", "slug": "first"}, headers=h)).json()
    await client.post("/api/v1/events", json={"title": "Second", "slug": "second"}, headers=h)
    # The title is applied before the slug conflict is found; the whole request must roll back.
    resp = await client.patch(f"/api/v1/events/{first['id']}", json={"title": "Changed", "visibility": "password"}, headers=h)
    assert resp.status == 422
    resp = await client.patch(f"/api/v1/events/{first['id']}", json={"title": "Changed", "slug": "second"}, headers=h)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "conflict"
    again = await (await client.get(f"/api/v1/events/{first['id']}")).json()
    assert again["title"] == "First" and again["slug"] == "first" and again["visibility"] == "public"


async def test_stream_key_rotation(client: Any, db: Database, make_user: Callable[..., Account]) -> None:
    h = await _as(client, make_user("lecturer"))
    event = await (await client.post("/api/v1/events", json={"title": "Keys"}, headers=h)).json()
    old_key = event["stream"]["stream_key"]
    assert db.transaction(lambda s: ev.event_for_stream_key(s, old_key).id) == event["id"]  # type: ignore[union-attr]
    assert db.transaction(lambda s: ev.event_for_stream_key(s, old_key[:-1] + ("1" if old_key[-1] == "0" else "0"))) is None
    assert db.transaction(lambda s: ev.event_for_stream_key(s, "short")) is None

    resp = await client.post(f"/api/v1/events/{event['id']}/stream-key", headers=h)
    assert resp.status == 200
    new_key = (await resp.json())["stream"]["stream_key"]
    assert new_key != old_key
    assert db.transaction(lambda s: ev.event_for_stream_key(s, old_key)) is None
    assert db.transaction(lambda s: ev.event_for_stream_key(s, new_key).id) == event["id"]  # type: ignore[union-attr]


async def test_stream_keys_never_logged(client: Any, make_user: Callable[..., Account], caplog: Any) -> None:
    caplog.set_level("DEBUG")
    h = await _as(client, make_user("lecturer"))
    event = await (await client.post("/api/v1/events", json={"title": "Quiet"}, headers=h)).json()
    await client.post(f"/api/v1/events/{event['id']}/stream-key", headers=h)
    key = event["stream"]["stream_key"]
    assert key not in caplog.text
