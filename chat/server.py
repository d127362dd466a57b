"""The chat component: a python-socketio ``AsyncServer`` on the aiohttp app, and its lifecycle.

``ChatServer.routes()`` is Socket.IO at ``/socket.io/`` (long-polling and websocket, as Socket.IO
clients expect by default; pages on other origins refused with a reason unless listed in
``chat_allowed_origins``); ``start``/``stop`` run the presence loop. The app factory builds it with
its client manager (``chat.fanout.ClientManager``: in-process, or Redis pub/sub when ``redis_url``
is set so that several processes share each event's room) and mounts ``chat.api`` beside it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any, Coroutine

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from chat import service as svc
from chat.fanout import (POST_BODY, CheckedWebSocket, ClientManager, DirectWebSocket, RoomBatcher, describe,
                         direct_fanout_problem, engineio_payload_problem, use_websocket_class)
from chat.limits import GuestGuard, SenderLimits
from chat.namespace import ChatNamespace
from chat.presence import PlayerCounts, Presence, SharedPresence
from chat.service import Room
from live_server.db import Database
from live_server.settings import Settings
from live_server.passes import MediaPasses

log = logging.getLogger(__name__)

SOCKETIO_PATH = "/socket.io/"



class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter("live_chat_messages", "Chat messages accepted", registry=registry)
        self.refused = Counter("live_chat_refused", "Chat actions and connections refused", ["code"], registry=registry)
        self.emits = Counter("live_chat_batches", "Coalesced message emits to a room", registry=registry)
        self.connections = Gauge("live_chat_connections", "Chat connections in this process", registry=registry)


class RoomCache:
    """Events as the chat sees them, cached for ``ttl`` seconds (a join storm must not query per viewer)."""

    def __init__(self, db: Database, ttl: float) -> None:
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


class ChatSocketServer(socketio.AsyncServer):
    """python-socketio's server, closing a client whose packet it cannot decode with one log line.

    python-socketio raises on a malformed Socket.IO packet (``ValueError: Unknown packet type``,
    bad JSON, an unexpected binary attachment), and engineio then logs a traceback for what is
    only a client's mistake. Here the client is disconnected and its address logged once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused_sids: set[str] = set()  # engine.io sessions being closed for a bad packet

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if eio_sid in self.refused_sids:
            return  # more of the same client's packets, already on their way out: not logged again
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:
            environ = self.environ.get(eio_sid) or {}
            request = environ.get("aiohttp.request")
            address = (request.remote if request is not None else None) or "?"
            log.warning("chat: closing the connection of %s: invalid Socket.IO packet %r (%s)",
                        address, data[:40] if isinstance(data, (str, bytes)) else type(data).__name__, describe(exc))
            self._binary_packet.pop(eio_sid, None)
            self.refused_sids.add(eio_sid)
            self.start_background_task(self._close_refused, eio_sid)

    async def _close_refused(self, eio_sid: str) -> None:
        try:
            await self.drop(eio_sid)
        finally:
            self.refused_sids.discard(eio_sid)

    async def drop(self, eio_sid: str) -> None:
        """End a client's session for a protocol error without waiting on it.

        engineio's ``disconnect`` waits until the client has fetched its queue, which a
        misbehaving long-polling client may never do.
        """
        sock = self.eio.sockets.pop(eio_sid, None)
        if sock is None:
            return
        await sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
        ws = getattr(sock, "checked_ws", None)
        if ws is not None:
            await ws.refuse()
        elif not sock.upgraded:
            sock.queue.put_nowait(None)  # answer a GET still waiting


    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and not sock.upgraded:
            # a long-polling client that said goodbye may still have a GET waiting for packets:
            # answer it now instead of holding it (and the client's read loop) for a ping interval
            sock.queue.put_nowait(None)


class OriginPolicy:
    """Which page origins may open the chat socket: the server's own, plus ``chat_allowed_origins``.

    Browsers send ``Origin`` with every websocket handshake and cross-origin request; a refused
    one gets a 403 that names the origin and the setting to change (engineio's own answer was a
    bare 400), logged once per origin.
    """

    def __init__(self, allowed: list[str], max_logged: int = 1000) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(allowed)
        self.max_logged = max_logged
        self._logged: set[str] = set()

    def allows(self, origin: str, host: str) -> bool:
        if self.any:
            return True
        normal = origin.rstrip("/").lower()
        return normal.split("://", 1)[-1] == host.lower() or normal in self.allowed

    def refusal(self, origin: str, host: str, address: str) -> web.Response:
        if origin not in self._logged and len(self._logged) < self.max_logged:
            self._logged.add(origin)
            log.warning("chat: refused a connection from a page on %s (client %s): not this server's origin "
                        "and not in chat_allowed_origins (further ones from it are not logged)", origin[:200], address)
        return web.json_response({
            "error": {
                "code": "origin_not_allowed",
                "message": f"the chat does not accept connections from pages on {origin[:200]}: only from "
                           f"this server's own pages ({host}) and the origins in the chat_allowed_origins setting "
                           f"(LIVE_CHAT_ALLOWED_ORIGINS); ask the operator to add {origin[:200]} there",
                "origin": origin[:200],
                "setting": "chat_allowed_origins",
            }
        }, status=403)


class ChatServer:
    """Everything the chat handlers share in one process."""

    def __init__(self, settings: Settings, manager: ClientManager, db: Database, media_pass: MediaPasses,
                 players: PlayerCounts | None = None, redis: Any = None, registry: CollectorRegistry | None = None) -> None:
        """``manager``: in-process or Redis (``chat.fanout.ClientManager``, built by the app factory);
        ``players``: people watching without the chat open (``web.media.ViewerCounter``); ``redis``: a
        client to share presence counts through, with ``redis_url``."""
        self.settings = settings
        self.process_id = uuid.uuid4().hex[:12]
        direct = manager.direct
        self.direct_fanout = direct
        self.origins = OriginPolicy(settings.chat_allowed_origins)
        self.sio = ChatSocketServer(
            async_mode="aiohttp",
            client_manager=manager.manager,
            transports=["polling", "websocket"],  # clients' default: long-polling first, then the upgrade
            cors_allowed_origins=self._cors_allows,  # CORS headers for the allowed cross-origin pages
            async_handlers=False,  # a client's events are handled in order; a flooder only slows itself
            max_http_buffer_size=settings.chat_max_frame_bytes,
            logger=False,
            engineio_logger=False,
        )
        self.checked_posts = direct or direct_fanout_problem() is None
        if self.checked_posts:
            use_websocket_class(self.sio, DirectWebSocket if direct else CheckedWebSocket)
        self.namespace = ChatNamespace(self)
        self.sio.register_namespace(self.namespace)
        self.batcher = RoomBatcher(self._emit_to_room, "messages", settings.chat_batch_ms / 1000)
        self.limits = SenderLimits(settings.chat_rate_messages, settings.chat_rate_bytes, settings.chat_rate_window_seconds)
        self.guests = GuestGuard(settings.chat_guest_identities_per_address, settings.chat_guest_window_seconds,
                                 settings.chat_guest_messages_per_address, settings.chat_rate_window_seconds)
        self.presence = Presence(players)
        self.metrics = ChatMetrics(registry or CollectorRegistry())
        self._history: dict[int, tuple[float, deque[dict[str, Any]]]] = {}
        self._questions: dict[int, tuple[float, list[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._viewer_totals: dict[int, int] = {}
        self.db = db
        self.rooms = RoomCache(db, settings.chat_room_ttl_seconds)
        self.media_pass = media_pass
        self._shared: SharedPresence | None = None
        if redis is not None:
            self._shared = SharedPresence(redis, settings.chat_redis_channel, self.process_id, settings.chat_presence_seconds)

    def routes(self) -> list[web.RouteDef]:
        """``/socket.io/``: long-polling and the websocket upgrade."""
        return [web.route(method, SOCKETIO_PATH, self.endpoint) for method in ("GET", "POST", "OPTIONS")]

    def limits_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "max_length": s.chat_max_message_length,
            "messages_per_window": s.chat_rate_messages,
            "bytes_per_window": s.chat_rate_bytes,
            "window_seconds": s.chat_rate_window_seconds,
        }

    def _cors_allows(self, origin: str, environ: dict[str, Any]) -> bool:
        request = environ.get("aiohttp.request")
        return bool(origin) and request is not None and self.origins.allows(origin, request.host)

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        """``/socket.io/``: the origin checked first (a 403 with a reason), then engineio."""
        origin = request.headers.get("Origin")
        if origin and not self.origins.allows(origin, request.host):
            self.metrics_refused("origin_not_allowed")
            return self.origins.refusal(origin, request.host, request.remote or "?")
        sid = request.query.get("sid")
        if request.method == "POST" and sid is not None and self.checked_posts:
            refusal = await self._check_post(request, sid)
            if refusal is not None:
                return refusal
        response: web.StreamResponse = await self.sio.handle_request(request)
        return response

    async def _check_post(self, request: web.Request, sid: str) -> web.Response | None:
        """Read a long-polling POST and refuse what engineio would raise on (it logged a traceback)."""
        limit = self.settings.chat_max_frame_bytes
        if request.content_length is not None and request.content_length > limit:
            return None  # engineio refuses it by its length, without reading it
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return None
        request[POST_BODY] = body
        problem = engineio_payload_problem(body)
        if problem is None:
            return None
        log.warning("chat: closing the long-polling session of %s: invalid engine.io packet %r (%s)",
                    request.remote or "?", body[:40], problem)
        self.start_background_task(self.sio.drop(sid))
        return web.json_response({"error": {"code": "bad_request", "message": f"invalid engine.io packet: {problem}"}},
                                 status=400)

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
        if cached is None or time.monotonic() - cached[0] > self.settings.chat_history_ttl_seconds:
            rows = await self.db.run(lambda s: svc.history(s, event_id, size))
            cached = (time.monotonic(), deque(rows, maxlen=max(size, 1)))
            self._history[event_id] = cached
        return list(cached[1]) if size else []

    async def public_questions(self, event_id: int) -> list[dict[str, Any]]:
        """The questions everyone sees, cached like the history (readers joining in a storm share one query)."""
        cached = self._questions.get(event_id)
        if cached is None or time.monotonic() - cached[0] > self.settings.chat_history_ttl_seconds:
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

    async def start(self) -> None:
        """Subscribe to Redis (with ``redis_url``) and start the presence loop; ``stop`` undoes it."""
        if not self.sio.manager_initialized:  # subscribe to Redis now, not at the first connection
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        self.start_background_task(self._presence_loop())

    async def close_connections(self) -> None:
        """Disconnect every client (on app shutdown, so aiohttp does not wait for open websockets)."""
        await self.batcher.close()
        eio = self.sio.eio
        # a websocket's writer drains its queue; a long-polling client may never come back for its
        # CLOSE packet, so nothing waits for it (engineio's disconnect() would, forever)
        sockets = list(eio.sockets.values())
        closing = [asyncio.ensure_future(sock.close(wait=sock.upgraded, reason=eio.reason.SERVER_DISCONNECT))
                   for sock in sockets]
        if closing:
            await asyncio.wait(closing, timeout=5)
        # engineio's websocket writer sends the CLOSE packet and then waits for more (the client is expected to
        # hang up): told there is nothing more, it closes the websocket itself, so aiohttp's shutdown does not
        # wait for each client to hang up (seconds per worker stop, up to the shutdown timeout for a client
        # that has gone quiet).
        for sock in sockets:
            if sock.upgraded:
                sock.queue.put_nowait(None)
        eio.sockets = {}

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


CHAT = web.AppKey("chat", ChatServer)  # the app's chat, where this process runs one (tests inspect its manager)
