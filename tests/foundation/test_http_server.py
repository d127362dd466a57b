"""The HTTP listener of `live-server run` (live_server/http_server.py): slow-header connections are closed at the
deadline, a stalled body too, connections beyond the cap get a 503, and normal clients are served meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest

from live_server.app import create_app
from live_server import http_server
from live_server.http_server import GuardedTCPSite, serve
from live_server.http_server import CONNECTION_GUARD
from live_server.settings import Settings


@pytest.fixture
async def server(make_settings: Callable[..., Settings], migrated_url: str) -> AsyncIterator[tuple[str, int, Any]]:
    app = create_app(make_settings(database_url=migrated_url, http_header_timeout_seconds=1.0,
                                   http_body_idle_timeout_seconds=1.0, http_max_connections=40))
    started: asyncio.Future[GuardedTCPSite] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, "127.0.0.1", 0, app[CONNECTION_GUARD], started.set_result, handle_signals=False))
    site = await asyncio.wait_for(started, 30)
    yield "127.0.0.1", site.port, app[CONNECTION_GUARD]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _closed_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drip: bytes | None, limit: float) -> float:
    """Seconds until the server closes the connection, sending ``drip`` every 0.2 s meanwhile."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if drip:
                writer.write(drip)
                await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), 0.2)
            if data == b"":
                return time.monotonic() - start
        except asyncio.TimeoutError:
            continue
        except (ConnectionError, OSError):
            return time.monotonic() - start
    return limit


async def test_slow_header_connections_are_closed_at_the_deadline_while_others_are_served(server: Any) -> None:
    host, port, guard = server
    attackers = [await asyncio.open_connection(host, port) for _ in range(30)]
    for _, writer in attackers:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closing = asyncio.gather(*(_closed_after(r, w, b"X-a: b\r\n", 5) for r, w in attackers))
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(0.3)
        async with http.get(f"http://{host}:{port}/healthz") as resp:  # served during the attack
            assert resp.status == 200
    times = await closing
    assert all(0.7 <= t < 2.5 for t in times), times
    assert guard.closed["header_timeout"] == 30
    for _, writer in attackers:
        writer.close()


async def test_a_stalled_body_is_abandoned_and_a_kept_alive_connection_is_not(server: Any) -> None:
    host, port, guard = server
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"user")
    assert 0.7 <= await _closed_after(reader, writer, None, 5) < 2.5
    assert guard.closed["body_timeout"] == 1
    writer.close()

    reader, writer = await asyncio.open_connection(host, port)
    for _ in range(2):  # idle between requests for longer than the header deadline: kept alive
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        await asyncio.sleep(1.5)
    writer.close()


async def test_connections_beyond_the_cap_get_a_503(server: Any) -> None:
    host, port, guard = server
    held = [await asyncio.open_connection(host, port) for _ in range(40)]
    for _ in range(200):  # until the server has accepted and counted them all (a busy machine takes its time)
        if guard.open >= 40:
            break
        await asyncio.sleep(0.05)
    assert guard.open == 40
    reader, writer = await asyncio.open_connection(host, port)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503") and guard.closed["busy"] >= 1
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.3)
    assert guard.open == 0
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{host}:{port}/healthz") as resp:
            assert resp.status == 200


def test_the_open_files_limit_is_raised_to_hold_the_connection_cap() -> None:
    """A service started at a soft limit of 256 open files could not hold a lecture hall's connections:
    the server raises it (up to the hard limit) before it listens."""
    import resource
    import subprocess
    import sys

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3000 + http_server.SPARE_FILES
    script = ("import resource; from live_server.http_server import raise_open_files_limit; "
              "print(raise_open_files_limit(3000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))).stdout.split()
    expected = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    assert [int(v) for v in out] == [expected, expected]
