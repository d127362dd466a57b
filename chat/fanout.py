"""Getting chat to 1,500 viewers of one event: coalesced emits and a cheaper per-client send.

BASELINES.md: python-socketio costs ~75 µs of server CPU per message per client, so one emit per
message tops out near 13,000 deliveries/s, and 1,500 clients at 20 messages/s need 30,000. Two
changes make it fit:

* ``RoomBatcher`` emits a room's messages at most once per ``chat_batch_ms``, coalescing those
  that come sooner into one list, so the number of deliveries no longer grows with the message
  rate.
* ``DirectFanoutManager`` replaces the manager's fan-out, which creates one asyncio task per
  recipient, with a loop that frames the packet once and writes it to each client's socket
  (``DirectWebSocket``, uncompressed), keeping each client's packets in order. Long-polling
  clients, and websocket clients until their upgrade is complete, get it through engineio's queue.

It relies on engineio internals, so ``direct_fanout_problem`` checks them at start and the server
falls back to python-socketio's own fan-out when they changed. ``CheckedWebSocket`` (the base of
``DirectWebSocket``, also used by that fallback) closes a websocket cleanly on a frame engineio
cannot decode instead of letting aiohttp write a 500 onto the upgraded socket.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Awaitable, Callable

import socketio
from aiohttp import WSCloseCode, web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet

log = logging.getLogger(__name__)

Emit = Callable[[str, str, list[Any]], Awaitable[None]]


class RoomBatcher:
    """Emits each room's items at most once per ``window`` seconds, as a list.

    A throttle with a leading edge: an item for a room that has not been emitted to within the
    last ``window`` goes out at once; items arriving sooner wait for the end of that window and
    go out together. A quiet chat pays no delay, a busy one at most ``window``, and the number
    of emits per room never exceeds one per ``window`` however fast messages come.
    """

    def __init__(self, emit: Emit, event: str, window: float, max_items: int = 200) -> None:
        self.emit = emit
        self.event = event
        self.window = window
        self.max_items = max_items
        self._pending: dict[str, list[Any]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.emits = 0

    async def add(self, room: str, item: Any) -> None:
        if self.window <= 0:
            self.emits += 1
            await self.emit(self.event, room, [item])
            return
        items = self._pending.setdefault(room, [])
        items.append(item)
        if room in self._timers and len(items) < self.max_items:
            return
        loop = asyncio.get_running_loop()
        wait = self._last.get(room, float("-inf")) + self.window - loop.time()
        if wait <= 0 or len(items) >= self.max_items:
            await self.flush(room)
        else:
            self._timers[room] = loop.call_later(wait, self._spawn_flush, room)

    def _spawn_flush(self, room: str) -> None:
        self._timers.pop(room, None)
        task = asyncio.get_running_loop().create_task(self.flush(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self, room: str) -> None:
        """Emit what is pending for ``room`` now (also used before a deletion so order is kept)."""
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        items = self._pending.pop(room, None)
        if items:
            now = asyncio.get_running_loop().time()
            if len(self._last) > 1024:  # forget rooms quiet for longer than a window
                self._last = {r: t for r, t in self._last.items() if now - t < self.window}
            self._last[room] = now
            self.emits += 1
            try:
                await self.emit(self.event, room, items)
            except Exception:
                log.exception("chat: emitting %d items to %s failed", len(items), room)

    async def close(self) -> None:
        for room in list(self._pending):
            await self.flush(room)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class DirectFanoutManager(socketio.AsyncManager):
    """In-process rooms whose fan-out writes one pre-built frame to each client's transport.

    The packet is encoded and framed once per emit. A client whose engineio writer is idle gets
    the frame written straight to its socket (no task wakeup, no per-client encoding); one whose
    writer still holds packets gets it through its queue, behind them, so a client always sees
    packets in the order they were sent. A client more than ``max_buffer`` bytes or
    ``max_backlog`` packets behind is skipped and counted: a slow consumer never makes the room
    wait or the server's memory grow.
    """

    # Set at wiring from the settings (``chat_fanout_max_packets``, ``chat_fanout_max_bytes``) by
    # ``configure``; these class values only serve a manager nobody configured.
    max_backlog = 64
    max_buffer = 256 * 1024
    dropped = 0
    on_drop: Callable[[], None] | None = None

    def configure(self, max_buffer: int, max_backlog: int, on_drop: Callable[[], None] | None) -> None:
        """Bounds of a client's backlog and what to call for each packet skipped (a metric)."""
        self.max_buffer = max_buffer
        self.max_backlog = max_backlog
        self.on_drop = on_drop

    def _skipped(self) -> None:
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop()
    direct_writes = 0  # emits that reached at least one client straight on its socket

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        if callback is not None or kwargs.get("binary"):
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, to=to, **kwargs)
            return
        room = to or room
        manager: Any = self
        namespace = namespace or "/"
        if namespace not in manager.rooms:
            return
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = manager.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event] + args).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        packets = [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded]
        frames = b"".join(text_frame(p.encode().encode()) for p in packets) if all(
            isinstance(p, str) for p in encoded) else None
        sockets = manager.server.eio.sockets
        wrote = False
        for sid, eio_sid in manager.get_participants(namespace, room):  # a copy: safe to iterate
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None or sock.closed:
                continue
            ws = getattr(sock, "direct_ws", None)
            if frames is not None and ws is not None and ws.idle():
                if not ws.write(frames, self.max_buffer):
                    self._skipped()
                wrote = True
                continue
            if sock.queue.qsize() >= self.max_backlog:
                self._skipped()
                continue
            for p in packets:
                sock.queue.put_nowait(p)
        if wrote:
            self.direct_writes += 1


LocalManager = DirectFanoutManager


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame (RFC 6455 section 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class CheckedWebSocket(eio_aiohttp.WebSocket):
    """engineio's aiohttp websocket wrapper that closes, with one log line, on what engineio cannot take.

    engineio decodes each frame outside any ``try``: a frame that is not an engine.io packet (``x``,
    an empty string, bad base64) raised out of the handler, and aiohttp then wrote an
    ``HTTP/1.1 500`` response onto the already upgraded socket. Here such a frame closes that
    websocket with code 1002 (protocol error) and ends engineio's loop as a closed socket would.
    """

    compress = True

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.address = "?"

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self.address = request.remote or "?"
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=self.compress)
        await self._sock.prepare(request)
        self.environ = environ
        eio_socket = getattr(self.handler, "__self__", None)
        if eio_socket is not None:
            eio_socket.checked_ws = self
        self.opened(request)
        try:
            await self.handler(self)
        except Exception as exc:  # never let aiohttp answer a 500 on an upgraded socket
            log.warning("chat: closing the websocket of %s: %s", self.address, describe(exc))
            await self._sock.close(code=WSCloseCode.INTERNAL_ERROR)
        finally:
            self.ended()
            if eio_socket is not None:
                eio_socket.checked_ws = None
        return self._sock

    async def refuse(self) -> None:
        """Close for a client's protocol error (its engineio session is closed by the caller)."""
        if self._sock is not None and not self._sock.closed:
            await self._sock.close(code=WSCloseCode.POLICY_VIOLATION, message=b"invalid Socket.IO packet")

    def opened(self, request: web.Request) -> None:
        """Hook: the websocket is open and engineio's handler is about to run."""

    def ended(self) -> None:
        """Hook: engineio's handler has returned."""

    async def wait(self) -> Any:
        data = await super().wait()
        problem = engineio_packet_problem(data)
        if problem is not None:
            log.warning("chat: closing the websocket of %s: invalid engine.io packet %r (%s)",
                        self.address, data[:40], problem)
            await self._sock.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"invalid engine.io packet")
            raise OSError("invalid engine.io packet") from None
        return data


def engineio_packet_problem(data: str | bytes) -> str | None:
    """Why engineio could not take ``data`` as one packet from a client (it would raise), or None."""
    try:
        pkt = eio_packet.Packet(encoded_packet=data)
    except Exception as exc:
        return describe(exc)
    if not 0 <= pkt.packet_type < len(eio_packet.packet_names):
        return f"unknown packet type {pkt.packet_type}"
    return None


def engineio_payload_problem(body: bytes) -> str | None:
    """The same for a long-polling POST body (packets separated by 0x1e)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    for data in text.split("\x1e"):
        problem = engineio_packet_problem(data)
        if problem is not None:
            return problem
    return None


class PostBody:
    """A long-polling POST body read (and checked) before engineio reads it as ``wsgi.input``."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self, length: int = -1) -> bytes:
        data, self.body = (self.body, b"") if length < 0 else (self.body[:length], self.body[length:])
        return data


def translate_request(request: web.Request) -> dict[str, Any]:
    """engineio's aiohttp request translation, with the body we already read for a checked POST."""
    environ: dict[str, Any] = eio_aiohttp.translate_request(request)
    body = request.get(POST_BODY)
    if body is not None:
        environ["wsgi.input"] = PostBody(body)
    return environ


POST_BODY = web.RequestKey("chat_post_body", bytes)


def describe(exc: BaseException) -> str:
    """An exception in one line, for a log line that is not a traceback."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


class DirectWebSocket(CheckedWebSocket):
    """The checked wrapper, uncompressed, that the fan-out may write to directly.

    Compression is refused at the handshake: browsers ask for permessage-deflate, and aiohttp
    would then compress every frame once per client, which cost more server CPU than the fan-out
    itself. The engineio socket gets a ``direct_ws`` reference to this wrapper while it is open.
    """

    compress = False

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.transport: asyncio.Transport | None = None
        self.sending = False
        self.socket: Any = getattr(handler, "__self__", None)  # the engineio socket this websocket serves

    def opened(self, request: web.Request) -> None:
        self.transport = request.transport
        if self.socket is not None:
            self.socket.direct_ws = self

    def ended(self) -> None:
        if self.socket is not None:
            self.socket.direct_ws = None
        self.transport = None

    async def send(self, message: str | bytes) -> None:
        self.sending = True  # engineio's writer may suspend here (flow control) with packets in hand
        try:
            await super().send(message)
        finally:
            self.sending = False

    def idle(self) -> bool:
        """True when this websocket carries the client's packets and nothing queued could be overtaken.

        A client upgrading from long-polling reaches here while its probe is in flight: until it
        has sent ``upgrade`` (``upgraded`` set, ``upgrading`` cleared) its packets still go to the
        polling queue, and a frame on the websocket would fail its probe. After that, engineio's
        writer calls ``task_done`` for a packet just before writing it, with no suspension in
        between, and may suspend while writing only inside ``send``; so no unfinished queue item
        and no send in progress means everything queued so far is already on the transport.
        """
        sock = self.socket
        return (sock.upgraded and not sock.upgrading and not self.sending
                and sock.queue._unfinished_tasks == 0)

    def write(self, frames: bytes, max_buffer: int) -> bool:
        """Write pre-built frames now; False (nothing written) if the client is ``max_buffer`` behind.

        A socket already closing is skipped silently: its client is leaving, not slow.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self._sock.closed:
            return True
        if transport.get_write_buffer_size() > max_buffer:
            return False
        transport.write(frames)
        return True


def use_websocket_class(sio: socketio.AsyncServer, cls: type[CheckedWebSocket]) -> None:
    """Make ``sio`` open its websockets with ``cls``, and take POST bodies we checked (engineio has no option for either)."""
    sio.eio._async = {**sio.eio._async, "websocket": cls, "translate_request": translate_request}


def direct_fanout_problem() -> str | None:
    """What the direct fan-out relies on in engineio and asyncio that this install lacks, or None.

    It replaces engineio's aiohttp websocket wrapper through the driver table, reads each socket's
    ``queue`` (``asyncio.Queue._unfinished_tasks``), ``upgraded``/``upgrading``/``closed`` and
    the wrapper's ``_sock``; python-socketio must encode packets as it did. Checked once at start
    on a throwaway server so that an upgrade that changes them falls back instead of misdelivering.
    """
    import inspect

    import engineio
    from engineio.async_socket import AsyncSocket

    try:
        eio = engineio.AsyncServer(async_mode="aiohttp", logger=False)
        if eio._async.get("websocket") is not eio_aiohttp.WebSocket:
            return "engineio's aiohttp driver table has no 'websocket' wrapper to replace"
        if eio._async.get("translate_request") is not eio_aiohttp.translate_request:
            return "engineio's aiohttp driver table has no 'translate_request' to wrap"
        if "wsgi.input" not in inspect.getsource(eio_aiohttp.translate_request):
            return "engineio no longer reads POST bodies from wsgi.input"
        params = list(inspect.signature(eio_aiohttp.WebSocket.__init__).parameters)
        if params != ["self", "handler", "server"] or not all(
                callable(getattr(eio_aiohttp.WebSocket, name, None)) for name in ("send", "wait", "close")):
            return "engineio's aiohttp WebSocket wrapper changed its interface"
        if "_sock" not in inspect.getsource(eio_aiohttp.WebSocket):
            return "engineio's aiohttp WebSocket wrapper no longer keeps its response in _sock"
        sock = AsyncSocket(eio, "self-check")
        if not isinstance(getattr(sock.queue, "_unfinished_tasks", None), int):
            return "an engineio socket's queue has no asyncio.Queue._unfinished_tasks"
        for name in ("upgraded", "upgrading", "closed"):
            if not isinstance(getattr(sock, name, None), bool):
                return f"an engineio socket has no boolean '{name}'"
        if not callable(getattr(AsyncSocket, "_websocket_handler", None)):
            return "engineio sockets have no _websocket_handler"
        encoded = sio_packet.Packet(sio_packet.EVENT, namespace="/", data=["x", 1]).encode()
        if encoded != '2["x",1]':
            return f"python-socketio encodes an event as {encoded!r}"
        if eio_packet.Packet(eio_packet.MESSAGE, encoded).encode() != '42["x",1]':
            return "engineio encodes a message packet differently"
        if not callable(getattr(socketio.AsyncManager, "get_participants", None)):
            return "python-socketio's manager has no get_participants"
    except Exception as exc:
        return f"self-check failed: {describe(exc)}"
    return None


class RedisManager(socketio.AsyncRedisManager, DirectFanoutManager):
    """Rooms shared by several processes through Redis pub/sub; local delivery as in ``DirectFanoutManager``."""


TESTED_ENGINEIO = "4.15"  # the minor versions pyproject.toml pins, for the fallback's log line
TESTED_SOCKETIO = "5.18"


class ClientManager:
    """The Socket.IO client manager the app factory hands the chat: in-process, or Redis pub/sub so that
    several processes share each event's room; with the direct fan-out when ``direct`` and the
    engineio internals it relies on pass their self-check, else python-socketio's own (with a log line)."""

    def __init__(self, redis_url: str, channel: str, direct: bool, max_bytes: int = 0, max_packets: int = 0,
                 on_drop: Callable[[], None] | None = None) -> None:
        if direct:
            problem = direct_fanout_problem()
            if problem is not None:
                log.warning("chat: direct fan-out off, using python-socketio's own (%s; tested with "
                            "python-engineio %s, python-socketio %s)", problem, TESTED_ENGINEIO, TESTED_SOCKETIO)
                direct = False
        self.direct = direct
        self.manager: socketio.AsyncManager
        if redis_url:
            redis_manager = RedisManager if direct else socketio.AsyncRedisManager
            self.manager = redis_manager(redis_url, channel=channel)
        else:
            self.manager = LocalManager() if direct else socketio.AsyncManager()
        if isinstance(self.manager, LocalManager):  # ``on_drop``: live_dropped_frames_total{consumer="chat_fanout"}
            self.manager.configure(max_bytes, max_packets, on_drop)
