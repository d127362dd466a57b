"""What an unauthenticated RTMP peer may cost (issue 17 items 12 and 14): deadlines and caps.

Slow-loris clients trickling a byte at a time, connections that never publish, floods of
connections from one address or many; a real ffmpeg publisher keeps every frame meanwhile.
Time is the subject here, so the deadlines are short settings instead of the 10 s defaults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ingest.rtmp.server import RtmpServer, rtmp_server_from_settings
from live_server.settings import Settings, load_settings
from tests.ingest.rtmp.rtmp_captures import command, plain_handshake
from tests.ingest.rtmp.publishers import FakePublisher, ffmpeg_publish


@pytest.fixture
async def servers() -> AsyncIterator[list[RtmpServer]]:
    started: list[RtmpServer] = []
    yield started
    for server in started:
        await server.close()


async def start(servers: list[RtmpServer], **kwargs: Any) -> tuple[RtmpServer, FakePublisher]:
    publisher = FakePublisher()
    server = RtmpServer("127.0.0.1", 0, publisher, **kwargs)
    await server.start()
    servers.append(server)
    return server, publisher


async def trickle(port: int, data: bytes, every: float, limit: float = 10.0) -> float:
    """Send ``data`` a byte every ``every`` seconds (a slow-loris); seconds until the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def closed() -> None:
        while await reader.read(65536):
            pass

    waiter = asyncio.create_task(closed())
    try:
        for byte in data:
            if waiter.done():
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([waiter], timeout=every)
        await asyncio.wait_for(waiter, limit)
    except ConnectionError:
        pass
    finally:
        waiter.cancel()
        writer.close()
    return time.monotonic() - started


async def test_slow_loris_is_closed_at_the_handshake_deadline(
    servers: list[RtmpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A byte every 0.2 s never trips the 10 s idle timeout; the handshake deadline closes it."""
    caplog.set_level(logging.INFO, logger="ingest")
    server, _ = await start(servers, handshake_timeout=1.0, idle_timeout=10.0)
    seconds = await trickle(server.port, plain_handshake(), every=0.2)
    assert 0.9 < seconds < 4.0  # the deadline, far from the 10 s idle timeout
    assert "no publish within 1 s of connecting (handshake, connect and publish must finish by then)" in caplog.text
    assert server.connection_count == 0 and server.pending_count == 0


async def test_connected_but_never_publishing_is_closed_at_the_deadline(
    servers: list[RtmpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Handshake and connect done at once, then a command every 0.2 s (each answered): still closed."""
    caplog.set_level(logging.INFO, logger="ingest")
    server, publisher = await start(servers, handshake_timeout=1.5, idle_timeout=10.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    writer.write(plain_handshake() + command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
    closed_after = None
    for txn in range(2, 100):
        await asyncio.sleep(0.2)
        try:
            writer.write(command("createStream", float(txn), None) if txn < 10 else command("_checkbw", float(txn), None))
            await writer.drain()
            data = await asyncio.wait_for(reader.read(65536), 1.0)
        except (ConnectionError, TimeoutError):
            data = b""
        if not data:
            closed_after = time.monotonic() - started
            break
    writer.close()
    assert closed_after is not None and 1.4 < closed_after < 4.5
    assert "no publish within 1.5 s of connecting" in caplog.text and not publisher.requests


async def test_a_publisher_is_not_held_to_the_deadline(servers: list[RtmpServer]) -> None:
    """The deadline ends with the accepted publish: a 3 s stream under a 1 s deadline keeps every frame."""
    server, publisher = await start(servers, handshake_timeout=1.0)
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=3)
    assert rc == 0, err
    assert len(publisher.sinks["testkey"].frames()) == 30
    assert server.pending_count == 0


async def open_idle(port: int, local: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))


async def is_closed(reader: asyncio.StreamReader, within: float = 0.5) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_caps_on_unpublished_connections(
    servers: list[RtmpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Per address and in total, counted before the first await: a burst of 20 from one address
    leaves exactly the cap open; other addresses still get in until the total is reached; a
    publisher from its own address publishes; refusals are logged once per episode."""
    caplog.set_level(logging.INFO, logger="ingest")
    server, publisher = await start(servers, max_pending_per_address=4, max_pending=6, handshake_timeout=30.0,
                                    idle_timeout=30.0)
    burst = await asyncio.gather(*(open_idle(server.port, "127.0.0.2") for _ in range(20)))
    closed = await asyncio.gather(*(is_closed(r) for r, _ in burst))
    assert closed.count(False) == 4 and server.pending_count == 4

    others = [await open_idle(server.port, "127.0.0.3") for _ in range(3)]
    assert [await is_closed(r) for r, _ in others] == [False, False, True]  # total cap 6
    assert server.pending_count == 6

    for reader, writer in [*burst, *others]:
        writer.close()
    for _ in range(50):
        if server.pending_count == 0:
            break
        await asyncio.sleep(0.05)
    assert server.pending_count == 0

    # The cap counts connections that have not published: publishers do not use it up.
    idle = [await open_idle(server.port, "127.0.0.2") for _ in range(4)]
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=1, realtime=False)
    assert rc == 0, err
    assert len(publisher.sinks["testkey"].frames()) == 10
    for _, writer in idle:
        writer.close()

    per_address = [r for r in caplog.records if "refusing RTMP connections from 127.0.0.2" in r.getMessage()]
    total = [r for r in caplog.records if "refusing RTMP connections: 6 connections" in r.getMessage()]
    assert len(per_address) == 1 and len(total) == 1
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in per_address + total)


def test_rtmp_follows_the_http_host_unless_configured() -> None:
    defaults = load_settings(environ={})
    assert defaults.host == "127.0.0.1" and defaults.rtmp_host == "" and defaults.effective_rtmp_host == "127.0.0.1"
    assert load_settings(environ={"LIVE_HOST": "10.1.2.3"}).effective_rtmp_host == "10.1.2.3"
    both = load_settings(environ={"LIVE_HOST": "127.0.0.1", "LIVE_RTMP_HOST": "0.0.0.0"})
    assert both.effective_rtmp_host == "0.0.0.0" and both.rtmp_url == "rtmp://127.0.0.1/live"


async def test_settings_reach_the_listener(servers: list[RtmpServer]) -> None:
    settings = Settings(host="127.0.0.2", rtmp_port=0, rtmp_handshake_timeout_seconds=3, rtmp_max_pending_connections=5,
                        rtmp_max_pending_per_address=2, rtmp_min_chunk_size=256, rtmp_max_buffer_bytes=2**21,
                        rtmp_max_buffer_bytes_before_publish=2**17)
    server = rtmp_server_from_settings(settings, FakePublisher())
    await server.start()
    servers.append(server)
    assert server.address == f"127.0.0.2:{server.port}"
    assert (server.handshake_timeout, server.max_pending, server.max_pending_per_address) == (3, 5, 2)
    assert (server.limits.min_chunk_size, server.limits.max_buffered_bytes,
            server.limits.max_buffered_bytes_before_publish) == (256, 2**21, 2**17)
    assert server.accepted_apps == ("live",)
