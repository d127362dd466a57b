"""Two server processes behind one Redis and one PostgreSQL catalog share each event's room."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import socketio

from live_server import accounts, migrations
from live_server import events as ev
from live_server.db import Database
from tests.chat.conftest import ChatClient

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server on {port} exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"server on {port} not healthy after {timeout} s")


@pytest.fixture
def two_servers(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    migrations.upgrade(postgres_url)
    db = Database(postgres_url)
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
    ports = [_free_port(), _free_port()]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIVE_")},
        "LIVE_DATABASE_URL": postgres_url, "LIVE_REDIS_URL": redis_url, "LIVE_CHAT_REDIS_CHANNEL": channel,
        "LIVE_SECRET_KEY": "shared-secret-for-both-processes", "LIVE_RTMP_ENABLED": "false", "LIVE_ROLE": "web",
        "LIVE_DATA_DIR": str(tmp_path / "var"), "LIVE_MEDIA_DIR": str(tmp_path / "media"),
        "LIVE_CHAT_PRESENCE_SECONDS": "0.5", "LIVE_CHAT_BATCH_MS": "50", "LIVE_LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "live_server.cli", "run", "--port", str(port)], cwd=REPO,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for port in ports
    ]
    try:
        for port, proc in zip(ports, procs):
            _wait_healthy(port, proc)
        yield {"ports": ports, "event": event, "channel": channel, "redis_url": redis_url}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _connect(port: int, slug: str, username: str | None = None, password: str | None = None) -> ChatClient:
    import aiohttp

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
    finally:
        for chat in (alice, bob, owner):
            if chat.sio.connected:
                await chat.sio.disconnect()
