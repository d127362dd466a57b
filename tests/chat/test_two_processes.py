"""Two server processes behind one Redis and one PostgreSQL catalog share each event's room: this test process's
app and a ``live-server run``."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
import redis

from live_server import accounts
from live_server import events as ev
from live_server.app import create_app
from live_server.db import Database
from live_server.security import StreamKeyCipher
from live_server.settings import Settings
from tests.chat.clients import ChatClient
from tests.processes import ServerProcess, base_env, free_port


SECRET = "test-secret-key-shared-by-all-workers-0123456789"  # tests.processes.base_env's


@pytest.fixture
async def two_servers(migrated_postgres: str, redis_url: str, tmp_path: Path, aiohttp_client: Any,
                      make_settings: Callable[..., Settings]) -> AsyncIterator[dict[str, Any]]:
    """Process A is this test process (the app in process, its own event loop and Redis connections), process B
    a ``live-server run``: two processes, one server start (each costs seconds of imports on a loaded machine)."""
    db = Database(migrated_postgres, stream_key_cipher=StreamKeyCipher(SECRET))
    try:
        def setup(session: Any) -> dict[str, Any]:
            prof = accounts.create_user(session, "prof", "prof-password", "lecturer")
            accounts.create_user(session, "alice", "alice-password", "viewer")
            accounts.create_user(session, "bob", "bob-password", "viewer")
            event = ev.create_event(session, prof, ev.EventCreate(title="Shared lecture", guests_allowed=True))
            return {"slug": event.slug, "id": event.id}

        event = db.transaction(setup)
    finally:
        db.close()
    channel = f"live-chat-test-{secrets.token_hex(4)}"
    common: dict[str, Any] = dict(database_url=migrated_postgres, redis_url=redis_url, chat_redis_channel=channel,
                                  rtmp_enabled=False, role="web", chat_presence_seconds=0.5, chat_batch_ms=50)
    env = base_env(tmp_path / "var", log_level="WARNING", **common)
    server = ServerProcess(env, free_port(), tmp_path / "server-b.log")
    try:
        started = asyncio.ensure_future(server.start())
        in_process = await aiohttp_client(create_app(make_settings(secret_key=SECRET, **common)))
        await started
        yield {"ports": [in_process.server.port, server.port], "event": event, "channel": channel, "redis_url": redis_url,
               "server_b": server}
    finally:
        server.stop()


async def _connect(port: int, slug: str, username: str | None = None, password: str | None = None) -> ChatClient:
    headers = {}
    if username:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"http://127.0.0.1:{port}/api/v1/auth/login", json={"username": username, "password": password})
            assert resp.status == 200, await resp.text()
            headers["Cookie"] = f"live_session={resp.cookies['live_session'].value}"
    chat = ChatClient()
    await chat.sio.connect(f"http://127.0.0.1:{port}", headers=headers, auth={"event": slug}, transports=["websocket"], wait_timeout=10)
    await chat.welcome()
    return chat


async def test_a_message_sent_to_one_process_reaches_clients_of_the_other(two_servers: dict[str, Any]) -> None:
    port_a, port_b = two_servers["ports"]
    slug = two_servers["event"]["slug"]
    r = redis.Redis.from_url(two_servers["redis_url"])
    deadline = time.monotonic() + 10
    while r.pubsub_numsub(two_servers["channel"])[0][1] < 2:  # both processes listen before anyone talks
        assert time.monotonic() < deadline, "the servers did not subscribe to the chat channel"
        await asyncio.sleep(0.1)
    r.close()

    alice = await _connect(port_a, slug, "alice", "alice-password")
    bob = await _connect(port_b, slug, "bob", "bob-password")
    owner = await _connect(port_b, slug, "prof", "prof-password")
    try:
        sent = await alice.call("send", {"text": "from process A"})
        assert sent["ok"]
        await bob.wait(lambda: bob.texts() == ["from process A"], what="the message on process B")
        assert (await bob.call("send", {"text": "from process B"}))["ok"]
        await alice.wait(lambda: alice.texts() == ["from process A", "from process B"], what="the reply on process A")

        # moderation from process B reaches process A
        assert (await owner.call("delete", {"id": sent["id"]}))["ok"]
        await alice.wait(lambda: {"id": sent["id"]} in alice.of("message_deleted"), what="deletion on process A")
        assert (await owner.call("settings", {"open": False}))["ok"]
        await alice.wait(lambda: alice.of("settings"), what="settings on process A")
        # process A may still hold the settings it cached; the catalog is asked on every message anyway
        assert (await alice.call("send", {"text": "closed?"}))["error"]["code"] == "chat_closed"

        # presence adds up both processes (alice on A; bob and prof on B)
        await alice.wait(lambda: alice.of("presence") and alice.of("presence")[-1]["viewers"] == 3, timeout=10,
                         what="site-wide viewer count")

        # Process B stops (a rolling restart) with, besides its two clients, one that never hangs up (a phone
        # gone quiet): its clients are told to go and the process exits without waiting for that one (it used
        # to wait on it for ~50 s, engineio's ping timeout, and ~5 s on each client that did hang up).
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{port_b}/socket.io/?EIO=4&transport=websocket", autoclose=False) as silent:
            assert str((await silent.receive(timeout=10)).data).startswith("0")  # engine.io open
            await silent.send_str("40" + json.dumps({"event": slug}))  # socket.io connect (a guest event)
            await silent.receive(timeout=10)  # connected (or refused): it now just sits there
            server_b = two_servers["server_b"]
            started = time.monotonic()
            server_b.signal(signal.SIGTERM)
            await asyncio.wait_for(bob.disconnected.wait(), 10)
            assert await server_b.wait(timeout=30) == 0
            assert time.monotonic() - started < 15, f"process B took {time.monotonic() - started:.1f} s to stop"
    finally:
        for chat in (alice, bob, owner):
            if chat.sio.connected:
                await chat.sio.disconnect()
