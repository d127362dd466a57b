"""CPU per passthrough stream, and how many concurrent passthrough streams this machine sustains.

For N = 1, 8, 16, 32, 50 concurrent RTMP pushes of a 720p30 2.5 Mbps lecture (``ffmpeg -re -c copy``
of the prepared file, GOP 2 s), the CPU of each server's process tree is read from ``/proc`` over a
fixed window once every stream is listed, and divided by N × window: CPU-seconds per media-second per
stream (× 100: % of a core). Side by side in the same invocation, runs alternating:

* **plain**: ``live-server run`` with its defaults (ffmpeg ``-c copy`` packager per stream writing
  MPEG-TS; the tree is the server and its ffmpeg children);
* **ll**: ``live-server run`` with ``ll_hls = true`` (passthrough muxed to fMP4 parts in-process,
  no ffmpeg per stream);
* **nginx**: the reference, nginx-rtmp (Debian's ``libnginx-mod-rtmp``, the stack Esup-Pod's live
  module runs on), a generated configuration: one worker, ``live on; hls on; hls_fragment 2s;
  hls_playlist_length 12s`` (our 6 × 2 s window), master and worker measured.

Both of ours keep their defaults otherwise (DVR playlist, recording on: segments hard-linked).
A stream "kept real time" when it listed segments at the expected pace during the window (at least
90 % of window / segment length, less one). ``--bare`` adds the old reference, one bare ``ffmpeg
-re -c copy -f hls`` reading the file itself (no RTMP).

Run (the lead's measurement): ``.venv/bin/python -m bench.ingest_cpu --streams 1 8 16 32 50 --window 20 --runs 3``
Smoke: ``.venv/bin/python -m bench.ingest_cpu --streams 1 4 --window 10 --runs 1``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from bench.harness import cpu_seconds, ffmpeg_path, free_port, make_source, median, push, server, stop, wait_until

_SEGMENT = re.compile(r"seg_(\d+)\.(?:ts|m4s)")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
SIDES = ("nginx", "plain", "ll")


@dataclass
class Target:
    """A server under test: where to push stream ``i``, how many segments stream ``i`` has listed, its root pid."""

    pid: int
    publish_url: Callable[[int], str]
    listed: Callable[[int], int]


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


def nginx_binary() -> str:
    """nginx (Debian's nginx-light) with the RTMP module installed, installing the module if we may."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light libnginx-mod-rtmp")
    if not RTMP_MODULE.exists():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            print("installing Debian's libnginx-mod-rtmp", flush=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "libnginx-mod-rtmp"], check=False,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if not RTMP_MODULE.exists():
            raise SystemExit("nginx-rtmp is missing: apt-get install -y libnginx-mod-rtmp")
    return binary


@contextlib.contextmanager
def nginx_rtmp(segment: float, window: int) -> Iterator[Target]:
    """nginx-rtmp writing HLS of every stream under a temporary folder, with a generated configuration."""
    binary = nginx_binary()
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-rtmp-"))
    hls = prefix / "hls"
    hls.mkdir()
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers write into our (private) temporary folder
    (prefix / "nginx.conf").write_text(
        f"load_module {RTMP_MODULE};\n{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; hls on; hls_path {hls}; "
        f"hls_fragment {segment:g}s; hls_playlist_length {segment * window:g}s; }} }} }}\n")
    proc = subprocess.Popen([binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")],
                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def accepting() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx-rtmp did not start: {(prefix / 'error.log').read_text()[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    def listed(i: int) -> int:
        with contextlib.suppress(OSError):
            numbers = [int(n) for n in re.findall(rf"^stream{i}-(\d+)\.ts$", (hls / f"stream{i}.m3u8").read_text(),
                                                  re.M)]
            return max(numbers) + 1 if numbers else 0
        return 0

    try:
        wait_until(accepting, 30, "nginx-rtmp to listen")
        yield Target(proc.pid, lambda i: f"rtmp://127.0.0.1:{port}/live/stream{i}", listed)
    finally:
        stop(proc)
        shutil.rmtree(prefix, ignore_errors=True)


@contextlib.contextmanager
def ours(count: int, segment: float, window: int, ll_hls: bool) -> Iterator[Target]:
    """``live-server run`` (plain or LL-HLS) with ``count`` events."""
    settings = {"segment_seconds": segment, "live_window_segments": window, "grace_period_seconds": 1}
    with server(**settings, **({"ll_hls": "true"} if ll_hls else {})) as srv:
        events = [srv.create_event(f"Lecture {i}") for i in range(count)]

        def listed(i: int) -> int:
            try:
                text = srv.get(f"/live/{events[i]['slug']}/source/live.m3u8", timeout=5).decode()
            except OSError:
                return 0
            numbers = [int(n) for n in _SEGMENT.findall(text)]
            return max(numbers) + 1 if numbers else 0

        yield Target(srv.process.pid, lambda i: srv.publish_url(events[i]), listed)


def measure(target: Target, source: Path, count: int, window: float, segment: float) -> dict[str, float]:
    """Push ``count`` streams, wait until each lists a segment, then read the tree's CPU over ``window``."""
    pushers = [push(source, target.publish_url(i)) for i in range(count)]
    try:
        for i in range(count):
            wait_until(lambda: target.listed(i) > 0, 90, f"stream {i} to list a segment")
        time.sleep(segment)  # every stream past its first segment
        before = [target.listed(i) for i in range(count)]
        load = os.getloadavg()[0]
        used = cpu_seconds(target.pid, window)
        after = [target.listed(i) for i in range(count)]
        dead = sum(p.poll() is not None for p in pushers)
    finally:
        for p in pushers:
            stop(p)
    expected = window / segment
    kept = sum(1 for b, a in zip(before, after) if a - b >= 0.9 * expected - 1)
    return {"per_stream": used / window / count, "kept": kept, "load": load, "dead_pushers": dead,
            "segments_min": min(a - b for b, a in zip(before, after)), "expected": expected}


def run_side(side: str, source: Path, count: int, args: argparse.Namespace) -> dict[str, float]:
    target_cm = (nginx_rtmp(args.segment, args.window) if side == "nginx"
                 else ours(count, args.segment, args.window, ll_hls=side == "ll"))
    with target_cm as target:
        return measure(target, source, count, args.window_seconds, args.segment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 16, 32, 50])
    parser.add_argument("--window", dest="window_seconds", type=float, default=20, help="measuring window (s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side and stream count (medians)")
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--playlist-segments", dest="window", type=int, default=6, help="live window (segments)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--bare", action="store_true", help="also measure one bare ffmpeg -c copy -f hls")
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / f"lecture-720p-gop{args.segment:g}.flv", gop_seconds=args.segment)
    if "nginx" in args.sides:
        nginx_binary()
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}; window {args.window_seconds:g} s; "
          f"{args.runs} run(s) per side and count", flush=True)
    if args.bare:
        ref = median([reference(source, args.window_seconds, args.segment) for _ in range(args.runs)])
        print(f"bare ffmpeg -re -c copy -f hls (reads the file itself): {ref * 100:.2f} % of a core", flush=True)
    names = {"nginx": "nginx-rtmp", "plain": "ours plain", "ll": "ours LL-HLS"}
    table: list[str] = []
    for count in args.streams:
        results: dict[str, list[dict[str, float]]] = {side: [] for side in args.sides}
        for run in range(args.runs):
            order = args.sides[run % len(args.sides):] + args.sides[:run % len(args.sides)]  # who goes first rotates
            for side in order:
                r = run_side(side, source, count, args)
                results[side].append(r)
                print(f"{count:3d} streams, run {run + 1}, {names[side]:11s}: {r['per_stream'] * 100:.2f} % of a core "
                      f"per stream; kept real time {r['kept']}/{count} (fewest segments {r['segments_min']} of "
                      f"{r['expected']:g}); pushers gone {r['dead_pushers']}; load {r['load']:.1f}", flush=True)
        nginx = median([r["per_stream"] for r in results["nginx"]]) if results.get("nginx") else None
        for side in args.sides:
            per_stream = median([r["per_stream"] for r in results[side]])
            ratio = f"{per_stream / nginx:.2f}x nginx-rtmp" if nginx else "—"
            table.append(f"{count:3d} streams  {names[side]:11s} {per_stream * 100:6.2f} % of a core per stream "
                         f"({ratio}); tree {per_stream * count * 100:5.1f} % of a core; kept real time "
                         f"{min(r['kept'] for r in results[side])}/{count} (worst run); runs "
                         + ", ".join(f"{r['per_stream'] * 100:.2f}" for r in results[side])
                         + "; load " + ", ".join(f"{r['load']:.1f}" for r in results[side]))
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
