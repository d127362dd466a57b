"""A live event watched by simulated players (logged in and anonymous, some leaving early) and a chat:
the per-minute numbers, watch times and the attendance CSV match what the test did (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

from sqlalchemy import func, select

from audience import store
from audience.collector import AUDIENCE
from live_server.db import DB
from live_server.models import AudienceSession, User
from live_server.settings import Settings
from tests.audience.watching import Clock, Player, live_event, watch
from tests.chat.clients import ChatClient
from tests.support import Account, login


async def test_players_and_chat_become_the_owners_figures(
        client: Any, settings: Settings, make_user: Callable[..., Account], players: Callable[[str, str], Player]) -> None:
    app = client.server.app
    audience = app[AUDIENCE]
    clock = Clock()
    audience.clock = clock
    prof = make_user("lecturer")
    alice, bob = make_user("viewer", "alice"), make_user("viewer", "bob")
    # a display name that a spreadsheet would run as a formula
    app[DB].transaction(lambda s: setattr(s.get(User, alice.id), "display_name", '=HYPERLINK("http://x.example")'))
    event = live_event(app[DB], settings.media_dir, prof.id, "Audience lecture")
    base = str(client.make_url("/"))
    a, b, c, d = (players(base, event["slug"]) for _ in range(4))
    await a.login(alice)
    await b.login(bob)
    for player in (a, b, c, d):
        await player.start()

    # minute 0: everyone; minute 1: bob has left, c turns the subtitles rendition on, d watches 720p with the
    # captions overlay; minute 2: a and c only
    await watch([(a, "source"), (b, "source"), (c, "source"), (d, "source")], clock, 0)
    await audience.flush()  # a flush in the middle changes nothing: minutes and sessions add up
    await watch([(a, "source"), (c, "source"), (c, "subtitles"), (d, "720p+captions")], clock, 1)
    await watch([(a, "source"), (c, "source")], clock, 2)

    # the chat (real python-socketio client, logged in as alice): two messages and a question
    chat = ChatClient()
    cookie = a.http.cookie_jar.filter_cookies(client.make_url("/"))["live_session"].value
    await chat.sio.connect(base.rstrip("/"), headers={"Cookie": f"live_session={cookie}"}, auth={"event": event["slug"]},
                           transports=["websocket"], wait_timeout=10)
    try:
        await chat.welcome()
        for text in ("hello", "a question follows"):
            assert (await chat.call("send", {"text": text}))["ok"]
        assert (await chat.call("ask", {"text": "What is a monad?"}))["ok"]
    finally:
        await chat.sio.disconnect()

    written = await audience.flush()
    assert written > 0
    sessions = app[DB].transaction(lambda s: s.scalar(select(func.count()).select_from(AudienceSession)))
    assert sessions == 4  # one row per viewer, however many polls and flushes

    csrf = await login(client, prof)
    resp = await client.get(f"/api/v1/events/{event['id']}/audience")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    live = [m for m in body["minutes"] if m["viewers"]]
    assert [m["viewers"] for m in live] == [4, 3, 2]
    assert [m["new_viewers"] for m in live] == [4, 0, 0]
    assert [m["caption_share"] for m in live] == [0.0, round(2 / 3, 3), 0.0]
    assert live[1]["qualities"] == {"source": 2, "720p": 1}
    assert body["peak_viewers"] == 4 and body["peak_at"] == live[0]["minute"]
    assert app[DB].transaction(lambda s: store.peak_viewers(s, [event["id"], 999_999])) == {event["id"]: 4}  # dashboard
    assert body["viewers"] == {"total": 4, "logged_in": 2, "anonymous": 2}
    # watched: a 180 s, b 60 s, c 180 s, d 120 s
    assert body["watch_seconds"]["total"] == 540.0
    assert body["watch_seconds"]["average"] == 135.0 and body["watch_seconds"]["median"] == 150.0
    assert [j["viewers"] for j in body["joins"]] == [4]
    assert {entry["minute"]: entry["viewers"] for entry in body["leaves"]} == {
        live[0]["minute"]: 1, live[1]["minute"]: 1, live[2]["minute"]: 2}
    assert body["chat_messages"] == 2 and body["questions"] == 1
    chat_minute = [m for m in body["minutes"] if m["chat_messages"]]
    assert sum(m["chat_messages"] for m in chat_minute) == 2 and sum(m["questions"] for m in body["minutes"]) == 1

    # attendance: off by default (404 for the owner); on, the logged-in viewers only, with their minutes
    assert (await client.get(f"/api/v1/events/{event['id']}/attendance.csv")).status == 404
    resp = await client.patch(f"/api/v1/events/{event['id']}", json={"attendance_required": True},
                              headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json())["attendance_required"] is True
    resp = await client.get(f"/api/v1/events/{event['id']}/attendance.csv")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8"))))
    assert [(r["name"], r["username"], r["minutes_live"], r["minutes_replay"]) for r in rows] == [
        ("'=HYPERLINK(\"http://x.example\")", "alice", "3.0", "0.0"), ("bob", "bob", "1.0", "0.0")]
    assert rows[0]["first_joined"] < rows[0]["last_left"]
    resp = await client.get(f"/api/v1/events/{event['id']}/attendance.csv?format=excel")
    raw = await resp.read()
    assert raw[:2] == b"\xff\xfe"  # UTF-16 little-endian with its BOM: Excel keeps accents in any locale
    excel = list(csv.DictReader(io.StringIO(raw.decode("utf-16")), delimiter="\t"))
    assert excel == rows


async def test_only_the_owner_and_admins_see_the_audience(
        client: Any, settings: Settings, make_user: Callable[..., Account]) -> None:
    app = client.server.app
    prof, other, admin = make_user("lecturer"), make_user("lecturer"), make_user("admin")
    event = live_event(app[DB], settings.media_dir, prof.id)
    paths = [f"/api/v1/events/{event['id']}/audience", f"/api/v1/events/{event['slug']}/audience",
             f"/api/v1/events/{event['id']}/attendance.csv"]
    for path in paths:
        assert (await client.get(path)).status == 404  # anonymous: as if it did not exist
    await login(client, other)
    for path in paths:
        assert (await client.get(path)).status == 404
    await client.post("/api/v1/auth/logout")
    client.session.cookie_jar.clear()
    await login(client, admin)
    for path in paths:
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())  # admins export attendance for any event
    assert (await client.get("/api/v1/events/999999/audience")).status == 404
