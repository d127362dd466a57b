"""CPU of one ABR event (the default ladder: 720p/480p/240p/audio) from a 720p30 source: plain HLS
(ffmpeg's ``segment`` muxer writes MPEG-TS) against LL-HLS (ffmpeg only encodes, each rendition as
FLV on a pipe, our CMAF muxer packages it in the server process).

One RTMP push of a 720p30 2.5 Mbps lecture (copied, ``-re``) to a ``live-server run`` with
``ll_hls`` off, then on. Once the event lists segments, the CPU of the ffmpeg child (the encoder)
and of the whole server process tree (Python included) are sampled from ``/proc`` over a fixed
window: %CPU = CPU-seconds / window x 100 (100 % = one core). Whether the ladder kept real time is
told by the segments listed in the window.

Run: ``.venv/bin/python -m bench.ladder_cpu [--window 20]``
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from bench.harness import _descendants, make_source, process_tree_ticks, push, server, stop, wait_until

CLOCK_TICKS = 100


def _ffmpeg_ticks(server_pid: int) -> int:
    """user+system ticks of the server's ffmpeg children (the packager or the transcoder)."""
    total = 0
    for pid in _descendants(server_pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "(ffmpeg" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def run(source: Path, ll: bool, window: float) -> dict[str, float]:
    suffix = "m4s" if ll else "ts"
    with server(segment_seconds=2, ll_hls=str(ll).lower(), recording_enabled="false") as srv:
        event = srv.create_event("Ladder", "--abr")
        pusher = push(source, srv.publish_url(event))
        try:
            def listed() -> int:
                try:
                    text = srv.get(f"/live/{event['slug']}/720p/live.m3u8").decode()
                except OSError:
                    return 0
                numbers = re.findall(rf"seg_(\d+)\.{suffix}", text)
                return int(numbers[-1]) + 1 if numbers else 0
            wait_until(lambda: listed() >= 2, 60, "the ladder to list segments")
            time.sleep(2)
            first = listed()
            tree, ffmpeg = process_tree_ticks(srv.process.pid), _ffmpeg_ticks(srv.process.pid)
            time.sleep(window)
            tree = process_tree_ticks(srv.process.pid) - tree
            ffmpeg = _ffmpeg_ticks(srv.process.pid) - ffmpeg
            segments = listed() - first
        finally:
            stop(pusher)
    return {"ffmpeg": ffmpeg / CLOCK_TICKS / window * 100, "tree": tree / CLOCK_TICKS / window * 100,
            "segments": segments, "expected": window / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = make_source(Path(tmp) / "lecture-720p30.flv", seconds=60)
        for ll in (False, True):
            r = run(source, ll, args.window)
            print(f"{'LL-HLS (transcoder + CMAF muxer)' if ll else 'plain HLS (ffmpeg segment muxer)':34s} "
                  f"ffmpeg {r['ffmpeg']:5.1f} %CPU, server tree {r['tree']:5.1f} %CPU, "
                  f"{r['segments']:.0f}/{r['expected']:.0f} segments in {args.window:g} s")


if __name__ == "__main__":
    main()
