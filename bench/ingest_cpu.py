"""CPU per passthrough stream, and how many concurrent passthrough streams this machine sustains.

For N = 1, 4, 8, 16 … concurrent RTMP pushes of a 720p30 2.5 Mbps lecture (copied, ``-re``), the
CPU of the server process tree (the Python server plus its ffmpeg packagers) is sampled from
``/proc`` over a fixed window once every stream is live, and divided by N × window: CPU-seconds per
media-second per stream. Side by side, the reference: the same file packaged by a bare
``ffmpeg -c copy -f hls`` (what BASELINES.md calls 0.007). A stream is "sustained" when it listed
segments at real-time rate during the window (at least 90 % of window / segment length).

Run: ``.venv/bin/python -m bench.ingest_cpu [--streams 1 4 8 16] [--window 20]``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import cpu_seconds, ffmpeg_path, make_source, median, push, server, stop, wait_until

_SEGMENT = re.compile(r"seg_(\d+)\.ts")


def reference(source: Path, window: float, segment: float) -> float:
    """CPU-seconds per media-second of bare ffmpeg doing the same packaging."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.Popen(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(source),
             "-c", "copy", "-f", "hls", "-hls_time", str(segment), "-hls_list_size", "6",
             "-hls_flags", "delete_segments", f"{out}/live.m3u8"], stdin=subprocess.DEVNULL)
        try:
            time.sleep(3)
            return cpu_seconds(proc.pid, window) / window
        finally:
            stop(proc)


def streams(source: Path, count: int, window: float, segment: float) -> tuple[float, int]:
    """(CPU-s per media-s per stream, streams that kept real time) with ``count`` concurrent pushes."""
    with server(segment_seconds=segment, grace_period_seconds=1) as srv:
        events = [srv.create_event(f"Lecture {i}") for i in range(count)]
        pushers = [push(source, srv.publish_url(e)) for e in events]
        try:
            for event in events:
                wait_until(lambda: _listed(srv, event), 60, "every stream to be live")
            before = {e["id"]: _listed(srv, e) for e in events}
            used = cpu_seconds(srv.process.pid, window)
            after = {e["id"]: _listed(srv, e) for e in events}
        finally:
            for p in pushers:
                stop(p)
    expected = window / segment
    sustained = sum(1 for e in events if after[e["id"]] - before[e["id"]] >= 0.9 * expected - 1)
    return used / window / count, sustained


def _listed(srv: object, event: dict) -> int:
    try:
        text = srv.get(f"/live/{event['slug']}/source/live.m3u8", timeout=2).decode()  # type: ignore[attr-defined]
    except OSError:
        return 0
    numbers = [int(n) for n in _SEGMENT.findall(text)]
    return max(numbers) + 1 if numbers else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3, help="runs of the reference and of N=1")
    parser.add_argument("--segment", type=float, default=2.0)
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / f"lecture-720p-gop{args.segment:g}.flv", gop_seconds=args.segment)
    ref = median([reference(source, args.window, args.segment) for _ in range(args.runs)])
    print(f"reference: bare ffmpeg -c copy -f hls: {ref:.4f} CPU-s per media-s ({ref * 100:.2f} % of a core)")
    for count in args.streams:
        runs = args.runs if count == 1 else 1
        results = [streams(source, count, args.window, args.segment) for _ in range(runs)]
        per_stream = median([r[0] for r in results])
        sustained = min(r[1] for r in results)
        print(f"{count:3d} streams: {per_stream:.4f} CPU-s per media-s per stream ({per_stream * 100:.2f} % of a core, "
              f"{per_stream / ref:.1f}x the reference); total {per_stream * count * 100:.0f} % of a core; "
              f"{sustained}/{count} kept real time")


if __name__ == "__main__":
    main()
