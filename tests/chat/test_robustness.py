"""Bad input on the chat socket gets a clean refusal or close, one log line, no traceback, and
touches no one else (issue 17 item 13, Socket.IO parts), plus a seeded mutation fuzz of
engine.io / Socket.IO packets over raw websockets."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

import aiohttp
import pytest

from tests.chat.clients import ChatSite

_FAST = {"chat_rate_messages": 10_000, "chat_rate_bytes": 10_000_000}


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, f"logged with a traceback: {[r.getMessage() for r in tracebacks][:5]}"
    assert "Traceback" not in caplog.text


class RawSocket:
    """A Socket.IO client written by hand: engine.io v4 text frames on an aiohttp websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def join(cls, http: aiohttp.ClientSession, url: str, event: str) -> "RawSocket":
        ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", autoping=True)
        opened = await ws.receive_str(timeout=5)
        assert opened.startswith("0{")
        await ws.send_str("40" + json.dumps({"event": event}))
        assert (await ws.receive_str(timeout=5)).startswith("40{")
        return cls(ws)

    async def closing(self) -> aiohttp.WSMessage:
        """Read until the server closes; its close frame."""
        while True:
            msg = await self.ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                return msg
            assert "HTTP/1.1" not in msg.data


async def test_event_id_beyond_64_bits_is_refused_cleanly(site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    refused = await site.connect(10**30, expect_refusal=True)
    assert refused.connect_error["data"]["code"] == "unknown_event"
    negative = await site.connect(-1, expect_refusal=True)
    assert negative.connect_error["data"]["code"] == "unknown_event"
    assert len([r for r in caplog.records if "unknown_event" in r.getMessage()]) == 2  # one line each
    no_traceback(caplog)


async def test_invalid_engineio_packet_closes_that_websocket_only(site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    """Before: engineio raised while decoding and aiohttp wrote ``HTTP/1.1 500`` onto the upgraded socket."""
    caplog.set_level(logging.INFO)
    event = await site.create_event()
    sender = await site.connect(event["slug"], site.user())
    good = await site.connect(event["slug"])
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.join(http, site.url, event["slug"])
        await raw.ws.send_str("x not a packet")
        msg = await raw.closing()
        assert msg.data == aiohttp.WSCloseCode.PROTOCOL_ERROR and msg.extra == "invalid engine.io packet", msg
        # and a Socket.IO packet engineio passes on but python-socketio cannot decode
        raw2 = await RawSocket.join(http, site.url, event["slug"])
        await raw2.ws.send_str('49["nonsense"]')
        await raw2.ws.send_str('49["more of it"]')  # the same client again: not logged again
        msg = await raw2.closing()
        assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION and msg.extra == "invalid Socket.IO packet", msg
        # a long-polling client sending a bad payload: a 400 with the reason, its session ended
        resp = await http.get(f"{site.url}/socket.io/?EIO=4&transport=polling")
        sid = json.loads((await resp.text())[1:])["sid"]
        resp = await http.post(f"{site.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data="9oops")
        assert resp.status == 400 and "unknown packet type 9" in (await resp.json())["error"]["message"]
        await asyncio.sleep(0.1)
        resp = await http.get(f"{site.url}/socket.io/?EIO=4&transport=polling&sid={sid}")
        assert resp.status == 400  # that session is gone
    logged = [r.getMessage() for r in caplog.records if "invalid" in r.getMessage() and "packet" in r.getMessage()]
    assert len(logged) == 3 and "engine.io" in logged[0] and "Socket.IO" in logged[1], logged
    assert "long-polling" in logged[2]
    no_traceback(caplog)
    assert (await sender.call("send", {"text": "still here"}))["ok"] is True
    await good.wait(lambda: good.texts() == ["still here"], what="the message after the bad clients")


async def test_lone_surrogate_is_a_bad_request_not_a_crash(site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    event = await site.create_event(guests_allowed=True)
    alice = await site.connect(event["slug"], site.user())
    ack = await alice.call("send", {"text": "bad \ud800 text"})
    assert ack["error"]["code"] == "bad_request" and "surrogate" in ack["error"]["message"]
    ack = await alice.call("ask", {"text": "\udfff?"})
    assert ack["error"]["code"] == "bad_request"
    refused = await site.connect(event["slug"], nickname="\ud83d", expect_refusal=True)
    assert refused.connect_error["data"]["code"] == "bad_request"
    assert (await alice.call("send", {"text": "fine \U0001f600"}))["ok"] is True  # a proper pair is fine
    await alice.wait(lambda: alice.texts() == ["fine \U0001f600"], what="the good message")
    no_traceback(caplog)


# --- fuzz ------------------------------------------------------------------------------------

SEEDS = [
    "2", "3", "5", "6", "1", "2probe", "3probe", "40", '40{"event":"EVENT"}', '40/admin,{"event":"EVENT"}',
    "41", '42["send",{"text":"hi"}]', '421["send",{"text":"hi"}]', '42["ask",{"text":"a question"}]',
    '42["vote",{"id":1}]', '42["delete",{"id":1}]', '42["ban",{"author":"guest:0011223344556677"}]',
    '42["settings",{"open":false}]', '43["ack"]', "431[]", '451-["send",{"_placeholder":true,"num":0}]',
    '461-[{"_placeholder":true,"num":0}]', "44{}", "bAAAA", "4", '42["connect"]', '42["disconnect"]',
]
PIECES = ["{", "}", "[", "]", '"', ",", ":", "-", "/", "\\", "\\u0000", "\\ud800", "null", "true", "1e999",
          "9" * 30, "\x00", "\x1e", "é", "\U0001f600", "[" * 200, '{"a":' * 50, "b", "4", "2", "5"]


def mutate(rng: random.Random, seed: str, event: str) -> str | bytes:
    text = seed.replace("EVENT", event)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        at = rng.randint(0, len(text))
        if op == 0:  # insert a piece
            text = text[:at] + rng.choice(PIECES) + text[at:]
        elif op == 1 and text:  # delete a slice
            text = text[:at] + text[at + rng.randint(1, 4):]
        elif op == 2 and text:  # replace one character
            text = text[:at] + chr(rng.choice([rng.randint(0, 127), rng.randint(128, 0xD7FF)])) + text[at + 1:]
        elif op == 3:  # truncate
            text = text[:at]
        elif op == 4:  # duplicate a slice
            text = text[:at] + text[at:at + rng.randint(1, 8)] * rng.randint(2, 4) + text[at:]
        elif op == 5:  # another packet type in front
            text = str(rng.randint(0, 9)) + text[1:]
        else:  # splice with another seed
            text = text[:at] + rng.choice(SEEDS)[rng.randint(0, 3):]
    if rng.random() < 0.05:
        return text.encode("utf-8", "surrogatepass")  # as a binary frame
    return text


@pytest.mark.chat_settings(chat_max_strikes=1000, **_FAST)
async def test_mutation_fuzz_of_socketio_packets(site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    """300 seeded mutations of engine.io / Socket.IO packets over raw websockets (reconnecting
    whenever the server closes one), bounded to ~10 s: no traceback in the log, and good clients in
    the same room (websocket and long-polling) keep receiving every message, in order."""
    caplog.set_level(logging.INFO)
    event = await site.create_event(guests_allowed=True)
    sender = await site.connect(event["slug"], site.user())
    good = [await site.connect(event["slug"]), await site.connect(event["slug"], transports=["polling"])]
    rng = random.Random(20261201)
    sent: list[str] = []
    closes = cases = 0
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as http:
        raw: RawSocket | None = None
        while cases < 300 and time.monotonic() < deadline:
            if raw is None or raw.ws.closed:
                if raw is not None:
                    closes += 1
                raw = await RawSocket.join(http, site.url, event["slug"])
            case = mutate(rng, rng.choice(SEEDS), event["slug"])
            try:
                if isinstance(case, bytes):
                    await raw.ws.send_bytes(case)
                else:
                    await raw.ws.send_str(case)
            except (ConnectionError, RuntimeError):
                raw = None
                continue
            cases += 1
            while True:  # take what the server answered, without waiting for it
                try:
                    msg = await raw.ws.receive(timeout=0.002)
                except asyncio.TimeoutError:
                    break
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    assert not (isinstance(msg.data, str) and "HTTP/1.1" in msg.data)
                    break
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
                assert "HTTP/1.1" not in str(msg.data)
            if cases % 50 == 0:
                text = f"good {cases}"
                assert (await sender.call("send", {"text": text}))["ok"] is True
                sent.append(text)
        if raw is not None:
            await raw.ws.close()
    assert cases >= 200, f"only {cases} cases in the time bound"
    assert (await sender.call("send", {"text": "the end"}))["ok"] is True
    sent.append("the end")
    for chat in good:
        await chat.wait(lambda: chat.texts() == sent, what="every good message")
    no_traceback(caplog)
    assert closes > 0  # some mutations did close their connection (the fuzz reached the error paths)
