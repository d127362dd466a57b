"""The HTTP listener: aiohttp's server behind a connection guard that adds what aiohttp lacks.

aiohttp has no deadline for receiving a request's head and no cap on open connections, so 300
connections that each send a header byte every few seconds stay open for ever (slowloris). The guard
wraps each connection's protocol: a connection beyond ``http_max_connections`` gets a 503 and is
closed at once; a request head not complete within ``http_header_timeout_seconds`` of its first byte
(or of the connection) closes the connection; a request body that sends nothing for
``http_body_idle_timeout_seconds`` does too. A connection that has sent a whole request is left
alone while it is served (long polls, websockets, slow handlers); idle keep-alive connections are
aiohttp's (``keepalive_timeout``). nginx in front does the same with client_header_timeout,
client_body_timeout and limit_conn (deploy/nginx/live.conf.template).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"


class ConnectionGuard:
    """Counts open connections and owns their deadlines; its ``middleware`` tells it when a request's head
    has arrived (the handler runs) and when the response is done."""

    def __init__(self, max_connections: int, header_timeout: float, body_idle_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.clock = clock
        self.open = 0
        self.closed = {"busy": 0, "header_timeout": 0, "body_timeout": 0}
        self._by_handler: dict[int, GuardedConnection] = {}
        self._reported_at = -1e9

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` wrapping aiohttp's (``runner.server``)."""
        return lambda: GuardedConnection(self, server())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = self._by_handler.get(id(request.protocol))
        if connection is None:  # not through a guarded listener (tests' in-process servers)
            return await handler(request)
        connection.request_started(request)
        try:
            return await handler(request)
        finally:
            connection.request_finished()

    def _closed(self, reason: str, peer: Any) -> None:
        """Counted always, logged at most once a minute: an attack must not flood the log."""
        self.closed[reason] += 1
        now = self.clock()
        if now - self._reported_at >= 60:
            self._reported_at = now
            log.warning("HTTP connection from %s closed (%s); so far: %s; open: %d", peer, reason.replace("_", " "),
                        ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.closed.items()), self.open)


class GuardedConnection(asyncio.Protocol):
    """One connection: forwards everything to aiohttp's protocol, and closes it at a missed deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.state = "new"  # head: waiting for a request head; request: being served; idle: between requests
        self.request: web.Request | None = None
        self.last_data = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        guard = self.guard
        if guard.open >= guard.max_connections:
            guard._closed("busy", transport.get_extra_info("peername"))
            transport.write(BUSY)
            transport.close()
            return
        guard.open += 1
        self.counted = True
        guard._by_handler[id(self.inner)] = self
        self.inner.connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        if self.state == "idle":
            self._await_head()  # the first byte of the next request on a kept-alive connection
        elif self.state == "request":
            self.last_data = self.guard.clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.counted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.counted:
            self.counted = False
            self.guard.open -= 1
            self.guard._by_handler.pop(id(self.inner), None)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # --- told by the middleware ----------------------------------------------------------------
    def request_started(self, request: web.Request) -> None:
        self._cancel()
        self.state, self.request, self.last_data = "request", request, self.guard.clock()
        if not request.content.is_eof():
            self._arm(self.guard.body_idle_timeout, self._check_body)

    def request_finished(self) -> None:
        self._cancel()
        self.state, self.request = "idle", None

    # --- deadlines ----------------------------------------------------------------------------
    def _await_head(self) -> None:
        self._cancel()
        self.state = "head"
        self._arm(self.guard.header_timeout, self._head_late)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self.timer = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_late(self) -> None:
        self.timer = None
        if self.state == "head":
            self._abort("header_timeout")

    def _check_body(self) -> None:
        self.timer = None
        request = self.request
        if self.state != "request" or request is None or request.content.is_eof():
            return  # the whole body is in: the handler may take its time (long poll, websocket, upload processing)
        quiet = self.guard.clock() - self.last_data
        if quiet >= self.guard.body_idle_timeout:
            self._abort("body_timeout")
        else:
            self._arm(self.guard.body_idle_timeout - quiet, self._check_body)

    def _abort(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.guard._closed(reason, self.transport.get_extra_info("peername"))
            self.transport.abort()


class GuardedTCPSite(web.BaseSite):
    """aiohttp's TCP site, with each connection's protocol wrapped by the guard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self.runner, self.host, self.port, self.guard = runner, host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self.runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard.factory(server), self.host, self.port,
                                                backlog=self._backlog, reuse_address=True)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]


async def serve(app: web.Application, host: str, port: int, guard: ConnectionGuard,
                started: Callable[[GuardedTCPSite], None] | None = None, handle_signals: bool = True) -> None:
    """Serve until cancelled or until SIGINT/SIGTERM (aiohttp's GracefulExit), then shut down as run_app does:
    the app's on_shutdown (ingest drain) and cleanup run."""
    runner = web.AppRunner(app, handle_signals=handle_signals, keepalive_timeout=75.0, shutdown_timeout=60.0)
    await runner.setup()
    try:
        site = GuardedTCPSite(runner, host, port, guard)
        await site.start()
        log.info("======== Running on %s ========", site.name)
        if started is not None:
            started(site)
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


# Descriptors a server needs beside its HTTP connections: RTMP publishers, ffmpeg pipes, files, the catalog.
SPARE_FILES = 1024


def raise_open_files_limit(connections: int) -> int:
    """Raise the soft limit of open files to hold ``connections`` and the rest (up to the hard limit):
    many systems start services at a soft limit of 1,024, which a lecture hall of LL-HLS players (about
    three connections each) exceeds long before ``http_max_connections``. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("open files limited to %d (hard limit); http_max_connections %d needs about %d: raise "
                    "LimitNOFILE (systemd) or ulimit -n", soft, connections, wanted)
    return soft


def run(app: web.Application, host: str, port: int, guard: ConnectionGuard) -> None:
    """``live-server run``: serve until a signal asks to stop. As aiohttp's run_app: the server task is
    cancelled and its shutdown (drain, cleanup) completes before any other task is cancelled."""
    raise_open_files_limit(guard.max_connections)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve(app, host, port, guard))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)  # the guard `serve` enforces for this app
