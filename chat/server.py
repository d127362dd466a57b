"""The chat component: a python-socketio ``AsyncServer`` on the aiohttp app, and its lifecycle.

``attach(app)`` mounts Socket.IO at ``/socket.io/`` (websocket transport only: no long-polling
POSTs to exempt from CSRF, one request per viewer), the moderators/transcript API, and a
``cleanup_ctx`` that starts the presence loop and stops everything with the app. The client
manager is in-process, or Redis pub/sub when ``redis_url`` is set so that several processes
share each event's room.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any, AsyncIterator, Coroutine

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from chat import service as svc
from chat.fanout import LocalManager, RedisManager, RoomBatcher, direct_websockets
from chat.limits import SenderLimits
from chat.namespace import ChatNamespace
from chat.presence import Presence, SharedPresence
from chat.service import Room
from live_server.db import Database
from live_server.keys import CHAT, DB, MEDIA_PASS, METRICS, REDIS, SETTINGS, VIEWERS
from live_server.settings import Settings
from live_server.passes import MediaPasses

log = logging.getLogger(__name__)

ROOM_TTL_SECONDS = 2.0  # how stale an event's chat settings may be on another process
HISTORY_TTL_SECONDS = 2.0  # a join storm reads the history from the catalog at most this often per event


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter("live_chat_messages", "Chat messages accepted", registry=registry)
        self.refused = Counter("live_chat_refused", "Chat actions and connections refused", ["code"], registry=registry)
        self.emits = Counter("live_chat_batches", "Coalesced message emits to a room", registry=registry)
        self.connections = Gauge("live_chat_connections", "Chat connections in this process", registry=registry)
        self.dropped = Gauge("live_chat_dropped_packets", "Packets skipped for clients too far behind", registry=registry)


class RoomCache:
    """Events as the chat sees them, cached for ``ttl`` seconds (a join storm must not query per viewer)."""

    def __init__(self, db: Database, ttl: float = ROOM_TTL_SECONDS) -> None:
        self.db = db
        self.ttl = ttl
        self._rooms: dict[int, tuple[float, Room]] = {}
        self._slugs: dict[str, int] = {}

    async def get(self, ref: str | int) -> Room:
        event_id = ref if isinstance(ref, int) else self._slugs.get(ref)
        if event_id is not None:
            cached = self._rooms.get(event_id)
            if cached is not None and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
        room = await self.db.run(lambda s: svc.load_room(s, ref))
        if len(self._rooms) > 10_000:
            self._rooms.clear()
            self._slugs.clear()
        self._rooms[room.event_id] = (time.monotonic(), room)
        self._slugs[room.slug] = room.event_id
        return room

    def invalidate(self, event_id: int) -> None:
        self._rooms.pop(event_id, None)


class ChatServer:
    """Everything the chat handlers share in one process."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.process_id = uuid.uuid4().hex[:12]
        manager: socketio.AsyncManager
        direct = settings.chat_direct_fanout
        if settings.redis_url:
            redis_manager = RedisManager if direct else socketio.AsyncRedisManager
            manager = redis_manager(settings.redis_url, channel=settings.chat_redis_channel)
        else:
            manager = LocalManager() if direct else socketio.AsyncManager()
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            transports=["websocket"],
            async_handlers=False,  # a client's events are handled in order; a flooder only slows itself
            max_http_buffer_size=settings.chat_max_frame_bytes,
            logger=False,
            engineio_logger=False,
        )
        if direct:
            direct_websockets(self.sio)
        self.namespace = ChatNamespace(self)
        self.sio.register_namespace(self.namespace)
        self.batcher = RoomBatcher(self._emit_to_room, "messages", settings.chat_batch_ms / 1000)
        self.limits = SenderLimits(settings.chat_rate_messages, settings.chat_rate_bytes, settings.chat_rate_window_seconds)
        self.presence = Presence()
        self.metrics = ChatMetrics(registry or CollectorRegistry())
        self._history: dict[int, tuple[float, deque[dict[str, Any]]]] = {}
        self._questions: dict[int, tuple[float, list[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._viewer_totals: dict[int, int] = {}
        self._shared: SharedPresence | None = None
        self._db: Database | None = None
        self._rooms: RoomCache | None = None
        self._media_pass: MediaPasses | None = None

    # --- dependencies set when the app starts --------------------------------------------------

    @property
    def db(self) -> Database:
        assert self._db is not None, "chat used before the app started"
        return self._db

    @property
    def rooms(self) -> RoomCache:
        assert self._rooms is not None, "chat used before the app started"
        return self._rooms

    @property
    def media_pass(self) -> MediaPasses:
        assert self._media_pass is not None, "chat used before the app started"
        return self._media_pass

    def limits_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "max_length": s.chat_max_message_length,
            "messages_per_window": s.chat_rate_messages,
            "bytes_per_window": s.chat_rate_bytes,
            "window_seconds": s.chat_rate_window_seconds,
        }

    def start_background_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def metrics_refused(self, code: str) -> None:
        self.metrics.refused.labels(code).inc()

    # --- messages ----------------------------------------------------------------------------

    async def _emit_to_room(self, event: str, room: str, items: list[Any]) -> None:
        self.metrics.emits.inc()
        await self.sio.emit(event, items, room=room)

    async def publish_message(self, room: Room, message: dict[str, Any]) -> None:
        self.metrics.messages.inc()
        await self.batcher.add(room.name, message)

    async def history(self, event_id: int) -> list[dict[str, Any]]:
        """The last messages of an event, from a short-lived cache refreshed from the catalog."""
        size = self.settings.chat_history_size
        cached = self._history.get(event_id)
        if cached is None or time.monotonic() - cached[0] > HISTORY_TTL_SECONDS:
            rows = await self.db.run(lambda s: svc.history(s, event_id, size))
            cached = (time.monotonic(), deque(rows, maxlen=max(size, 1)))
            self._history[event_id] = cached
        return list(cached[1]) if size else []

    async def public_questions(self, event_id: int) -> list[dict[str, Any]]:
        """The questions everyone sees, cached like the history (readers joining in a storm share one query)."""
        cached = self._questions.get(event_id)
        if cached is None or time.monotonic() - cached[0] > HISTORY_TTL_SECONDS:
            rows = await self.db.run(lambda s: svc.questions(s, event_id, include_hidden=False))
            cached = (time.monotonic(), rows)
            self._questions[event_id] = cached
        return list(cached[1])

    def forget_questions(self, event_id: int) -> None:
        self._questions.pop(event_id, None)

    def remember(self, event_id: int, message: dict[str, Any]) -> None:
        cached = self._history.get(event_id)
        if cached is not None:
            cached[1].append(message)

    def forget_history(self, event_id: int) -> None:
        self._history.pop(event_id, None)

    # --- presence ----------------------------------------------------------------------------

    def viewers(self, event_id: int) -> int:
        return max(self._viewer_totals.get(event_id, 0), self.presence.local(event_id))

    async def _presence_loop(self) -> None:
        """Share counts (Redis) and push changed totals to each room, every ``chat_presence_seconds``."""
        previous: dict[int, int] = {}
        while True:
            await asyncio.sleep(self.settings.chat_presence_seconds)
            try:
                await self._presence_tick(previous)
            except Exception:
                log.exception("chat: presence update failed")

    async def _presence_tick(self, previous: dict[int, int]) -> None:
        self.metrics.connections.set(len(self.namespace.connections))
        dropped = getattr(self.sio.manager, "dropped", 0)
        self.metrics.dropped.set(dropped)
        local = {event_id: self.presence.local(event_id) for event_id in self.presence.events()}
        if self._shared is not None:
            totals = await self._shared.exchange(local)
            gone = [e for e in previous if e not in local]
            await self._shared.forget(gone)
        else:
            totals = local
        self._viewer_totals = totals
        for event_id, total in totals.items():
            if previous.get(event_id) != total:
                # each process tells its own viewers: no cross-process echo of the same number
                await self.sio.emit("presence", {"viewers": total}, room=f"event:{event_id}", ignore_queue=True)
        previous.clear()
        previous.update(totals)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, db: Database, media_pass: MediaPasses, players: Any = None, redis: Any = None) -> None:
        self._db = db
        self._rooms = RoomCache(db)
        self._media_pass = media_pass
        self.presence.players = players
        if redis is not None:
            self._shared = SharedPresence(redis, self.settings.chat_redis_channel, self.process_id,
                                          self.settings.chat_presence_seconds)
        if not self.sio.manager_initialized:  # subscribe to Redis now, not at the first connection
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        self.start_background_task(self._presence_loop())

    async def close_connections(self) -> None:
        """Disconnect every client (on app shutdown, so aiohttp does not wait for open websockets)."""
        await self.batcher.close()
        if self.sio.eio.sockets:
            await self.sio.eio.disconnect()

    async def stop(self) -> None:
        await self.batcher.close()
        for task in list(self._tasks):
            task.cancel()
        manager: Any = self.sio.manager
        thread = getattr(manager, "thread", None)
        if thread is not None:
            thread.cancel()
        await asyncio.gather(*self._tasks, *([thread] if thread is not None else []), return_exceptions=True)
        await self.sio.shutdown()
        if self._shared is not None:
            try:
                await self._shared.forget(self.presence.events())
            except Exception:
                log.warning("chat: could not clear presence counts in Redis")
        redis = getattr(manager, "redis", None)
        if redis is not None:
            try:
                await redis.aclose()
            except Exception:
                pass


def attach(app: web.Application) -> ChatServer:
    """Mount the chat on ``app``: Socket.IO, its HTTP API, and start/stop with the app."""
    from chat import api

    settings = app[SETTINGS]
    chat = ChatServer(settings, app[METRICS].registry if METRICS in app else None)
    chat.sio.attach(app, socketio_path="socket.io")
    app[CHAT] = chat
    app.router.add_routes(api.routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await chat.start(app[DB], app[MEDIA_PASS], app.get(VIEWERS), app.get(REDIS))
        yield
        await chat.stop()

    async def on_shutdown(app: web.Application) -> None:
        await chat.close_connections()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return chat
