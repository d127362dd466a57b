"""Bounded mutation fuzz of the committed RTMP captures (issue 17, "keep doing").

A seeded mutator (bit flips, interesting integers in header fields, inserted, deleted, repeated
and spliced ranges, truncation) turns the captures into a few hundred broken sessions. Fed to
the sans-I/O core they may only end in clean protocol errors (``ConnectionFailed``), never an
exception, with memory bounded; fed to a real server over TCP they close only their own
connection, log no traceback, and a real ffmpeg publishing meanwhile keeps every frame.

A longer run (see bench/README.md): ``RTMP_FUZZ_CASES=20000 RTMP_FUZZ_SEED=<n> pytest
tests/ingest/rtmp/test_rtmp_fuzz.py``; a failure names the seed and case to replay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from ingest.publishing import MediaSink
from ingest.rtmp.protocol import ConnectionFailed, PublishRequested
from ingest.rtmp.server import RtmpServer
from tests.ingest.rtmp.rtmp_captures import CAPTURES, replay
from tests.ingest.rtmp.publishers import FakeSink, ffmpeg_publish

CASES = int(os.environ.get("RTMP_FUZZ_CASES", "300"))
SEED = int(os.environ.get("RTMP_FUZZ_SEED", "20261201"))
HANDSHAKE = 1 + 1536 + 1536
INTERESTING = [0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0xFFFFFF, 0x1000000, 0x7FFFFFFF, 0xFFFFFFFF, 127, 128, 4096]


def captures() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CAPTURES.glob("*.bin"))]


def mutate(rnd: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to eight mutations, mostly after the handshake (whose random blocks nobody checks)."""
    out = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        if not out:
            out += rnd.randbytes(16)
        low = HANDSHAKE if len(out) > HANDSHAKE + 16 and rnd.random() < 0.9 else 0
        pos = rnd.randrange(low, len(out))
        op = rnd.randrange(8)
        if op == 0:
            out[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:
            out[pos] = rnd.choice([0x00, 0x01, 0x02, 0x03, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xC3, 0xFF])
        elif op == 2:
            width = rnd.choice([2, 3, 4])
            value = rnd.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            out[pos : pos + width] = value.to_bytes(width, rnd.choice(["big", "little"]))
        elif op == 3:
            out[pos:pos] = rnd.randbytes(rnd.randint(1, 64))
        elif op == 4:
            del out[pos : pos + rnd.randint(1, 256)]
        elif op == 5:
            piece = out[pos : pos + rnd.randint(1, 512)]
            out[pos:pos] = piece * rnd.randint(1, 8)
        elif op == 6:
            other = rnd.choice(pool)
            start = rnd.randrange(len(other))
            out[pos:] = other[start : start + rnd.randint(1, 4096)] + out[pos:]
        else:
            del out[pos:]
    return bytes(out)


def cases(count: int, seed: int) -> list[tuple[int, bytes, int, bool]]:
    """(case number, mutated capture, read size, accept the publish) for one seeded run."""
    rnd = random.Random(seed)
    pool = captures()
    return [
        (i, mutate(rnd, rnd.choice(pool), pool), rnd.choice([1, 7, 7, 100, 100, 4096, 4096, 65536] if i % 4 else [1]),
         rnd.random() < 0.8)
        for i in range(count)
    ]


def test_mutated_captures_end_in_clean_protocol_errors() -> None:
    published = failed = measured = 0
    reasons: set[str] = set()
    for i, data, split, accept in cases(CASES, SEED):
        # tracemalloc makes Python several times slower: measure the cases fed in larger reads
        # (the byte-at-a-time ones hold no more) and check the core's own accounting on all.
        measure = split >= 100
        if measure:
            tracemalloc.start()
        try:
            result = replay(data, split=split, accept=accept)
        except Exception as exc:  # the assertion: nothing but clean events
            pytest.fail(f"seed {SEED} case {i}: {type(exc).__name__}: {exc}")
        finally:
            peak = tracemalloc.get_traced_memory()[1] if measure else 0
            tracemalloc.stop()
        # What the replay keeps (events with payloads, bytes sent) is about the input's size;
        # the connection's own buffers are held to their budget, so the peak stays close.
        assert peak < 4 * len(data) + 2 * 2**20, f"seed {SEED} case {i}: peak {peak} for {len(data)} bytes"
        measured += measure
        assert result.conn._reader.memory <= result.conn._reader.memory_limit
        published += bool(result.of(PublishRequested))
        for event in result.of(ConnectionFailed):
            failed += 1
            assert isinstance(event.reason, str) and event.reason
            reasons.add(event.reason.split(":")[0][:40])
    # The mutator gets past the handshake and into the protocol, and breaks it in many ways.
    assert published > CASES // 5 and failed > CASES // 5 and len(reasons) >= 8, (published, failed, sorted(reasons))
    assert measured > CASES // 3


class AnyKeyPublisher:
    """Accepts every publish with its own sink, so mutated sessions and the good stream stay apart."""

    def __init__(self) -> None:
        self.sinks: list[tuple[str, FakeSink]] = []

    async def start_publish(self, *, protocol: str, app: str, stream_key: str, remote_address: str,
                            terminate: Any = None) -> MediaSink:
        sink = FakeSink()
        self.sinks.append((stream_key, sink))
        return sink


async def send_session(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        await asyncio.wait_for(reader.read(-1), 0.5)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_mutated_sessions_against_the_server_spare_a_good_stream(caplog: pytest.LogCaptureFixture,
                                                                        tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    publisher = AnyKeyPublisher()
    server = RtmpServer("127.0.0.1", 0, publisher, idle_timeout=2.0, handshake_timeout=2.0,
                        max_pending_per_address=64)
    await server.start()
    try:
        good = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/goodstream", seconds=3))
        batch = cases(60, SEED + 1)
        for start in range(0, len(batch), 12):
            await asyncio.gather(*(send_session(server.port, data) for _, data, _, _ in batch[start : start + 12]))
        rc, err = await good
    finally:
        await server.close()
    assert rc == 0, err
    [sink] = [sink for key, sink in publisher.sinks if key == "goodstream"]
    assert len(sink.frames()) == 30 and sink.closed == "publisher ended the stream (FCUnpublish)"
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert "closing RTMP connection from 127.0.0.1" in caplog.text
