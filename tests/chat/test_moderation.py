"""Moderation powers by role, deletion, bans across reconnects, slow mode, open/closed, rate limits."""

from __future__ import annotations

import asyncio

import pytest

from live_server.db import DB
from live_server.models import ChatBan, ChatMessage
from tests.chat.clients import ChatSite


async def _add_moderator(site: ChatSite, event: dict, username: str) -> None:
    resp = await site.client.put(f"/api/v1/events/{event['id']}/moderators/{username}", headers={"X-CSRF-Token": site.csrf})
    assert resp.status == 200, await resp.text()


async def test_viewers_cannot_moderate_and_forged_actions_change_nothing(site: ChatSite) -> None:
    event = await site.create_event()
    viewer, victim = site.user(), site.user()
    v = await site.connect(event["slug"], viewer)
    w = await site.connect(event["slug"], victim)
    assert (await w.welcome())["you"]["moderator"] is False
    sent = await w.call("send", {"text": "keep me"})
    for action, payload in [
        ("delete", {"id": sent["id"]}),
        ("ban", {"author": f"user:{victim.id}"}),
        ("settings", {"open": False}),
        ("settings", {"slow_mode_seconds": 60}),
    ]:
        reply = await v.call(action, payload)
        assert reply["error"]["code"] == "forbidden", (action, reply)
    assert (await w.call("send", {"text": "still open"}))["ok"]
    row = site.app[DB].transaction(lambda s: s.get(ChatMessage, sent["id"]))
    assert row.deleted_at is None
    assert site.app[DB].transaction(lambda s: s.query(ChatBan).count()) == 0
    await v.wait(lambda: len(v.of("error")) == 4, what="four errors")
    assert w.of("error") == [] and w.of("message_deleted") == [] and w.of("settings") == []


async def test_owner_and_moderator_delete_for_everyone_with_audit(site: ChatSite) -> None:
    event = await site.create_event()
    mod, viewer = site.user(), site.user()
    await _add_moderator(site, event, mod.username)
    owner = await site.connect(event["slug"], site.lecturer)
    m = await site.connect(event["slug"], mod)
    v = await site.connect(event["slug"], viewer)
    assert (await owner.welcome())["you"]["moderator"] and (await m.welcome())["you"]["moderator"]

    first = await v.call("send", {"text": "spam 1"})
    second = await v.call("send", {"text": "spam 2"})
    assert (await m.call("delete", {"id": first["id"]}))["ok"]
    assert (await owner.call("delete", {"id": second["id"]}))["ok"]
    for chat in (owner, m, v):
        await chat.wait(lambda: sorted(d["id"] for d in chat.of("message_deleted")) == sorted([first["id"], second["id"]]),
                        what="both deletions")
    rows = site.app[DB].transaction(lambda s: [(r.deleted_at is not None, r.deleted_by_id) for r in s.query(ChatMessage).order_by(ChatMessage.id)])
    assert rows == [(True, mod.id), (True, site.lecturer.id)]  # kept, with who deleted it
    late = await site.connect(event["slug"])
    assert (await late.welcome())["history"] == []
    audit = await site.client.get(f"/api/v1/events/{event['id']}/chat/messages?deleted=1")
    assert [m["deleted_by"] for m in (await audit.json())["messages"]] == [mod.id, site.lecturer.id]


async def test_ban_holds_across_reconnects_until_lifted(site: ChatSite) -> None:
    event = await site.create_event()
    troll = site.user()
    owner = await site.connect(event["slug"], site.lecturer)
    t = await site.connect(event["slug"], troll)
    assert (await owner.call("ban", {"author": f"user:{troll.id}", "reason": "insults"}))["ok"]
    await t.wait(lambda: t.disconnected.is_set(), what="the banned user's disconnect")
    assert t.of("banned") == [{"reason": "insults", "event": event["slug"]}]

    again = await site.connect(event["slug"], troll, expect_refusal=True)
    assert again.connect_error["data"] == {"code": "banned", "message": "you are banned from this chat: insults"}

    assert (await owner.call("unban", {"author": f"user:{troll.id}"}))["ok"]
    back = await site.connect(event["slug"], troll)
    assert (await back.call("send", {"text": "sorry"}))["ok"]
    bans = site.app[DB].transaction(lambda s: [(b.lifted_at is not None, b.banned_by_id) for b in s.query(ChatBan)])
    assert bans == [(True, site.lecturer.id)]


async def test_ban_is_checked_on_every_message(site: ChatSite) -> None:
    """A banned user's connection on another process stays open until then: the catalog refuses the message."""
    event = await site.create_event()
    troll = site.user()
    t = await site.connect(event["slug"], troll)

    def ban(session):  # as another server process would have recorded it
        session.add(ChatBan(event_id=event["id"], target=f"user:{troll.id}", name=troll.username, reason=""))

    site.app[DB].transaction(ban)
    assert (await t.call("send", {"text": "hi"}))["error"]["code"] == "banned"


async def test_guest_ban_follows_the_guest_token(site: ChatSite) -> None:
    event = await site.create_event(guests_allowed=True)
    owner = await site.connect(event["slug"], site.lecturer)
    g = await site.connect(event["slug"], nickname="Lou")
    token = (await g.welcome())["you"]["guest_token"]
    key = (await g.welcome())["you"]["author"]["key"]
    assert key.startswith("guest:") and token not in key
    await g.call("send", {"text": "hello"})
    other_guest = await site.connect(event["slug"], nickname="Max")
    assert (await owner.call("ban", {"author": key}))["ok"]
    await g.wait(lambda: g.disconnected.is_set(), what="disconnect")
    refused = await site.connect(event["slug"], nickname="Lou again", guest_token=token, expect_refusal=True)
    assert refused.connect_error["data"]["code"] == "banned"
    assert (await other_guest.call("send", {"text": "not me"}))["ok"]


async def test_moderators_cannot_be_banned(site: ChatSite) -> None:
    event = await site.create_event()
    mod = site.user()
    await _add_moderator(site, event, mod.username)
    m = await site.connect(event["slug"], mod)
    assert (await m.call("ban", {"author": f"user:{site.lecturer.id}"}))["error"]["code"] == "forbidden"


async def test_close_and_reopen_the_chat(site: ChatSite) -> None:
    event = await site.create_event()
    owner = await site.connect(event["slug"], site.lecturer)
    v = await site.connect(event["slug"], site.user())
    assert (await owner.call("settings", {"open": False}))["settings"]["open"] is False
    await v.wait(lambda: v.of("settings"), what="settings broadcast")
    assert v.of("settings")[-1]["open"] is False
    assert (await v.call("send", {"text": "hello?"}))["error"]["code"] == "chat_closed"
    assert (await owner.call("send", {"text": "moderators still talk"}))["ok"]
    await owner.call("settings", {"open": True})
    assert (await v.call("send", {"text": "hello!"}))["ok"]


async def test_slow_mode(site: ChatSite) -> None:
    event = await site.create_event()
    owner = await site.connect(event["slug"], site.lecturer)
    v = await site.connect(event["slug"], site.user())
    assert (await owner.call("settings", {"slow_mode_seconds": 1}))["ok"]
    assert (await v.call("send", {"text": "one"}))["ok"]
    refused = await v.call("send", {"text": "two"})
    assert refused["error"]["code"] == "slow_mode" and 0 < refused["error"]["retry_after"] <= 1
    assert (await owner.call("send", {"text": "a"}))["ok"] and (await owner.call("send", {"text": "b"}))["ok"]
    await asyncio.sleep(refused["error"]["retry_after"] + 0.05)
    assert (await v.call("send", {"text": "two"}))["ok"]
    assert (await owner.call("settings", {"slow_mode_seconds": -1}))["error"]["code"] == "bad_request"


@pytest.mark.chat_settings(chat_rate_messages=3, chat_rate_bytes=100, chat_rate_window_seconds=30, chat_max_strikes=5)
async def test_rate_limits_then_flood_disconnect(site: ChatSite) -> None:
    event = await site.create_event()
    flooder, bystander = site.user(), site.user()
    f = await site.connect(event["slug"], flooder)
    b = await site.connect(event["slug"], bystander)
    for i in range(3):
        assert (await f.call("send", {"text": f"m{i}"}))["ok"]
    limited = await f.call("send", {"text": "m3"})
    assert limited["error"]["code"] == "rate_limited" and limited["error"]["retry_after"] > 0
    assert "3 messages and 100 bytes per 30 s" in limited["error"]["message"]
    # bytes are limited too, for someone else
    assert (await b.call("send", {"text": "x" * 90}))["ok"]
    assert (await b.call("send", {"text": "y" * 20}))["error"]["code"] == "rate_limited"
    # keep hammering: after the strikes allowance the flooder is disconnected; the bystander stays
    for _ in range(10):
        if not f.sio.connected:
            break
        await f.sio.emit("send", {"text": "flood"})
    await f.wait(lambda: f.disconnected.is_set(), what="flood disconnect")
    assert any(e["code"] == "flood" for e in f.of("error"))
    assert b.sio.connected
    await b.wait(lambda: len(b.texts()) == 4, what="the four accepted messages")
    assert b.texts() == ["m0", "m1", "m2", "x" * 90]
