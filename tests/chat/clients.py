"""Chat test clients: a python-socketio client that records what the server sends, and the running app with a
lecturer logged in that connects them (the ``site`` fixture of tests/chat/conftest.py makes one)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import socketio

from live_server import accounts
from live_server.db import DB
from live_server.settings import Settings
from tests.support import Account


class ChatClient:
    """A python-socketio ``AsyncClient`` that records what the server sends, for assertions."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def _any(event: str, *args: Any) -> None:
            self.events.append((event, args[0] if args else None))
            self._changed.set()

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.connect_error = data
            self._changed.set()

        @self.sio.event
        async def disconnect(*_: Any) -> None:
            self.disconnected.set()
            self._changed.set()

    def of(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    def messages(self) -> list[dict[str, Any]]:
        return [m for batch in self.of("messages") for m in batch]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages()]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "an event") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {self.events[-8:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def welcome(self) -> dict[str, Any]:
        return (await self.wait(lambda: self.of("welcome"), what="welcome"))[0]

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=10)


@dataclass
class ChatSite:
    """A running app with a lecturer (event owner) logged in through the API."""

    client: Any
    app: Any
    settings: Settings
    lecturer: Account
    csrf: str
    clients: list[ChatClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    def user(self, role: str = "viewer", username: str | None = None) -> Account:
        name = username or f"{role}-{len(self.clients)}-{time.monotonic_ns() % 100000}"
        user = self.app[DB].transaction(lambda s: accounts.create_user(s, name, "password-123", role))
        return Account(user.id, name, "password-123", role)

    async def create_event(self, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/events", json={"title": "Lecture", **fields},
                                      headers={"X-CSRF-Token": self.csrf})
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def session_cookie(self, account: Account) -> str:
        """A fresh login session for ``account`` (its own cookie, as another browser would have)."""
        async with __import__("aiohttp").ClientSession() as http:
            resp = await http.post(f"{self.url}/api/v1/auth/login",
                                   json={"username": account.username, "password": account.password})
            assert resp.status == 200, await resp.text()
            return resp.cookies["live_session"].value

    async def connect(self, event: Any, account: Account | None = None, *, nickname: str | None = None,
                      guest_token: str | None = None, cookies: dict[str, str] | None = None,
                      expect_refusal: bool = False, url: str | None = None,
                      transports: list[str] | None = None, headers: dict[str, str] | None = None) -> ChatClient:
        chat = ChatClient()
        self.clients.append(chat)
        jar = dict(cookies or {})
        if account is not None:
            jar["live_session"] = await self.session_cookie(account)
        headers = dict(headers or {})
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        auth: dict[str, Any] = {"event": event}
        if nickname is not None:
            auth["nickname"] = nickname
        if guest_token is not None:
            auth["guest_token"] = guest_token
        try:
            await chat.sio.connect(url or self.url, headers=headers, auth=auth, transports=transports or ["websocket"],
                                   wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            if not expect_refusal:
                raise AssertionError(f"connection refused: {chat.connect_error}") from None
            return chat
        assert not expect_refusal, "connection was expected to be refused"
        await chat.welcome()
        return chat

    async def close(self) -> None:
        for chat in self.clients:
            if chat.sio.connected:
                await chat.sio.disconnect()
