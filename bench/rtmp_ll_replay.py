"""Where a passthrough LL-HLS stream's CPU goes in our process, without sockets or a catalog.

Issue 18 wants the CPU per passthrough stream near nginx-rtmp's. ``bench.ingest_cpu`` measures the
whole server; this script isolates the per-stream path so a change to it can be timed in seconds:

1. **capture** (once): a real ``ffmpeg -re -c copy`` pushes the prepared 720p30 2.5 Mb/s lecture to a
   throw-away listener built on the sans-I/O core (``RtmpServerConnection``, fixed handshake bytes);
   every socket read is recorded as it arrived (its size is what the real server's reads see).
2. **replay**: the recorded reads are fed, in order, to a fresh ``RtmpServerConnection`` (same
   handshake bytes, so the client's answers still match) whose media goes to the hub's real
   ``PublishSession`` → ``LlPackager`` (writer thread, files in a temporary folder). CPU of this
   process (``time.process_time``, the writer thread included) per second of media, by stage:
   ``core`` (RTMP bytes → media events), ``+sink`` (the whole ingest-to-files path).

``--profile`` prints the cProfile top functions of one replay. The socket layer (epoll, recv, the
asyncio transport) is not in these figures: ``bench.ingest_cpu`` has it.

Run: ``.venv/bin/python -m bench.rtmp_ll_replay [--seconds 20] [--runs 5] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pickle
import pstats
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from datetime import datetime, timezone

from bench.harness import ffmpeg_path, make_source, median
from ingest.live import LiveEventRuntime, PublishSession
from ingest.packaging.ll_packager import LlPackager
from ingest.packaging.options import PackagerOptions
from ingest.rtmp.protocol import MediaReceived, PublishRequested, RtmpServerConnection

ZEROS = bytes(4096)


def zeros(n: int) -> bytes:
    """Handshake "random" bytes, the same at capture and replay (the client echoes them)."""
    return bytes(n)


async def capture(source: Path, seconds: float) -> list[bytes]:
    """The reads a real ffmpeg push produces, for ``seconds`` of media."""
    reads: list[bytes] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RtmpServerConnection(random_bytes=zeros)
        try:
            while True:
                data = await reader.read(64 * 1024)
                if not data:
                    break
                reads.append(data)
                for event in conn.receive_data(data):
                    if isinstance(event, PublishRequested):
                        conn.accept_publish()
                if conn.has_data_to_send:
                    writer.write(conn.data_to_send())
                    await writer.drain()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(source), "-t", str(seconds),
        "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/bench-key", stdin=subprocess.DEVNULL)
    await proc.wait()
    await asyncio.wait_for(done.wait(), 10)
    server.close()
    return reads


class _Hub:
    """The least of ``LiveStreams`` a ``LiveEventRuntime`` needs to package one event."""

    def __init__(self) -> None:
        self.disk: Any = None
        self.media_taps: list[Any] = []
        self.segments = 0

    def segment_listed(self, live: Any, rendition: str, segment: Any) -> None:
        self.segments += 1

    def packager_failed(self, live: Any, reason: str) -> None:
        raise RuntimeError(reason)

    def in_grace(self, event_id: int) -> bool:
        return False

    async def publisher_gone(self, publisher: Any, reason: str) -> None:
        pass


async def replay(reads: list[bytes], with_sink: bool, every_part: bool = False) -> tuple[float, int]:
    """CPU-seconds to take ``reads`` through the core (and the sink); the media's last timestamp (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = PackagerOptions(segment_seconds=2.0, live_window_seconds=12.0, dvr=True, ladder=())
        hub = _Hub()

        def packager(rt: LiveEventRuntime) -> LlPackager:
            return LlPackager(folder, rt.options, rt, part_target=0.334, playlist_files_every_part=every_part)

        live = LiveEventRuntime(hub, packager, 1, "bench", datetime.now(timezone.utc), folder, options)  # type: ignore[arg-type]
        await live.packager.start()
        await live.packager.begin_session()
        session = PublishSession(live, 1, 1, "rtmp", "127.0.0.1:1", None)
        conn = RtmpServerConnection(random_bytes=zeros)
        last = 0
        loop = asyncio.get_running_loop()
        started = time.process_time()
        for i, data in enumerate(reads):
            events = conn.receive_data(data)
            for event in events:
                if isinstance(event, PublishRequested):
                    events += conn.accept_publish()
                elif type(event) is MediaReceived:
                    last = event.timestamp
                    if with_sink:
                        session.on_media(event.kind, event.timestamp, event.payload)
            conn.data_to_send()
            if with_sink and i % 8 == 0:
                await asyncio.sleep(0)  # let the writer threads' completions run, as the loop would
        await live.packager.finish()
        used = time.process_time() - started
        del loop
        return used, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--recapture", action="store_true")
    parser.add_argument("--files-every-part", action="store_true",
                        help="write the playlist files at every part (a node with web-only peers)")
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / "lecture-720p-gop2.flv", gop_seconds=2.0)
    recorded = workdir / f"rtmp-reads-{args.seconds:g}s.pickle"
    if args.recapture or not recorded.exists():
        recorded.write_bytes(pickle.dumps(asyncio.run(capture(source, args.seconds))))
    reads: list[bytes] = pickle.loads(recorded.read_bytes())
    print(f"{len(reads)} reads, {sum(map(len, reads))} bytes, mean {sum(map(len, reads)) / len(reads):.0f} B")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(replay(reads, True, args.files_every_part))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        return
    for with_sink, label in ((False, "core"), (True, "+sink")):
        figures = []
        for _ in range(args.runs):
            used, last = asyncio.run(replay(reads, with_sink, args.files_every_part))
            figures.append(used / (last / 1000))
        print(f"{label:6s}: {median(figures) * 100:.3f} % of a core per stream (runs "
              + ", ".join(f"{f * 100:.3f}" for f in figures) + ")")


if __name__ == "__main__":
    main()
