"""RtmpServer on 127.0.0.1 driven by the real ffmpeg, plus misbehaving raw TCP clients."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.rtmp.__main__ import FlvDumpPublisher
from ingest.rtmp.server import RtmpServer
from tests.ingest.rtmp.publishers import FakePublisher, ffmpeg_publish
from tests.ingest.rtmp.rtmp_captures import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
async def event_loop_not_blocked() -> AsyncIterator[None]:
    """Fail a test if anything blocks the event loop (aiohttp's conftest does the same)."""
    worst = 0.0
    done = False

    async def watch() -> None:
        nonlocal worst
        while not done:
            start = time.monotonic()
            await asyncio.sleep(0.02)
            worst = max(worst, time.monotonic() - start - 0.02)

    task = asyncio.create_task(watch())
    yield
    done = True
    await task
    assert worst < 0.5, f"event loop blocked for {worst:.2f} s"


ServerFactory = Callable[..., Awaitable[RtmpServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    servers: list[RtmpServer] = []

    async def start(publisher: Any, **kwargs: Any) -> RtmpServer:
        server = RtmpServer("127.0.0.1", 0, publisher, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def seconds_until_closed(data: bytes, limit: float = 5.0) -> float:
    """Connect, send ``data``, then read until the server closes; return how long it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT.value)
    start = time.monotonic()
    try:
        if data:
            writer.write(data)
            await writer.drain()
        await asyncio.wait_for(reader.read(-1), limit)
    finally:
        writer.close()
    return time.monotonic() - start


class PORT:  # set per test; a plain holder keeps the helpers short
    value = 0


async def test_publish_alongside_misbehaving_connections(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    publisher = FakePublisher()
    server = await start_server(publisher, idle_timeout=1.0)
    PORT.value = server.port
    base = f"rtmp://127.0.0.1:{server.port}/live"

    good = asyncio.create_task(ffmpeg_publish(f"{base}/testkey?x=1", seconds=3))
    crashing = asyncio.create_task(ffmpeg_publish(f"{base}/crashkey", seconds=3))
    await asyncio.sleep(0.5)
    garbage_handshake = await seconds_until_closed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    garbage_chunks = await seconds_until_closed(b"\x03" + bytes(3072) + b"\x07\xff" * 300)
    slow_loris, half_handshake = await asyncio.gather(
        seconds_until_closed(b""), seconds_until_closed(b"\x03" + bytes(700))
    )
    rc, err = await good
    crash_rc, _ = await crashing

    assert garbage_handshake < 0.5 and garbage_chunks < 0.5
    assert 0.9 < slow_loris < 2.5 and 0.9 < half_handshake < 2.5
    assert rc == 0, err
    sink = publisher.sinks["testkey"]
    assert sink.metadata and sink.metadata[0]["width"] == 160.0
    assert abs(len(sink.frames()) - 30) <= 1
    audio = [ts for ts, _ in sink.audio]
    steps = [b - a for a, b in zip(audio[1:], audio[2:])]
    assert len(audio) > 100 and set(steps) <= {23, 24}
    assert sink.closed == "publisher ended the stream (FCUnpublish)"

    assert crash_rc != 0 and publisher.sinks["crashkey"].closed == "internal error"
    assert "RTMP connection from 127.0.0.1" in caplog.text and "sink exploded" in caplog.text
    assert "closing idle RTMP connection" in caplog.text
    assert "unsupported RTMP version byte 0x47 (expected 0x03)" in caplog.text
    assert "testkey" not in caplog.text and "crashkey" not in caplog.text
    assert server.connection_count == 0


async def test_wrong_key_is_rejected_and_the_server_keeps_serving(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    publisher = FakePublisher()
    server = await start_server(publisher)
    base = f"rtmp://127.0.0.1:{server.port}/live"

    rc, err = await ffmpeg_publish(f"{base}/wrongkey123", seconds=1, realtime=False)
    assert rc != 0 and "unknown stream key" in err
    assert "wrongkey123" not in caplog.text and "publish refused for key wro… app 'live'" in caplog.text

    rc, err = await ffmpeg_publish(f"{base}/testkey", seconds=0.5, realtime=False)
    assert rc == 0, err
    assert len(publisher.sinks["testkey"].frames()) == 5
    assert [r[:2] for r in publisher.requests] == [("rtmp", "live"), ("rtmp", "live")]


async def test_non_h264_video_is_rejected(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = FakePublisher()
    server = await start_server(publisher)
    rc, _ = await ffmpeg_publish(
        f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=2, video=["-c:v", "flv1"]
    )
    reason = "unsupported video codec Sorenson H.263 (flv1); this server accepts H.264 video with AAC audio"
    assert rc != 0
    assert publisher.sinks["testkey"].closed == reason
    [record] = [r for r in caplog.records if "unsupported video codec" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"rejecting RTMP stream with key te… from {publisher.requests[0][2]}: {reason}"


async def test_close_ends_active_publishes(start_server: ServerFactory) -> None:
    publisher = FakePublisher()
    server = await start_server(publisher)
    task = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=10))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if "testkey" in publisher.sinks and len(publisher.sinks["testkey"].frames()) >= 3:
            break
    await server.close()
    assert publisher.sinks["testkey"].closed == "server shutting down"
    rc, _ = await asyncio.wait_for(task, 10)
    assert rc != 0


async def test_dump_publisher_writes_a_playable_flv(start_server: ServerFactory, tmp_path: Path) -> None:
    server = await start_server(FlvDumpPublisher(tmp_path))
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=1, realtime=False)
    assert rc == 0, err
    [dumped] = list(tmp_path.glob("*.flv"))
    assert dumped.name == "te….flv"
    for _ in range(50):  # the sink is closed right after ffmpeg hangs up
        if server.connection_count == 0:
            break
        await asyncio.sleep(0.05)
    probe = await asyncio.create_subprocess_exec(
        ffmpeg_exe(),
        "-v",
        "error",
        "-i",
        str(dumped),
        "-map",
        "0:v",
        "-f",
        "framecrc",
        "-",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, probe_err = await probe.communicate()
    assert probe.returncode == 0 and not probe_err, probe_err
    assert len([line for line in out.decode().splitlines() if not line.startswith("#")]) == 10


async def ended_sink(publisher: FakePublisher, key: str = "testkey") -> Any:
    """The publish's sink once the encoder's FCUnpublish has closed it (within a second)."""
    sink = publisher.sinks[key]
    for _ in range(50):
        if sink.closed is not None:
            break
        await asyncio.sleep(0.02)
    assert sink.closed == "publisher ended the stream (FCUnpublish)"
    return sink


async def test_resting_between_reads_keeps_every_frame(start_server: ServerFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_rest`` (the app's 20 ms): a publishing connection reads every 20 ms instead of at each of the
    encoder's small writes, the tick reading what came itself (the transport stays paused); every frame and
    sample still arrives, in order, and the publish ends cleanly."""
    tick_reads: list[int] = []
    readv = os.readv

    def counting_readv(fd: int, buffers: Any) -> int:
        tick_reads.append(n := readv(fd, buffers))
        return n

    monkeypatch.setattr(os, "readv", counting_readv)
    publisher = FakePublisher()
    server = await start_server(publisher, read_rest=0.02)
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=2)
    assert rc == 0, err
    sink = await ended_sink(publisher)
    assert abs(len(sink.frames()) - 20) <= 1 and sink.frames() == sorted(sink.frames())
    audio = [ts for ts, _ in sink.audio]
    assert len(audio) > 60 and set(b - a for a, b in zip(audio[1:], audio[2:])) <= {23, 24}
    assert sum(1 for n in tick_reads if n > 0) > 10  # media read at the ticks, not only by the transport


async def test_a_full_read_does_not_rest(start_server: ServerFactory) -> None:
    """A read that fills the buffer reads on at once: the rest never caps a stream's bitrate. Here a
    1 KiB buffer with 100 ms rests would take seconds to drain a fast publish if every read rested."""
    publisher = FakePublisher()
    server = await start_server(publisher, read_rest=0.1, read_size=1024)
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/testkey", seconds=3, realtime=False)
    assert rc == 0, err
    sink = await ended_sink(publisher)
    assert len(sink.frames()) == 30


async def test_module_entry_point_help() -> None:
    # A subprocess awaited, not run: the fixture above would count a blocking run as a stalled loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.rtmp", "--help", cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and b"--port" in out
