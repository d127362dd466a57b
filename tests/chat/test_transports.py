"""Socket.IO transports with real clients: npm socket.io-client (defaults and websocket only) and
python-socketio (websocket and long-polling only) in one room get every message in the same order;
pages from other origins are refused with a reason."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chat.fanout import DirectFanoutManager
from chat.server import CHAT
from tests.chat.clients import ChatSite

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NODE = shutil.which("node")
_FAST = {"chat_rate_messages": 1000, "chat_rate_bytes": 1_000_000}


class NodeClient:
    """``tests/chat/socketio_client.mjs`` under node: socket.io-client as a page would run it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, event: str, mode: str, expected: int) -> "NodeClient":
        assert NODE is not None and (REPO / "node_modules" / "socket.io-client").is_dir(), "run npm ci first"
        proc = await asyncio.create_subprocess_exec(
            NODE, str(HERE / "socketio_client.mjs"), url, event, mode, str(expected),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
        return cls(proc)

    async def line(self, timeout: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"node client ended early: {err.decode()[-2000:]}")
        return json.loads(raw)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@pytest.mark.chat_settings(**_FAST)
async def test_every_client_and_transport_gets_every_message_in_order(site: ChatSite) -> None:
    """Messages flow every 10 ms while npm socket.io-client joins with its defaults (long-polling,
    then the upgrade to websocket) and with websocket only: each gets, from its first message on,
    every message in the sender's order, across the upgrade; python-socketio clients on websocket
    and on long-polling only get all of them. Websocket clients are served by the direct
    fan-out, the polling ones through engineio's queue."""
    event = await site.create_event()
    sender = await site.connect(event["slug"], site.user())
    ws_reader = await site.connect(event["slug"])
    poll_reader = await site.connect(event["slug"], transports=["polling"])
    assert poll_reader.sio.transport() == "polling"
    manager = site.app[CHAT].sio.manager
    assert isinstance(manager, DirectFanoutManager)
    direct_before = manager.direct_writes
    sent = [f"m{i}" for i in range(150)]

    async def flow() -> None:
        for text in sent:
            assert (await sender.call("send", {"text": text}))["ok"] is True
            await asyncio.sleep(0.01)

    flowing = asyncio.ensure_future(flow())
    nodes = [await NodeClient.start(site.url, event["slug"], mode, sent[-1]) for mode in ("default", "websocket")]
    try:
        ready = [await n.line() for n in nodes]
        assert all("ready" in r for r in ready)
        await flowing
        results = [await n.line(timeout=25) for n in nodes]
        for chat in (sender, ws_reader, poll_reader):
            await chat.wait(lambda: len(chat.texts()) >= len(sent), what="every message")
            assert chat.texts() == sent
        default, ws_only = results
        for result in results:
            assert result["error"] is None, result
            texts = result["texts"]
            assert texts and texts == sent[sent.index(texts[0]):], f"a gap, repeat or reordering: {texts}"
        assert default["first"] == "polling" and default["upgrades"] == ["websocket"] and default["last"] == "websocket"
        assert ws_only["first"] == "websocket" and ws_only["upgrades"] == []
        assert poll_reader.sio.transport() == "polling"
        assert manager.direct_writes > direct_before, "websocket clients did not get the direct fan-out"
    finally:
        flowing.cancel()
        for n in nodes:
            await n.close()


async def test_polling_client_of_a_logged_in_user_can_post(site: ChatSite) -> None:
    """Long-polling POSTs carry the session cookie but no CSRF header: the engine.io session id is
    what authenticates them, so a logged-in user on polling only can chat."""
    event = await site.create_event()
    alice = site.user()
    poller = await site.connect(event["slug"], alice, transports=["polling"])
    reader = await site.connect(event["slug"])
    welcome = await poller.welcome()
    assert welcome["you"]["author"]["key"] == f"user:{alice.id}" and welcome["you"]["can_post"] is True
    assert (await poller.call("send", {"text": "over xhr"}))["ok"] is True
    await reader.wait(lambda: reader.texts() == ["over xhr"], what="the polled message")
    await poller.wait(lambda: poller.texts() == ["over xhr"], what="its own message")


async def test_other_origin_is_refused_with_a_reason_logged_once(site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    event = await site.create_event()
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(f"{site.url}/socket.io/?EIO=4&transport=websocket",
                                      headers={"Origin": "https://lms.example.edu"})
            assert info.value.status == 403
        resp = await http.get(f"{site.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://lms.example.edu"})
        assert resp.status == 403
        body = await resp.json()
    assert body["error"]["code"] == "origin_not_allowed"
    assert body["error"]["origin"] == "https://lms.example.edu" and body["error"]["setting"] == "chat_allowed_origins"
    assert "https://lms.example.edu" in body["error"]["message"] and "LIVE_CHAT_ALLOWED_ORIGINS" in body["error"]["message"]
    logged = [r for r in caplog.records if "lms.example.edu" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING and not logged[0].exc_info
    # the server's own pages are still welcome, on both transports
    for transports in (["websocket"], ["polling"]):
        own = await site.connect(event["slug"], transports=transports, headers={"Origin": site.url})
        assert own.sio.connected


@pytest.mark.chat_settings(chat_allowed_origins=["https://lms.example.edu"])
async def test_an_allowed_origin_connects_over_polling_with_cors(site: ChatSite) -> None:
    event = await site.create_event()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{site.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://lms.example.edu"})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://lms.example.edu"
        other = await http.get(f"{site.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://other.example"})
        assert other.status == 403
    chat = await site.connect(event["slug"], transports=["polling"], headers={"Origin": "https://lms.example.edu"})
    assert chat.sio.connected


async def test_a_message_during_the_upgrade_probe_goes_to_polling_then_websocket(site: ChatSite) -> None:
    """The upgrade step by step, as engine.io clients do it: until the client has sent ``upgrade``,
    a message must reach it by long-polling (a frame on the probing websocket fails its probe or is
    lost); after it, on the websocket. Each message exactly once, in order."""
    event = await site.create_event()
    sender = await site.connect(event["slug"], site.user())
    base = f"{site.url}/socket.io/?EIO=4"
    got: list[str] = []

    def collect(packets: list[str]) -> None:
        for p in packets:
            if p.startswith('42["messages"'):
                got.extend(m["text"] for m in json.loads(p[2:])[1])

    async with aiohttp.ClientSession() as http:
        async def poll(sid: str) -> list[str]:
            resp = await http.get(f"{base}&transport=polling&sid={sid}")
            assert resp.status == 200
            return (await resp.text()).split("\x1e")

        resp = await http.get(f"{base}&transport=polling")
        sid = json.loads((await resp.text())[1:])["sid"]
        resp = await http.post(f"{base}&transport=polling&sid={sid}", data="40" + json.dumps({"event": event["slug"]}))
        assert resp.status == 200
        seen: list[str] = []
        while not any(p.startswith('42["welcome"') for p in seen):
            seen += await poll(sid)
        pending = asyncio.ensure_future(poll(sid))  # a long-polling client always has a GET waiting
        await asyncio.sleep(0.1)
        ws = await http.ws_connect(f"{base}&transport=websocket&sid={sid}")
        await ws.send_str("2probe")
        assert (await ws.receive_str(timeout=5)) == "3probe"
        collect(await pending)  # the server ends it (a noop) so that the client can pause polling
        await sender.call("send", {"text": "during the probe"})
        with pytest.raises(asyncio.TimeoutError):
            frame = await ws.receive_str(timeout=0.3)
            raise AssertionError(f"a frame on the websocket before the upgrade: {frame}")
        await ws.send_str("5")
        await sender.call("send", {"text": "after the upgrade"})
        while "after the upgrade" not in got:
            collect([await ws.receive_str(timeout=5)])
        await ws.close()
    assert got == ["during the probe", "after the upgrade"]


@pytest.fixture
def changed_engineio(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An engineio whose aiohttp websocket wrapper changed its constructor (as a future release might)."""
    from engineio.async_drivers import aiohttp as eio_aiohttp

    class ChangedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
        def __init__(self, handler: Any, server: Any, options: Any = None) -> None:
            super().__init__(handler, server)

    monkeypatch.setattr(eio_aiohttp, "WebSocket", ChangedWebSocket)
    monkeypatch.setitem(eio_aiohttp._async, "websocket", ChangedWebSocket)
    caplog.set_level(logging.INFO)


async def test_changed_engineio_internals_fall_back_to_python_socketio_fanout(
        changed_engineio: None, site: ChatSite, caplog: pytest.LogCaptureFixture) -> None:
    import socketio

    chat = site.app[CHAT]
    assert not chat.direct_fanout and not isinstance(chat.sio.manager, DirectFanoutManager)
    assert type(chat.sio.manager) is socketio.AsyncManager
    fallback = [r.getMessage() for r in caplog.get_records("setup") if "direct fan-out off" in r.getMessage()]
    assert len(fallback) == 1 and "changed its interface" in fallback[0], fallback
    event = await site.create_event()
    sender = await site.connect(event["slug"], site.user())
    readers = [await site.connect(event["slug"]), await site.connect(event["slug"], transports=["polling"])]
    for text in ("one", "two"):
        assert (await sender.call("send", {"text": text}))["ok"] is True
    for reader in readers:
        await reader.wait(lambda: reader.texts() == ["one", "two"], what="both messages")


def test_allowed_origins_setting_is_validated_and_normalised() -> None:
    from live_server.settings import Settings, load_settings

    settings = load_settings(environ={"LIVE_CHAT_ALLOWED_ORIGINS": "https://LMS.example.edu/, http://127.0.0.1:8080"})
    assert settings.chat_allowed_origins == ["https://lms.example.edu", "http://127.0.0.1:8080"]
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(chat_allowed_origins=["lms.example.edu/course/1"])
