"""Chat messages between real Socket.IO clients: delivery, history, persistence, text-only, limits."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from chat.server import CHAT
from live_server.db import DB
from live_server.models import ChatMessage, Event, EventState
from live_server.models import utcnow
from tests.chat.clients import ChatSite


async def test_message_reaches_everyone_in_the_event_and_only_them(site: ChatSite) -> None:
    event = await site.create_event(title="Algebra")
    other = await site.create_event(title="Elsewhere")
    alice, bob = site.user(), site.user()
    a = await site.connect(event["slug"], alice)
    b = await site.connect(event["id"], bob)
    outsider = await site.connect(other["slug"], site.user())

    ack = await a.call("send", {"text": "  hello everyone  "})
    assert ack["ok"] is True and isinstance(ack["id"], int)
    for chat in (a, b):
        await chat.wait(lambda: chat.texts() == ["hello everyone"], what="the message")
    message = b.messages()[0]
    assert message["author"] == {"key": f"user:{alice.id}", "name": alice.username, "kind": "user"}
    assert message["offset"] is None  # the event is not live: no stream time
    assert outsider.texts() == []


_FAST = {"chat_rate_messages": 1000, "chat_rate_bytes": 1_000_000, "chat_history_size": 100}


@pytest.mark.parametrize("fanout", [
    pytest.param("direct", marks=pytest.mark.chat_settings(**_FAST)),
    pytest.param("python-socketio", marks=pytest.mark.chat_settings(chat_direct_fanout=False, **_FAST)),
])
async def test_everyone_gets_every_message_once_and_in_the_same_order(site: ChatSite, fanout: str) -> None:
    """Four people send at once while others join: acks and connect packets go through engineio's
    queue, room messages straight to the socket when it is idle; no one may see a gap, a repeat or a
    different order. A joiner is in the room before its history is read, so each message reaches
    it in the history, live, or both (the page shows it once), never in neither."""
    event = await site.create_event()
    people = [await site.connect(event["slug"], site.user()) for _ in range(4)]
    reader = await site.connect(event["slug"])

    async def chatter(i: int, chat: Any) -> list[int]:
        return [(await chat.call("send", {"text": f"p{i} m{n}"}))["id"] for n in range(15)]

    async def join_during_the_flood() -> list[Any]:
        joiners = []
        for _ in range(3):
            await asyncio.sleep(0.05)
            joiners.append(await site.connect(event["slug"]))
        return joiners

    *sent_ids, joiners = await asyncio.gather(*(chatter(i, c) for i, c in enumerate(people)), join_during_the_flood())
    sent = {mid for ids in sent_ids for mid in ids}
    assert len(sent) == 60
    for chat in (*people, reader):
        await chat.wait(lambda: len(chat.messages()) >= 60, what="all 60 messages")
    orders = [[m["id"] for m in chat.messages()] for chat in (*people, reader)]
    assert set(orders[0]) == sent and len(orders[0]) == 60
    assert all(order == orders[0] for order in orders), "a client saw the messages in another order"
    for i, chat in enumerate(people):
        assert [t for t in chat.texts() if t.startswith(f"p{i} ")] == [f"p{i} m{n}" for n in range(15)]
    for joiner in joiners:
        history = [m["id"] for m in (await joiner.welcome())["history"]]
        live = [m["id"] for m in joiner.messages()]
        assert set(history) | set(live) == sent, "a message fell between a joiner's history and its live feed"
        if live:  # from its first live message on, everything, in the room's order
            assert live == orders[0][orders[0].index(live[0]):]


async def test_history_on_join_is_the_last_n_in_order(site: ChatSite) -> None:
    event = await site.create_event()
    author = site.user()
    a = await site.connect(event["slug"], author)
    for i in range(4):
        assert (await a.call("send", {"text": f"m{i}"}))["ok"]
    late = await site.connect(event["slug"])  # anonymous reader of a public event
    welcome = await late.welcome()
    assert [m["text"] for m in welcome["history"]] == ["m0", "m1", "m2", "m3"]
    assert welcome["you"] == {"author": None, "moderator": False, "can_post": False}
    refused = await late.call("send", {"text": "hi"})
    assert refused["error"]["code"] == "login_required"


@pytest.mark.chat_settings(chat_history_size=2)
async def test_history_size_setting(site: ChatSite) -> None:
    event = await site.create_event()
    a = await site.connect(event["slug"], site.user())
    for i in range(3):
        await a.call("send", {"text": f"m{i}"})
    late = await site.connect(event["slug"])
    assert [m["text"] for m in (await late.welcome())["history"]] == ["m1", "m2"]


async def test_messages_are_persisted_with_author_time_and_stream_offset(site: ChatSite) -> None:
    event = await site.create_event()
    started = utcnow()

    def go_live(session: Any) -> None:
        row = session.get(Event, event["id"])
        row.state, row.started_at = EventState.LIVE, started

    site.app[DB].transaction(go_live)
    alice = site.user()
    a = await site.connect(event["slug"], alice)
    ack = await a.call("send", {"text": "at what time?"})
    row = site.app[DB].transaction(lambda s: s.get(ChatMessage, ack["id"]))
    assert row.user_id == alice.id and row.text == "at what time?" and row.event_id == event["id"]
    assert row.created_at >= started
    assert row.stream_offset is not None and 0 <= row.stream_offset == pytest.approx((row.created_at - started).total_seconds(), abs=0.01)
    await a.wait(lambda: a.messages(), what="echo")
    assert a.messages()[0]["offset"] == row.stream_offset

    transcript = await (await site.client.get(f"/api/v1/events/{event['slug']}/chat/messages")).json()
    assert [(m["text"], m["offset"]) for m in transcript["messages"]] == [("at what time?", row.stream_offset)]


async def test_html_is_kept_and_echoed_as_plain_text(site: ChatSite) -> None:
    event = await site.create_event()
    a = await site.connect(event["slug"], site.user())
    b = await site.connect(event["slug"], site.user())
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)> & &amp;'
    ack = await a.call("send", {"text": payload})
    await b.wait(lambda: b.texts() == [payload], what="the literal text")
    stored = site.app[DB].transaction(lambda s: s.get(ChatMessage, ack["id"]).text)
    assert stored == payload


async def test_bad_input_is_an_error_to_that_client_only(site: ChatSite) -> None:
    event = await site.create_event()
    a = await site.connect(event["slug"], site.user())
    b = await site.connect(event["slug"], site.user())
    cases = [
        ({"text": 42}, "bad_request"),
        ({"text": "x", "admin": True}, "bad_request"),
        (["not", "an", "object"], "bad_request"),
        ({"text": "   "}, "empty"),
        ({"text": "x" * (site.settings.chat_max_message_length + 1)}, "too_long"),
    ]
    for payload, code in cases:
        reply = await a.call("send", payload)
        assert reply["error"]["code"] == code, (payload, reply)
    assert (await a.call("no_such_thing", {}))["error"]["code"] == "unknown_event_name"
    await a.wait(lambda: len(a.of("error")) == len(cases) + 1, what="one error event per refusal")
    assert all(e["event"] for e in a.of("error"))
    assert b.of("error") == [] and b.messages() == []
    assert (await a.call("send", {"text": "still here"}))["ok"]


async def test_unknown_event_is_refused_at_connect(site: ChatSite) -> None:
    chat = await site.connect("no-such-event", expect_refusal=True)
    assert chat.connect_error == {"message": "no such event", "data": {"code": "unknown_event", "message": "no such event"}}
    bad = await site.connect(None, expect_refusal=True)
    assert bad.connect_error["data"]["code"] == "bad_request"


@pytest.mark.chat_settings(chat_max_frame_bytes=2048)
async def test_oversize_frame_closes_the_connection(site: ChatSite) -> None:
    event = await site.create_event()
    a = await site.connect(event["slug"], site.user())
    b = await site.connect(event["slug"], site.user())
    await a.sio.emit("send", {"text": "y" * 5000})
    await a.wait(lambda: a.disconnected.is_set(), what="disconnect")
    assert (await b.call("send", {"text": "unaffected"}))["ok"]


@pytest.mark.chat_settings(chat_rate_messages=1000, chat_rate_bytes=100_000_000, chat_max_message_length=10_000,
                           chat_max_frame_bytes=65_536)
async def test_a_client_that_stops_reading_is_skipped_and_everyone_else_gets_everything(site: ChatSite) -> None:
    """A viewer whose connection stops draining (a frozen tab, a dead Wi-Fi) costs the server at most
    ``max_buffer`` bytes; the room never waits for it, and what it gets later is whole frames in order."""
    event = await site.create_event()
    senders = [await site.connect(event["slug"], site.user()) for _ in range(4)]
    reader = await site.connect(event["slug"])
    manager = site.app[CHAT].sio.manager

    def small_receive_window(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    ws_url = site.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_receive_window)) as http:
        async with http.ws_connect(ws_url, max_msg_size=0) as stalled:
            assert (await stalled.receive_str()).startswith("0")
            await stalled.send_str("40" + json.dumps({"event": event["slug"]}))
            assert (await stalled.receive_str()).startswith("40")
            # from here on it reads nothing while 4 people send 6 MB: more than the kernel buffers
            # (tcp_wmem allows 4 MB), aiohttp's reader (128 KiB) and max_buffer can absorb
            padding = "x" * 9_990

            async def flood(chat: Any) -> None:
                for n in range(150):
                    assert (await chat.call("send", {"text": f"{n} {padding}"}))["ok"]

            await asyncio.gather(*(flood(chat) for chat in senders))
            await reader.wait(lambda: len(reader.messages()) >= 600, timeout=60, what="all 600 messages")
            assert manager.dropped > 0, "the stalled client was never skipped"
            # counted where it happened: the Prometheus counter matches the skips at once, no copy period
            metrics = await (await site.client.get("/metrics")).text()
            exported = re.search(r'^live_dropped_frames_total\{consumer="chat_fanout"\} (\S+)$', metrics, re.M)
            assert exported is not None and float(exported.group(1)) == manager.dropped > 0, metrics
            buffered = max(s.direct_ws.transport.get_write_buffer_size() for s in site.app[CHAT].sio.eio.sockets.values()
                           if getattr(s, "direct_ws", None) and s.direct_ws.transport)
            assert buffered <= manager.max_buffer + 64 * 1024, buffered

            # reading again: whole Engine.IO packets, the messages a subsequence of the room's order
            order = [m["id"] for m in reader.messages()]
            got: list[int] = []
            while True:
                try:
                    frame = await asyncio.wait_for(stalled.receive_str(), 1.0)
                except asyncio.TimeoutError:
                    break  # drained
                if frame.startswith('42["messages"'):
                    got += [m["id"] for m in json.loads(frame[2:])[1]]
            assert 0 < len(got) < len(order)
            positions = [order.index(mid) for mid in got]
            assert positions == sorted(positions)
