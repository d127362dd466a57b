"""The asyncio shell around ``RtmpServerConnection``: listener, one task per connection.

All protocol decisions live in the sans-I/O core; this module only moves bytes, applies
timeouts and calls the ``StreamPublisher``/``MediaSink`` interfaces. A failure in one
connection is logged and closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from ingest.publishing import MediaSink, PublishRejected, StreamPublisher, redact_key
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

__all__ = ["RtmpServer"]

logger = logging.getLogger(__name__)


class RtmpServer:
    """RTMP ingest listener.

    ``idle_timeout``: seconds without any received byte before a connection is dropped
    (also bounds how long a write may block). ``publish_timeout``: how long the publisher
    may take to accept a publish.
    """

    def __init__(
        self,
        host: str,
        port: int,
        publisher: StreamPublisher,
        *,
        idle_timeout: float = 10.0,
        publish_timeout: float = 10.0,
        limits: ChunkLimits | None = None,
        accepted_video_codecs: Collection[str] = ("h264",),
        accepted_audio_codecs: Collection[str] = ("aac",),
        read_size: int = 64 * 1024,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.publisher = publisher
        self.idle_timeout = idle_timeout
        self.publish_timeout = publish_timeout
        self.limits = limits or ChunkLimits()
        self.accepted_video_codecs = tuple(accepted_video_codecs)
        self.accepted_audio_codecs = tuple(accepted_audio_codecs)
        self.read_size = read_size
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        logger.info("RTMP ingest listening on %s:%d", self.host, self.port)

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
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = _Session(self, writer)
        try:
            await session.run(reader)
        except asyncio.CancelledError:
            # Closed by ``close()``: end quietly. (Python 3.11's start_server callback would log
            # a cancelled connection task as an error.)
            pass
        finally:
            self._tasks.discard(task)


class _Session:
    """State of one connection in the shell: the core, the sink, the close reason."""

    def __init__(self, server: RtmpServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.conn = RtmpServerConnection(
            limits=server.limits,
            accepted_video_codecs=server.accepted_video_codecs,
            accepted_audio_codecs=server.accepted_audio_codecs,
        )
        self.sink: MediaSink | None = None
        self.key = "-"  # redacted stream key, for logs
        self.terminated: str | None = None

    async def run(self, reader: asyncio.StreamReader) -> None:
        reason = "client disconnected"
        try:
            while not self.conn.closed:
                try:
                    async with asyncio.timeout(self.server.idle_timeout):
                        data = await reader.read(self.server.read_size)
                except TimeoutError:
                    reason = f"no data for {self.server.idle_timeout:g} s"
                    logger.info(
                        "closing idle RTMP connection from %s (key %s): %s", self.remote, self.key, reason
                    )
                    break
                if not data or self.terminated is not None:
                    break
                closing_reason = await self._handle(self.conn.receive_data(data))
                await self._flush()
                if closing_reason is not None:
                    reason = closing_reason
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
            if self.terminated is not None:
                reason = self.terminated
            await self._close_sink(reason)
            self.writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.writer.wait_closed()

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
                await self._close_sink(event.reason)
            elif isinstance(event, ConnectionFailed):
                logger.warning(
                    "closing RTMP connection from %s (key %s): %s", self.remote, self.key, event.reason
                )
                closing = event.reason
        return closing

    def _terminate(self, reason: str) -> None:
        """The publisher side ends this publish (takeover, packaging failure, shutdown): drop the connection."""
        if self.terminated is None:
            self.terminated = reason
            logger.info("RTMP publish of key %s from %s terminated by the server: %s", self.key, self.remote, reason)
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
                "publish refused for key %s app %r from %s: %s (%s)",
                self.key,
                event.app,
                self.remote,
                exc.message,
                exc.code,
            )
            self.conn.reject_publish(exc.code, exc.message)
            return []
        except TimeoutError:
            logger.warning(
                "publisher did not answer within %g s for key %s", self.server.publish_timeout, self.key
            )
            self.conn.reject_publish("NetStream.Publish.Failed", "Server busy, try again.")
            return []
        self.sink = sink
        logger.info("publish started: app %r key %s from %s", event.app, self.key, self.remote)
        return self.conn.accept_publish()
