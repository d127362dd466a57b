"""The asyncio shell around ``RtmpServerConnection``: listener, one protocol object per connection.

All protocol decisions live in the sans-I/O core; this module only moves bytes, applies
timeouts and calls the ``StreamPublisher``/``MediaSink`` interfaces. A failure in one
connection is logged and closes that connection only.

Before its publish is accepted a connection is unauthenticated, so it is held to more: it
counts against caps on such connections (per address and in total, counted before the first
``await``), must finish handshake, ``connect`` and ``publish`` within ``handshake_timeout``
however it trickles its bytes, and its buffers get the core's small pre-publish budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ingest.publishing import MediaSink, PublishRejected, RefusalReason, StreamPublisher, printable_app, redact_key
from ingest.rtmp.chunk import ChunkLimits
from ingest.rtmp.protocol import (
    ConnectionFailed,
    Event,
    MediaReceived,
    MetadataReceived,
    PublishFinished,
    PublishRequested,
    RtmpServerConnection,
    UnsupportedCodec,
)

if TYPE_CHECKING:
    from live_server.settings import Settings

__all__ = ["RtmpServer", "rtmp_server_from_settings"]

logger = logging.getLogger(__name__)


class RtmpServer:
    """RTMP ingest listener.

    ``idle_timeout``: seconds without any received byte before a connection is dropped
    (also bounds how long a write may block). ``handshake_timeout``: from accepting the TCP
    connection to an accepted publish (handshake, connect, publish). ``publish_timeout``: how
    long the publisher may take to accept a publish. ``max_pending`` and
    ``max_pending_per_address``: connections that have not published yet, in total and per
    client address; more are closed at once. ``accepted_apps``: application names accepted
    at ``connect`` (None: any). ``read_rest``: seconds a publishing connection rests between
    reads (see ``_Connection``); 0 reads whenever bytes arrive.
    """

    def __init__(
        self,
        host: str,
        port: int,
        publisher: StreamPublisher,
        *,
        idle_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        publish_timeout: float = 10.0,
        max_pending: int = 128,
        max_pending_per_address: int = 16,
        limits: ChunkLimits | None = None,
        accepted_video_codecs: Collection[str] = ("h264",),
        accepted_audio_codecs: Collection[str] = ("aac",),
        accepted_apps: Collection[str] | None = None,
        read_size: int = 64 * 1024,
        read_rest: float = 0.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.publisher = publisher
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.publish_timeout = publish_timeout
        self.max_pending = max_pending
        self.max_pending_per_address = max_pending_per_address
        self.limits = limits or ChunkLimits()
        self.accepted_video_codecs = tuple(accepted_video_codecs)
        self.accepted_audio_codecs = tuple(accepted_audio_codecs)
        self.accepted_apps = None if accepted_apps is None else tuple(accepted_apps)
        self.read_size = read_size
        self.read_rest = read_rest
        self._resting: list[_Connection] = []  # publishing connections whose reading waits for the next tick
        self._tick: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._pending_total = 0
        self._pending_by_address: dict[str, int] = {}
        self._cap_logged: set[str] = set()  # addresses ("" for the total) whose refusals were logged

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def pending_count(self) -> int:
        """Connections that have not (yet) had a publish accepted."""
        return self._pending_total

    def _admit(self, address: str) -> bool:
        """Count a new unauthenticated connection, or refuse it (logged once per episode)."""
        from_address = self._pending_by_address.get(address, 0)
        if from_address >= self.max_pending_per_address:
            if address not in self._cap_logged:
                self._cap_logged.add(address)
                logger.warning(
                    "refusing RTMP connections from %s: %d of its connections have not published yet "
                    "(rtmp_max_pending_per_address); refusals are logged again once it is below the cap",
                    address,
                    from_address,
                )
            return False
        if self._pending_total >= self.max_pending:
            if "" not in self._cap_logged:
                self._cap_logged.add("")
                logger.warning(
                    "refusing RTMP connections: %d connections have not published yet "
                    "(rtmp_max_pending_connections); refusals are logged again once below the cap",
                    self._pending_total,
                )
            return False
        self._pending_total += 1
        self._pending_by_address[address] = from_address + 1
        return True

    def _release(self, address: str) -> None:
        """A counted connection published or went away."""
        self._pending_total -= 1
        left = self._pending_by_address.get(address, 1) - 1
        if left > 0:
            self._pending_by_address[address] = left
        else:
            self._pending_by_address.pop(address, None)
        if left < self.max_pending_per_address:
            self._cap_logged.discard(address)
        if self._pending_total < self.max_pending:
            self._cap_logged.discard("")

    def _rest(self, connection: "_Connection") -> None:
        """Pause ``connection``'s reading until the next tick (one timer for every resting connection)."""
        self._resting.append(connection)
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self.read_rest, self._wake)

    def _wake(self) -> None:
        self._tick = None
        resting, self._resting = self._resting, []
        for connection in resting:
            connection.wake()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self._requested_port)
        logger.info("RTMP ingest listening on %s", self.address)

    @property
    def address(self) -> str:
        """Where encoders connect, as host:port (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and close every connection (their sinks get closed too)."""
        if self._server is not None:
            self._server.close()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._resting.clear()
        connections = list(self._connections)
        for connection in connections:
            connection.shut_down()
        await asyncio.gather(*(c.finished for c in connections), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class _Connection(asyncio.BufferedProtocol):
    """One RTMP connection: the sans-I/O core fed straight from the socket.

    Received bytes land in one buffer per connection (``recv_into``, no ``bytes`` per read) and
    go to the core from ``buffer_updated``; a read that only carries media of an accepted publish
    (the usual read: a frame or two) is handed to the sink right there, with no task, future or
    timer per read. An encoder writes each frame separately, a hundred reads a second per stream,
    so what the shell costs per read is most of what RTMP costs us (``bench/rtmp_ll_replay.py``
    times the core and the sink alone). Anything else (a publish to decide, metadata, a refusal)
    is handled by a task while reading is paused, so events keep their order.

    Resting: ffmpeg writes a frame as several small writes (message header, each chunk, each
    continuation byte), so reading whenever bytes arrive meant a read (a wake-up, a ``recv``, a
    pass of the parser) per write, about 130 a second for a 2.5 Mb/s stream. A publishing
    connection whose read carried media may pause its reading for ``read_rest`` (the app's
    ``rtmp_read_rest_seconds``, 20 ms; all resting connections share one timer), then one read
    takes what came meanwhile. A frame reaches
    the muxer at most that much later (parts are 334 ms). A read that filled the buffer reads on at
    once, so the rest never caps a stream's bitrate. The timer's tick makes that read itself, straight
    from the socket while the transport stays paused: resuming the transport only for its next read
    to pause it again cost two ``epoll_ctl`` calls and a wake-up of the loop per read, about a fifth
    of what RTMP costs us. Only a tick that finds nothing (or the end, or an error) hands the
    socket back to the transport.

    Timeouts: one timer per connection, re-armed when it fires early. No data for
    ``idle_timeout`` (outside such a task) closes the connection, and so does reaching the
    session's publish deadline (``handshake_timeout`` after accepting) before a publish was
    accepted; a peer that stops reading what we write for ``idle_timeout`` is dropped too.
    """

    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self._loop = asyncio.get_running_loop()
        self._buffer = memoryview(bytearray(server.read_size))
        self.transport: asyncio.Transport | None = None
        self.remote = "-"
        self._address = ""
        self.conn = RtmpServerConnection(
            limits=server.limits,
            accepted_video_codecs=server.accepted_video_codecs,
            accepted_audio_codecs=server.accepted_audio_codecs,
            accepted_apps=server.accepted_apps,
        )
        self.sink: MediaSink | None = None
        self.key = "-"  # redacted stream key, for logs
        self.terminated: str | None = None
        #: why the connection closes, once decided (the first reason wins)
        self.reason: str | None = None
        #: loop time by which a publish must be accepted; None once one was (or never counted)
        self.deadline: float | None = None
        self._counted = False
        self._last_data = self._loop.time()  # of the last read, or of the end of a handler task
        self._timer: asyncio.TimerHandle | None = None
        self._handler: asyncio.Task[None] | None = None  # events being handled while reading is paused
        self._write_paused_at: float | None = None
        self._lingering = False  # dropping what the encoder still sends after our error status
        self._linger_until: float | None = None  # loop time the linger ends
        self._finisher: asyncio.Task[None] | None = None
        self._lost = False
        self._resting = False  # reading paused until the server's next tick
        self._fd = -1  # the socket's descriptor, read at the tick (-1: none, the transport reads)
        self.finished: asyncio.Future[None] = self._loop.create_future()  # the sink is closed

    # -- transport callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        # A TLS transport's socket holds ciphertext: only a plain TCP socket may be read directly.
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self._fd = sock.fileno() if plain else -1
        # Counted before anything else runs: a burst of connections cannot all pass the check.
        if not self.server._admit(self._address):
            self._lost = True
            self.finished.set_result(None)
            transport.abort()
            return
        self._counted = True
        self.server._connections.add(self)
        now = self._loop.time()
        self.deadline = now + self.server.handshake_timeout
        self._last_data = now
        self._arm(now)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._last_data = self._loop.time()
        if self._lingering or self.reason is not None:
            return
        try:
            events = self.conn.receive_data(self._buffer[:nbytes])
            sink = self.sink
            for event in events:
                if type(event) is not MediaReceived or sink is None:
                    self._pause_for(events)
                    return
            # The usual read: media of an accepted publish, or nothing complete yet (a handshake half).
            if sink is not None:
                for event in events:
                    sink.on_media(event.kind, event.timestamp, event.payload)  # type: ignore[union-attr]
                if nbytes < len(self._buffer) and self.server.read_rest > 0 and not self._resting:
                    self._resting = True
                    self._pause_reading()
                    self.server._rest(self)
            if self.conn.has_data_to_send:
                self._write(self.conn.data_to_send())
        except Exception:
            logger.exception("RTMP connection from %s (key %s) failed", self.remote, self.key)
            self._close("internal error")

    def eof_received(self) -> bool:
        if self.reason is None:
            self.reason = "client disconnected"
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if exc is not None and self.reason is None:
            self.reason = f"connection lost: {str(exc) or type(exc).__name__}"
            logger.info("RTMP connection from %s (key %s) lost: %r", self.remote, self.key, exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._finisher = asyncio.ensure_future(self._finish())

    def pause_writing(self) -> None:
        # The peer does not read what we send: stop reading it too (what it sends may need
        # answers), and drop it if that lasts ``idle_timeout``.
        self._write_paused_at = self._loop.time()
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused_at = None
        if self._handler is None and not self._resting:
            self._resume_reading()

    def wake(self) -> None:
        """The server's tick: a resting connection reads again (unless something else paused it): what
        came meanwhile at once, from here; the transport reads again only when this read did not rest
        the connection again (nothing came, a full buffer, the end, an error, a lingering close)."""
        self._resting = False
        if self._handler is None and self._write_paused_at is None and not self._lost:
            self._read_now()
            if not self._resting and self._handler is None and self._write_paused_at is None and not self._lost:
                self._resume_reading()

    def _read_now(self) -> None:
        """One read of what arrived during the rest, as the transport would make it (``recv_into`` our
        buffer, then ``buffer_updated``), with the transport still paused. Nothing to read, or the end
        of the stream: left to the transport once it resumes (it meets the end itself). An error
        closes the connection as the transport would (``connection_lost`` with the error)."""
        transport = self.transport
        if self._fd < 0 or transport is None or transport.is_closing() or transport.is_reading():
            return
        try:
            nbytes = os.readv(self._fd, [self._buffer])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if self.reason is None:
                self.reason = f"connection lost: {str(exc) or type(exc).__name__}"
                logger.info("RTMP connection from %s (key %s) lost: %r", self.remote, self.key, exc)
            transport.abort()
            return
        if nbytes:
            self.buffer_updated(nbytes)

    # -- handling events that need the loop -----------------------------------------------------
    def _pause_for(self, events: list[Event]) -> None:
        """Events other than media: handled by a task, reading paused until it is done."""
        self._pause_reading()
        self._handler = asyncio.ensure_future(self._handle_events(events))

    async def _handle_events(self, events: list[Event]) -> None:
        try:
            closing = await self._handle(events)
            if self.conn.has_data_to_send:
                self._write(self.conn.data_to_send())
            if closing is not None:
                self._close(closing)
            elif self.conn.closed:
                self._close(self.terminated or "client disconnected")
        except Exception:
            logger.exception("RTMP connection from %s (key %s) failed", self.remote, self.key)
            self._close("internal error")
        finally:
            self._handler = None
            now = self._last_data = self._loop.time()
            if not self._lost:
                self._arm(now)
                if self._write_paused_at is None:
                    self._resume_reading()

    async def _handle(self, events: list[Event]) -> str | None:
        """Act on events; return a reason when the connection must close."""
        closing: str | None = None
        queue = list(events)
        i = 0
        while i < len(queue):
            event = queue[i]
            i += 1
            if isinstance(event, MediaReceived):
                if self.sink is not None:
                    self.sink.on_media(event.kind, event.timestamp, event.payload)
            elif isinstance(event, MetadataReceived):
                if self.sink is not None:
                    await self.sink.on_metadata(event.metadata)
            elif isinstance(event, PublishRequested):
                queue.extend(await self._start_publish(event))
            elif isinstance(event, PublishFinished):
                logger.info("publish of key %s from %s ended (%s)", self.key, self.remote, event.reason)
                await self._close_sink(f"publisher ended the stream ({event.reason})")
            elif isinstance(event, UnsupportedCodec):
                logger.warning(
                    "rejecting RTMP stream with key %s from %s: %s", self.key, self.remote, event.reason
                )
                closing = event.reason
                self._lingering = True
                await self._close_sink(event.reason)
            elif isinstance(event, ConnectionFailed):
                logger.warning(
                    "closing RTMP connection from %s (key %s): %s", self.remote, self.key, event.reason
                )
                closing = event.reason
        return closing

    async def _start_publish(self, event: PublishRequested) -> list[Event]:
        self.key = redact_key(event.stream_key)
        if self.sink is not None:  # a previous publish on this connection was not closed
            await self._close_sink("publisher started a new stream")
        try:
            async with asyncio.timeout(self.server.publish_timeout):
                sink = await self.server.publisher.start_publish(
                    protocol="rtmp",
                    app=event.app,
                    stream_key=event.stream_key,
                    remote_address=self.remote,
                    terminate=self._terminate,
                )
        except PublishRejected as exc:
            logger.info(
                "publish refused for key %s app %s from %s: %s (%s)",
                self.key,
                printable_app(event.app),
                self.remote,
                exc.message,
                exc.reason.value,
            )
            self.conn.reject_publish(refusal_code(exc.reason), exc.message)
            return []
        except TimeoutError:
            logger.warning(
                "publisher did not answer within %g s for key %s", self.server.publish_timeout, self.key
            )
            self.conn.reject_publish("NetStream.Publish.Failed", "Server busy, try again.")
            return []
        if self._lost:  # the encoder went away meanwhile: its publish ends at once
            self.sink = sink
            return []
        self.sink = sink
        self.release_pending()
        logger.info("publish started: app %s key %s from %s", printable_app(event.app), self.key, self.remote)
        return self.conn.accept_publish()

    def _terminate(self, reason: str) -> None:
        """The publisher side ends this publish (takeover, packaging failure, shutdown): tell
        the encoder why, then drop the connection (after a short linger, so it can read it)."""
        if self.terminated is None and not self._lost:
            self.terminated = reason
            logger.info("RTMP publish of key %s from %s terminated by the server: %s", self.key, self.remote, reason)
            self.conn.close_publish("NetStream.Publish.Rejected", f"publishing stopped by the server: {reason}")
            out = self.conn.data_to_send()
            if out and self.transport is not None and not self.transport.is_closing():
                self.transport.write(out)
                self._lingering = True
            self._close(reason)

    # -- closing --------------------------------------------------------------------------------
    def _close(self, reason: str) -> None:
        """Close for ``reason`` (the first one given is kept). After an error status to a publishing
        encoder, let it read it: what it still sends is read and dropped until it hangs up, at most
        ``idle_timeout`` (ffmpeg reads one incoming message per packet it writes, and an encoder with
        lookahead writes its first video packet seconds after starting; closing at once would only
        show it "Broken pipe")."""
        if self.reason is None:
            self.reason = reason
        transport = self.transport
        if transport is None or self._lost:
            return
        if self._lingering:
            if self._linger_until is None:
                now = self._loop.time()
                self._linger_until = now + self.server.idle_timeout
                self._resume_reading()
                self._arm(now)  # the timer closes the connection at the end of the linger
        else:
            transport.close()

    def shut_down(self) -> None:
        """The server stops: close now (the sink is closed with "server shutting down"); what we
        still had to send gets a second, then the connection is cut."""
        self.reason = "server shutting down"
        self._linger_until = None
        if self._handler is not None:
            self._handler.cancel()
        transport = self.transport
        if transport is not None and not self._lost:
            transport.close()
            self._loop.call_later(1.0, transport.abort)

    async def _finish(self) -> None:
        """After the connection is gone: the events in hand are handled, then the sink is closed."""
        try:
            if self._handler is not None:
                await asyncio.gather(self._handler, return_exceptions=True)
            reason = self.terminated or self.reason or "client disconnected"
            await self._close_sink(reason)
        finally:
            self.release_pending()
            self.server._connections.discard(self)
            if not self.finished.done():
                self.finished.set_result(None)

    async def _close_sink(self, reason: str) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            try:
                await sink.close(reason)
            except Exception:
                logger.exception("closing the media sink for key %s failed", self.key)

    def release_pending(self) -> None:
        """Leave the unauthenticated pool (publish accepted, or the connection ended); once."""
        if self._counted:
            self._counted = False
            self.deadline = None
            self.server._release(self._address)

    # -- I/O helpers ----------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.transport.is_reading():
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self.transport.is_reading():
            self.transport.resume_reading()

    # -- the one timer ------------------------------------------------------------------------------
    def _next_check(self, now: float) -> float:
        """When the timer must look again: the linger's end; while a handler task runs, an idle
        period from now (a publish being decided has its own timeout, and the task's end counts as
        data); else the end of the idle period since the last data, of a write stall, or the
        publish deadline, whichever comes first."""
        idle = self.server.idle_timeout
        if self._linger_until is not None:
            return self._linger_until
        if self._handler is not None:
            return now + idle
        limit = self._last_data + idle
        if self._write_paused_at is not None:
            limit = min(limit, self._write_paused_at + idle)
        deadline = self.deadline
        return limit if deadline is None or deadline > limit else deadline

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._next_check(now), self._check)

    def _check(self) -> None:
        self._timer = None
        if self._lost or self.transport is None:
            return
        now = self._loop.time()
        due = self._next_check(now)
        if now < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        idle = self.server.idle_timeout
        if self._linger_until is not None:
            self._linger_until = None
            self.transport.close()
        elif self._write_paused_at is not None and now >= self._write_paused_at + idle:
            self._close_for_timeout(f"connection lost: the client read nothing we sent for {idle:g} s")
            self.transport.abort()
        elif self.deadline is not None and now >= self.deadline:
            reason = (
                f"no publish within {self.server.handshake_timeout:g} s of connecting "
                "(handshake, connect and publish must finish by then)"
            )
            logger.info("closing RTMP connection from %s: %s", self.remote, reason)
            self._close_for_timeout(reason)
        else:
            reason = f"no data for {idle:g} s"
            logger.info("closing idle RTMP connection from %s (key %s): %s", self.remote, self.key, reason)
            self._close_for_timeout(reason)

    def _close_for_timeout(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        assert self.transport is not None
        self.transport.close()


def refusal_code(reason: RefusalReason) -> str:
    """The NetStream status code an RTMP encoder gets for a refusal: "Rejected" when retrying later
    may work (the node is stopping), "BadName" when the stream name (key, app) is the problem."""
    if reason in (RefusalReason.SHUTTING_DOWN, RefusalReason.TOO_MANY_SESSIONS):
        return "NetStream.Publish.Rejected"
    return "NetStream.Publish.BadName"


def rtmp_server_from_settings(settings: Settings, publisher: StreamPublisher, **overrides: Any) -> RtmpServer:
    """The RTMP listener as the settings describe it (the app and ``python -m ingest.rtmp``)."""
    options: dict[str, Any] = {
        "host": settings.effective_rtmp_host,
        "port": settings.rtmp_port,
        "idle_timeout": settings.rtmp_idle_timeout_seconds,
        "read_rest": settings.rtmp_read_rest_seconds,
        "handshake_timeout": settings.rtmp_handshake_timeout_seconds,
        "max_pending": settings.rtmp_max_pending_connections,
        "max_pending_per_address": settings.rtmp_max_pending_per_address,
        "limits": ChunkLimits(
            min_chunk_size=settings.rtmp_min_chunk_size,
            max_buffered_bytes=settings.rtmp_max_buffer_bytes,
            max_buffered_bytes_before_publish=settings.rtmp_max_buffer_bytes_before_publish,
        ),
        "accepted_apps": ("live",),
        **overrides,
    }
    host, port = options.pop("host"), options.pop("port")
    return RtmpServer(host, port, publisher, **options)


RTMP = web.AppKey("rtmp_server", RtmpServer)  # the app's listener, when enabled (tests read its port)
