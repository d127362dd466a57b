"""A burst of simultaneous publishes: do all of them go live?

Lectures start on the hour: ``--streams`` (50) encoders connect within the same second. Each pusher is
``ffmpeg -re -c copy`` of the prepared 720p30 2.5 Mb/s lecture (as ``bench.ingest_cpu``) to its own
event of one ``live-server run`` (LL-HLS by default, ``--plain`` for MPEG-TS), all started at once on
127.0.0.1. Reported: how many events listed a segment within ``--timeout`` seconds, the time from the
burst to each one's first listed segment (median, worst), and how many pushers exited meanwhile (a
refused publish: ffmpeg gives up). Before issue 18's fix, 16 of 50 were refused after the 10 s publish
timeout (every publish's catalog writes and packager start queued behind one lock for the node).

Run: ``.venv/bin/python -m bench.publish_burst --streams 50 [--runs 1]``
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from bench.harness import make_source, median, push, server, stop

_SEGMENT = re.compile(r"seg_(\d+)\.(?:ts|m4s)")


def burst(count: int, source: Path, timeout: float, ll_hls: bool) -> dict[str, float]:
    with server(segment_seconds=2.0, grace_period_seconds=1, ll_hls="true" if ll_hls else "false") as srv:
        events = [srv.create_event(f"Lecture {i}") for i in range(count)]
        load = os.getloadavg()[0]
        started = time.monotonic()
        pushers = [push(source, srv.publish_url(e)) for e in events]
        listed_at: dict[int, float] = {}
        try:
            while len(listed_at) < count and time.monotonic() - started < timeout:
                for i, event in enumerate(events):
                    if i in listed_at:
                        continue
                    try:
                        text = srv.get(f"/live/{event['slug']}/source/live.m3u8", timeout=5).decode()
                    except OSError:
                        continue
                    if _SEGMENT.search(text):
                        listed_at[i] = time.monotonic() - started
                time.sleep(0.2)
            gone = sum(p.poll() is not None for p in pushers)
        finally:
            for p in pushers:
                stop(p)
    times = list(listed_at.values())
    return {"live": len(listed_at), "median": median(times), "worst": max(times) if times else float("nan"),
            "gone": gone, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for every event to list a segment")
    parser.add_argument("--plain", action="store_true", help="plain HLS (ffmpeg packagers) instead of LL-HLS")
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / "lecture-720p-gop2.flv", gop_seconds=2.0)
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    for run in range(args.runs):
        r = burst(args.streams, source, args.timeout, not args.plain)
        print(f"run {run + 1}: {r['live']:.0f}/{args.streams} listed a segment within {args.timeout:g} s; first segment "
              f"after {r['median']:.1f} s (median), {r['worst']:.1f} s (worst); pushers gone {r['gone']:.0f}; "
              f"load {r['load']:.1f}", flush=True)


if __name__ == "__main__":
    main()
