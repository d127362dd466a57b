"""The asyncio shell around ``RtmpServerConnection``: listener, one task per connection.

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
import contextlib
import logging
from collections.abc import Callable, Collection
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
    at ``connect`` (None: any).
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
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
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
        return len(self._tasks)

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

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Counted before the first await: a burst of connections cannot all pass the check.
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self._admit(address):
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = _Session(self, writer, lambda: self._release(address))
        try:
            await session.run(reader)
        except asyncio.CancelledError:
            # Closed by ``close()``: end quietly. (Python 3.11's start_server callback would log
            # a cancelled connection task as an error.)
            pass
        finally:
            session.release_pending()
            self._tasks.discard(task)


class _Session:
    """State of one connection in the shell: the core, the sink, the close reason."""

    def __init__(
        self, server: RtmpServer, writer: asyncio.StreamWriter, release: Callable[[], None]
    ) -> None:
        self.server = server
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.conn = RtmpServerConnection(
            limits=server.limits,
            accepted_video_codecs=server.accepted_video_codecs,
            accepted_audio_codecs=server.accepted_audio_codecs,
            accepted_apps=server.accepted_apps,
        )
        self.sink: MediaSink | None = None
        self.key = "-"  # redacted stream key, for logs
        self.terminated: str | None = None
        self.linger = False  # an error status was sent to a publishing encoder: let it read it
        self._release = release
        #: loop time by which a publish must be accepted; None once one was
        self.deadline: float | None = asyncio.get_running_loop().time() + server.handshake_timeout

    def release_pending(self) -> None:
        """Leave the unauthenticated pool (publish accepted, or the connection ended); once."""
        if self.deadline is not None:
            self.deadline = None
            self._release()

    async def run(self, reader: asyncio.StreamReader) -> None:
        reason = "client disconnected"
        loop = asyncio.get_running_loop()
        idle = self.server.idle_timeout
        read_size = self.server.read_size
        watchdog = _ReadWatchdog(self, loop)
        try:
            while not self.conn.closed:
                try:
                    data = await watchdog.read(reader, read_size)
                except TimeoutError:
                    if self.deadline is not None and loop.time() >= self.deadline:
                        reason = (
                            f"no publish within {self.server.handshake_timeout:g} s of connecting "
                            "(handshake, connect and publish must finish by then)"
                        )
                        logger.info("closing RTMP connection from %s: %s", self.remote, reason)
                    else:
                        reason = f"no data for {idle:g} s"
                        logger.info(
                            "closing idle RTMP connection from %s (key %s): %s", self.remote, self.key, reason
                        )
                    break
                if not data or self.terminated is not None:
                    break
                events = self.conn.receive_data(data)
                sink = self.sink
                if sink is not None and all(type(event) is MediaReceived for event in events):
                    # The usual read: a frame or two of a publish in progress (no coroutine for it).
                    for event in events:
                        sink.on_media(event.kind, event.timestamp, event.payload)  # type: ignore[union-attr]
                    closing_reason = None
                else:
                    closing_reason = await self._handle(events)
                if self.conn.has_data_to_send:
                    await self._flush()
                if closing_reason is not None:
                    reason = closing_reason
            watchdog.stop()
            if self.linger:
                await self._linger(reader)
        except asyncio.CancelledError:
            reason = "server shutting down"
            raise
        except (ConnectionError, TimeoutError) as exc:
            reason = f"connection lost: {str(exc) or type(exc).__name__}"
            logger.info("RTMP connection from %s (key %s) lost: %r", self.remote, self.key, exc)
        except Exception:
            reason = "internal error"
            logger.exception("RTMP connection from %s (key %s) failed", self.remote, self.key)
        finally:
            watchdog.stop()
            if self.terminated is not None:
                reason = self.terminated
            await self._close_sink(reason)
            self.writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.writer.wait_closed()

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        """Our error status to a publishing encoder is written: read and drop what it still
        sends until it hangs up, at most ``idle_timeout``. ffmpeg reads one incoming message
        per packet it writes (and an encoder with lookahead writes its first video packet
        seconds after starting); closing at once would only show it "Broken pipe"."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.server.idle_timeout):
                while await reader.read(self.server.read_size):
                    pass

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)
            async with asyncio.timeout(self.server.idle_timeout):
                await self.writer.drain()

    async def _close_sink(self, reason: str) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            try:
                await sink.close(reason)
            except Exception:
                logger.exception("closing the media sink for key %s failed", self.key)

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
                self.linger = True
                await self._close_sink(event.reason)
            elif isinstance(event, ConnectionFailed):
                logger.warning(
                    "closing RTMP connection from %s (key %s): %s", self.remote, self.key, event.reason
                )
                closing = event.reason
        return closing

    def _terminate(self, reason: str) -> None:
        """The publisher side ends this publish (takeover, packaging failure, shutdown): tell
        the encoder why, then drop the connection (after a short linger, so it can read it)."""
        if self.terminated is None:
            self.terminated = reason
            logger.info("RTMP publish of key %s from %s terminated by the server: %s", self.key, self.remote, reason)
            self.conn.close_publish("NetStream.Publish.Rejected", f"publishing stopped by the server: {reason}")
            out = self.conn.data_to_send()
            if out and not self.writer.is_closing():
                self.writer.write(out)
                self.linger = True
                asyncio.get_running_loop().call_later(self.server.idle_timeout, self.writer.close)
            else:
                self.writer.close()

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
        self.sink = sink
        self.release_pending()
        logger.info("publish started: app %s key %s from %s", printable_app(event.app), self.key, self.remote)
        return self.conn.accept_publish()


class _ReadWatchdog:
    """The read timeouts of one connection with one timer instead of one per read.

    A read may last ``idle_timeout`` from its start, and none may go past the session's publish
    deadline. An encoder writes each frame separately (a hundred reads a second), so arming and
    cancelling a timer around every read cost more than parsing them. Instead each read only notes
    its start; one timer, re-armed when it fires early, cancels the reading task once the read in
    progress is past its limit (the way ``asyncio.timeout`` does), and that read raises
    ``TimeoutError``. Outside reads (handling a publish, writing) nothing is cut short here.
    """

    def __init__(self, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._loop = loop
        self._idle = session.server.idle_timeout
        self._task: asyncio.Task[Any] | None = None
        self._read_started: float | None = None  # loop time the read in progress began; None between reads
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None

    def _limit(self, now: float) -> float:
        """When the read in progress (or, between reads, one starting now) must have returned."""
        start = now if self._read_started is None else self._read_started
        deadline = self._session.deadline
        limit = start + self._idle
        return limit if deadline is None or deadline > limit else deadline

    def _arm(self, now: float) -> None:
        self._handle = self._loop.call_at(self._limit(now), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self._read_started is not None and self._task is not None and now >= self._limit(now):
            self._handle = None
            self._expired = True
            self._task.cancel()
        else:
            self._arm(now)

    async def read(self, reader: asyncio.StreamReader, size: int) -> bytes:
        """``reader.read(size)``, raising ``TimeoutError`` past the read's limit."""
        now = self._loop.time()
        if self._handle is None:
            self._task = asyncio.current_task()
            self._arm(now)
        elif self._limit(now) < self._handle.when():  # the publish deadline is nearer than the timer
            self._handle.cancel()
            self._arm(now)
        self._read_started = now
        try:
            return await reader.read(size)
        except asyncio.CancelledError:
            if self._expired and self._task is not None and self._task.uncancel() == 0:
                self._expired = False
                raise TimeoutError from None
            raise
        finally:
            self._read_started = None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
