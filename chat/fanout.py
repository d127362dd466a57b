"""Getting chat to 1,500 viewers of one event: coalesced emits and a cheaper per-client send.

BASELINES.md: python-socketio costs ~75 µs of server CPU per message per client, so one emit per
message tops out near 13,000 deliveries/s, and 1,500 clients at 20 messages/s need 30,000. Two
changes make it fit:

* ``RoomBatcher`` emits a room's messages at most once per ``chat_batch_ms``, coalescing those
  that come sooner into one list, so the number of deliveries no longer grows with the message
  rate.
* ``DirectFanoutManager`` replaces the manager's fan-out, which creates one asyncio task per
  recipient, with a loop that frames the packet once and writes it to each client's socket
  (``DirectWebSocket``, uncompressed), keeping each client's packets in order.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Awaitable, Callable

import socketio
from aiohttp import web
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
                continue
            if sock.queue.qsize() >= self.max_backlog:
                self._skipped()
                continue
            for p in packets:
                sock.queue.put_nowait(p)


LocalManager = DirectFanoutManager


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame (RFC 6455 section 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class DirectWebSocket(eio_aiohttp.WebSocket):
    """engineio's aiohttp websocket wrapper, uncompressed, that the fan-out may write to directly.

    Compression is refused at the handshake: browsers ask for permessage-deflate, and aiohttp
    would then compress every frame once per client, which cost more server CPU than the fan-out
    itself. The engineio socket gets a ``direct_ws`` reference to this wrapper while it is open.
    """

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.transport: asyncio.Transport | None = None
        self.sending = False
        self.socket: Any = getattr(handler, "__self__", None)  # the engineio socket this websocket serves

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.transport = request.transport
        self.environ = environ
        if self.socket is not None:
            self.socket.direct_ws = self
        try:
            await self.handler(self)
        finally:
            if self.socket is not None:
                self.socket.direct_ws = None
            self.transport = None
        return self._sock

    async def send(self, message: str | bytes) -> None:
        self.sending = True  # engineio's writer may suspend here (flow control) with packets in hand
        try:
            await super().send(message)
        finally:
            self.sending = False

    def idle(self) -> bool:
        """True when engineio's writer holds no packet that a direct write could overtake.

        Its writer calls ``task_done`` for a packet just before writing it, with no suspension in
        between, and may suspend while writing only inside ``send``; so no unfinished queue item
        and no send in progress means everything queued so far is already on the transport.
        """
        return not self.sending and self.socket.queue._unfinished_tasks == 0

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


def direct_websockets(sio: socketio.AsyncServer) -> None:
    """Make ``sio`` open its websockets with ``DirectWebSocket`` (engineio has no option for it)."""
    sio.eio._async = {**sio.eio._async, "websocket": DirectWebSocket}


class RedisManager(socketio.AsyncRedisManager, DirectFanoutManager):
    """Rooms shared by several processes through Redis pub/sub; local delivery as in ``DirectFanoutManager``."""
