"""Publish-to-playlist latency: from the pusher sending a frame to a listed segment that contains it.

A TCP tap sits between the pusher (ffmpeg, ``-re``, copy) and the server's RTMP port; it parses
the bytes it forwards with our own sans-I/O RTMP core and notes the wall time at which every
keyframe left the pusher. The live playlist is polled every 10 ms over HTTP; segment *k* starts
at keyframe *k* (GOP = segment length). For each segment we report

* ``first frame → listed``: the oldest frame in the segment waited this long (target: at most
  one segment duration + 0.5 s), and
* ``last frame → listed``: packaging overhead once the segment is complete (the floor measured
  for plain ffmpeg in BASELINES.md is ~34 ms).

Run: ``.venv/bin/python -m bench.publish_latency [--seconds 30] [--segment 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import report_latency_runs, make_source, median, percentile, poll_playlist, push, server, stop
from formats import flv
from ingest.rtmp.protocol import MediaReceived, PublishRequested, RtmpServerConnection


class Tap:
    """Forwards pusher → server bytes and records when each video keyframe passed."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.keyframes: list[tuple[int, float]] = []  # (FLV timestamp ms, wall time)
        self.port = 0

    async def serve(self, ready: threading.Event, stop_flag: threading.Event) -> None:
        srv = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]
        ready.set()
        while not stop_flag.is_set():
            await asyncio.sleep(0.1)
        srv.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        core = RtmpServerConnection()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.create_task(downstream())
        try:
            while data := await reader.read(65536):
                now = time.time()
                up_writer.write(data)
                for event in core.receive_data(data):
                    if isinstance(event, PublishRequested):
                        core.accept_publish()
                    elif (isinstance(event, MediaReceived) and event.kind == "video"
                          and flv.is_keyframe(event.payload) and not flv.is_sequence_header("video", event.payload)):
                        self.keyframes.append((event.timestamp, now))
                core.data_to_send()
                await up_writer.drain()
        finally:
            up_writer.close()
            task.cancel()


def run(seconds: float, segment: float) -> dict[str, float]:
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / f"lecture-720p-gop{segment:g}.flv", gop_seconds=segment)
    with server(segment_seconds=segment, grace_period_seconds=1) as srv:
        event = srv.create_event("Latency")
        tap = Tap(srv.rtmp_port)
        ready, stop_flag = threading.Event(), threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(tap.serve(ready, stop_flag)), daemon=True)
        thread.start()
        ready.wait(5)
        url = srv.publish_url(event).replace(f":{srv.rtmp_port}/", f":{tap.port}/")
        pusher = push(source, url)
        listed: dict[int, float] = {}
        playlist_path = f"/live/{event['slug']}/source/live.m3u8"
        deadline = time.time() + seconds
        try:
            poll_playlist(srv, playlist_path, lambda text, now: _record(text, now, listed), seconds, deadline)
        finally:
            stop(pusher)
            stop_flag.set()
            thread.join(5)
    keyframes = tap.keyframes
    first, last = [], []
    for number, at in sorted(listed.items()):
        if number + 1 < len(keyframes) and number > 0:  # segment 0 was listed before polling began
            first.append(at - keyframes[number][1])
            last.append(at - keyframes[number + 1][1])
    return {
        "segments": len(first),
        "first_median": median(first), "first_p90": percentile(first, 90),
        "last_median": median(last), "last_p90": percentile(last, 90),
    }


_SEGMENT = re.compile(r"seg_(\d+)\.ts")


def _record(text: str, now: float, listed: dict[int, float]) -> bool:
    for match in _SEGMENT.finditer(text):
        listed.setdefault(int(match.group(1)), now)
    return bool(listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [run(args.seconds, args.segment) for _ in range(args.runs)]
    report_latency_runs(results, args.segment)


if __name__ == "__main__":
    main()
