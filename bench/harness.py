"""What every benchmark needs: a server process on loopback, a lecturer and events, a cheap pusher,
CPU accounting for a process tree, and medians.

The server under test is started exactly as a user would (``live-server run``), with its own
SQLite catalog and media folder under a temporary directory, so a benchmark never touches ``./var``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ffmpeg_path() -> str:
    """The ffmpeg the server would run (same rule: LIVE_FFMPEG, else the bundled wheel's)."""
    from live_server.ffmpeg import resolve_ffmpeg

    return resolve_ffmpeg(os.environ.get("LIVE_FFMPEG", "")).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def make_source(path: Path, seconds: int = 60, size: str = "1280x720", fps: int = 30, kbps: int = 2500,
                gop_seconds: float = 2.0) -> Path:
    """Encode a test lecture once (H.264 + AAC, fixed GOP) so pushers only copy: they cost almost nothing."""
    if path.exists():
        return path
    gop = int(fps * gop_seconds)
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{kbps}k",
         "-maxrate", f"{kbps}k", "-bufsize", f"{kbps * 2}k", "-g", str(gop), "-keyint_min", str(gop),
         "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)],
        check=True,
    )
    return path


def push(source: Path, url: str, loop: bool = True) -> subprocess.Popen[bytes]:
    """Push a prepared file at real-time speed without re-encoding (like a capture box would)."""
    args = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re"]
    if loop:
        args += ["-stream_loop", "-1"]
    args += ["-i", str(source), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def process_tree_ticks(pid: int) -> int:
    """user+system clock ticks of a process and all its live descendants (ffmpeg packagers)."""
    total = 0
    for child in _descendants(pid) | {pid}:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def cpu_seconds(pid: int, seconds: float) -> float:
    """CPU-seconds a process tree used over the next ``seconds`` of wall time."""
    before = process_tree_ticks(pid)
    time.sleep(seconds)
    return (process_tree_ticks(pid) - before) / CLOCK_TICKS


@dataclass
class Server:
    """A ``live-server run`` process with its own catalog and media folder."""

    process: subprocess.Popen[bytes]
    workdir: Path
    port: int
    rtmp_port: int
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        return subprocess.run([str(BIN / "live-server"), *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def create_event(self, title: str, *extra: str) -> dict[str, Any]:
        return json.loads(self.cli("events", "create", "--title", title, "--owner", "bench", "--json", *extra))

    def publish_url(self, event: dict[str, Any]) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{event['stream']['stream_key']}"

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
            return resp.read()

    def event_state(self, event: dict[str, Any]) -> str:
        return json.loads(self.get(f"/api/v1/events/{event['slug']}"))["state"]

    def media_folder(self, event: dict[str, Any]) -> Path:
        runs = sorted((self.workdir / "media" / "live" / str(event["id"])).iterdir())
        return runs[-1]


@contextlib.contextmanager
def server(**settings: Any) -> Iterator[Server]:
    """Start ``live-server run`` on free ports; ``settings`` become ``LIVE_*`` variables. Plain HLS unless
    ``ll_hls`` is given: the benchmarks read MPEG-TS segment names and the ffmpeg packager's CPU, and their
    figures in ``bench/README.md`` were measured that way (the server's own default is LL-HLS)."""
    settings.setdefault("ll_hls", "false")
    workdir = Path(tempfile.mkdtemp(prefix="live-bench-"))
    port, rtmp_port = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "LIVE_DATA_DIR": str(workdir), "LIVE_MEDIA_DIR": str(workdir / "media"),
        "LIVE_RTMP_HOST": "127.0.0.1", "LIVE_RTMP_PORT": str(rtmp_port), "LIVE_LOG_LEVEL": "WARNING",
        # every pusher comes from 127.0.0.1, and dozens start at once
        "LIVE_RTMP_MAX_PENDING_PER_ADDRESS": "256", "LIVE_RTMP_MAX_PENDING_CONNECTIONS": "256",
        "LIVE_DATABASE_URL": "", "LIVE_REDIS_URL": "",
    })
    env.update({f"LIVE_{k.upper()}": str(v) for k, v in settings.items()})
    # The venv's live-server is an editable install of one checkout: this checkout's code is the one measured.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    subprocess.run([str(BIN / "live-server"), "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([str(BIN / "live-server"), "users", "create", "--username", "bench", "--role", "lecturer",
                    "--password", "bench-password-1"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([str(BIN / "live-server"), "run", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL)
    srv = Server(proc, workdir, port, rtmp_port, env)
    try:
        deadline = time.monotonic() + 120  # a loaded 2-core box takes tens of seconds to import and start
        while True:
            try:
                srv.get("/healthz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
        yield srv
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def poll_playlist(srv: Server, path: str, record: Callable[[str, float], bool], seconds: float,
                  deadline: float | None = None) -> None:
    """Fetch the playlist at ``path`` and hand its text and fetch time to ``record`` (true once a segment is
    listed): until that first segment (30 s at most), then every 10 ms until ``deadline`` (default: ``seconds``
    after the first segment). A failed fetch is skipped."""

    def poll() -> bool:
        now = time.time()
        try:
            text = srv.get(path, timeout=2).decode()
        except (urllib.error.URLError, OSError):
            return False
        return record(text, now)

    wait_until(poll, 30, "the first segment")
    end = deadline if deadline is not None else time.time() + seconds
    while time.time() < end:
        poll()
        time.sleep(0.01)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def report_latency_runs(results: Sequence[dict[str, float]], segment: float) -> None:
    """Print first/last-frame → listed medians over runs (publish_latency, whip_latency)."""
    for key in ("first_median", "first_p90", "last_median", "last_p90"):
        values = [r[key] for r in results]
        print(f"{key:14s} median of {len(values)} runs: {median(values) * 1000:7.0f} ms  (runs: "
              + ", ".join(f"{v * 1000:.0f}" for v in values) + ")")
    print(f"segments measured per run: {[int(r['segments']) for r in results]}; segment {segment:g} s; "
          f"target first-frame ≤ {(segment + 0.5) * 1000:.0f} ms")
