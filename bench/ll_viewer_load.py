"""LL-HLS viewer load: a lecture hall of simulated low-latency players through the shipped nginx.

One ``live-server run`` with ``ll_hls = true`` (fMP4 parts of 0.334 s, blocking reloads) has one
live event: the prepared 720p30 2.5 Mbps lecture pushed over RTMP with ``ffmpeg -re -c copy``.
nginx runs in front of it from ``deploy/nginx/live.conf.template`` (rendered as ``tests/nginx.py``
does: X-Accel-Redirect on, its playlist cache folder), plain HTTP/1.1 on 127.0.0.1.

Each simulated player does what hls.js does in low-latency mode: GET the media playlist once, then
loop: a blocking ``live.m3u8?_HLS_msn=M&_HLS_part=P`` for the next part (the one
``EXT-X-PRELOAD-HINT`` names; without a hint, the part after the last listed one, or part 0 of the
next segment once the last listed part's segment is complete), then GET every part listed since the
last one it fetched. One keep-alive connection per player, from its own loopback source address
(127.1.x.y: students are not behind one NAT unless ``--one-address``).

Measured over a window after the players have joined (never the join itself):

* **part available → delivered**: the wall clock when the player had the part's last byte minus the
  part file's mtime in the media folder (the server writes each part once, to a temp file renamed
  into place, before it lists it: the mtime is the moment it exists on the server). The players run
  on the same box and read the file's mtime themselves (once per part per load process). mtimes
  come from the kernel's coarse clock (one tick, ≤ 4 ms, early), so the figure errs by that much on
  the high side. EXT-X-PROGRAM-DATE-TIME was not used: it dates a segment's first frame when the
  server received it, not when a part was complete.
* **part available → playlist answered**: the same for the blocking reload that announced it (what
  ``proxy_cache_lock``'s 500 ms re-check costs collapsed waiters shows here).
* **part request**: the part GET alone (app's access decision + X-Accel + nginx's sendfile).
* errors (non-2xx, timeouts, closed connections), requests/s, and the CPU (from ``/proc``, in cores)
  of nginx (master + workers), the app (``live-server run`` and its children), the load generator
  (its processes) and the pusher; the load average at the window's start and end.

The load generator is a raw asyncio ``Protocol`` HTTP/1.1 client (no aiohttp: a fraction of the CPU
per request) in ``--processes`` processes; uvloop is used when installed (``pip install uvloop``
into the venv: bench only, not a project dependency).

``--variant`` picks the nginx configuration: ``shipped`` (the template as is: identical blocking
reloads collapsed by ``proxy_cache_lock``), ``app-blocking`` (the same, but requests carrying
``_HLS_msn`` bypass the cache and are all held by the app, which renders once per part and answers
every waiter from that text). Several variants alternate run by run.

Run (``--viewers`` takes several counts: the knee)::

    .venv/bin/python -m bench.ll_viewer_load --viewers 250 500 1000 1500 2000 --seconds 20 --runs 1
    .venv/bin/python -m bench.viewer_load --ll-hls ...   # the same

(nginx from Debian: ``apt-get install nginx-light``.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import resource
import shutil
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.harness import CLOCK_TICKS, make_source, median, percentile, process_tree_ticks, push, server, stop, wait_until
from bench.viewer_load import _playing, start_fronting_nginx

_PART = re.compile(rb'#EXT-X-PART:[^\n]*URI="(part_(\d+)_(\d+)\.m4s)"')
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")
_HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"')


def listed_parts(playlist: bytes) -> list[tuple[int, int, str]]:
    """(msn, index, uri) of every ``EXT-X-PART`` the playlist lists, in order."""
    return [(int(m.group(2)), int(m.group(3)), m.group(1).decode()) for m in _PART.finditer(playlist)]


def next_part(playlist: bytes, parts: Sequence[tuple[int, int, str]] | None = None) -> tuple[int, int] | None:
    """(msn, part) the next blocking reload asks for: the hinted part; without a hint, the part after the
    last listed one, or part 0 of the next segment when that part's segment is complete (listed with
    EXTINF), as hls.js computes it. None when the playlist lists no part (ended, or not LL)."""
    hint = _HINT.search(playlist)
    if hint is not None:
        return int(hint.group(1)), int(hint.group(2))
    parts = listed_parts(playlist) if parts is None else parts
    if not parts:
        return None
    msn, index, _ = parts[-1]
    if f"seg_{msn:06d}.m4s".encode() in playlist:
        return msn + 1, 0
    return msn, index + 1


# --- a cheap HTTP/1.1 keep-alive client ------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; bodies are kept only when asked for."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, int]] | None = None
        self.keep_body = True
        self.closed = False
        self.sent = 0.0  # monotonic time of the request in flight (0: none), for the watchdog
        self._head: tuple[int, int, bool, bool] | None = None  # status, length, chunked, close
        self._discarded = 0  # body bytes counted and dropped (keep_body off)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head is not None and not self.keep_body and not head[2] and not self.buffer:
            self._discarded += len(data)  # a part's bytes: counted, never copied
            if self._discarded < head[1]:
                return
            self.buffer += data[len(data) - (self._discarded - head[1]):]
            self._discarded = head[1]
        else:
            self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            done = self._parse()
            if done is not None:
                self.waiter.set_result(done)

    def _parse(self) -> tuple[int, bytes, int] | None:
        if self._head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(self.buffer[:end]).lower()
            status = int(head[9:12])
            chunked = b"\r\ntransfer-encoding: chunked" in head
            close = b"\r\nconnection: close" in head
            found = _LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            self._head = (status, length, chunked, close)
            del self.buffer[:end + 4]
            self._discarded = 0
            if not self.keep_body and not chunked:  # what came with the head: counted, then dropped
                taken = min(length, len(self.buffer))
                self._discarded = taken
                del self.buffer[:taken]
        status, length, chunked, close = self._head
        if chunked:
            body = bytearray()
            pos = 0
            while True:
                eol = self.buffer.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(self.buffer[pos:eol]).split(b";")[0], 16)
                if len(self.buffer) < eol + 2 + size + 2:
                    return None
                if size == 0:
                    del self.buffer[:eol + 4]
                    break
                body += self.buffer[eol + 2:eol + 2 + size]
                pos = eol + 2 + size + 2
            data, size = bytes(body), len(body)
        elif not self.keep_body:
            if self._discarded < length:
                return None
            data, size = b"", length
        else:
            if len(self.buffer) < length:
                return None
            data = bytes(self.buffer[:length])
            size = length
            del self.buffer[:length]
        self._head = None
        self.sent = 0.0
        if close and self.transport is not None:
            self.transport.close()
        return status, data, size

    async def get(self, target: bytes, headers: bytes, keep_body: bool = True) -> tuple[int, bytes, int]:
        """(status, body or b"", body size) of one GET."""
        assert self.transport is not None
        self.keep_body = keep_body
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent = time.monotonic()
        self.transport.write(b"GET " + target + b" HTTP/1.1\r\n" + headers)
        return await self.waiter

    def expire(self, now: float, timeout: float) -> None:
        """The watchdog's check: a request unanswered after ``timeout`` fails with TimeoutError."""
        if self.sent and now - self.sent > timeout and self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError())


@dataclass
class _Stats:
    delivered: list[float] = field(default_factory=list)  # part available → last byte at the player
    announced: list[float] = field(default_factory=list)  # part available → blocking reload answered
    part_request: list[float] = field(default_factory=list)
    playlist_request: list[float] = field(default_factory=list)
    requests: int = 0
    part_bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    behind: int = 0  # reloads that announced more than one new part (the player had fallen behind)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


@dataclass(frozen=True)
class _Job:
    port: int
    base: str  # /live/<slug>/source/
    folder: str  # the rendition's media folder (part mtimes)
    first: int
    count: int
    start: float  # wall clock: players join over [start, start + ramp)
    ramp: float
    window: tuple[float, float]  # wall clock: what is recorded
    one_address: bool
    timeout: float


class _Player:
    def __init__(self, job: _Job, index: int, stats: _Stats, mtimes: dict[str, float | None]) -> None:
        self.job, self.index, self.stats, self.mtimes = job, index, stats, mtimes
        self.headers = (f"Host: 127.0.0.1\r\nUser-Agent: bench-ll-viewer/{index}\r\n"
                        f"Accept: */*\r\n\r\n").encode()
        self.address = "127.0.0.1" if job.one_address else f"127.1.{index // 250}.{index % 250 + 1}"
        self.connection: _Connection | None = None

    async def _get(self, path: str, keep_body: bool = True) -> tuple[int, bytes, int]:
        loop = asyncio.get_running_loop()
        if self.connection is None or self.connection.closed:
            _, protocol = await loop.create_connection(_Connection, "127.0.0.1", self.job.port,
                                                       local_addr=(self.address, 0))
            self.connection = protocol
        connection = self.connection
        try:
            return await connection.get(path.encode(), self.headers, keep_body)
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()  # a late answer must not be read as the next one's
            self.connection = None
            raise

    def _available(self, uri: str) -> float | None:
        if uri not in self.mtimes:
            try:
                self.mtimes[uri] = os.stat(os.path.join(self.job.folder, uri)).st_mtime_ns / 1e9
            except OSError:
                self.mtimes[uri] = None
        return self.mtimes[uri]

    async def run(self) -> None:
        job, stats = self.job, self.stats
        await asyncio.sleep(max(0.0, job.start - time.time()) + random.uniform(0, job.ramp))
        target: tuple[int, int] | None = None
        last: tuple[int, int] = (-1, -1)
        while time.time() < job.window[1]:
            counted = job.window[0] <= time.time()
            try:
                if target is None:  # join (or re-join after an error): the playlist as it is
                    status, text, _ = await self._get(job.base + "live.m3u8")
                    stats.requests += counted
                    if status != 200:
                        if counted:
                            stats.error(f"playlist {status}")
                        await asyncio.sleep(0.5)
                        continue
                    parts = listed_parts(text)
                    target = next_part(text, parts)
                    last = parts[-1][:2] if parts else (-1, -1)
                    continue
                asked = time.time()
                status, text, _ = await self._get(f"{job.base}live.m3u8?_HLS_msn={target[0]}&_HLS_part={target[1]}")
                answered = time.time()
                stats.requests += counted
                if status != 200:
                    if counted:
                        stats.error(f"blocking playlist {status}")
                    target = None
                    continue
                parts = listed_parts(text)
                fresh = [p for p in parts if p[:2] > last]
                if counted:
                    stats.playlist_request.append(answered - asked)
                    stats.behind += len(fresh) > 1
                    announced = next((p for p in parts if p[:2] >= target), None)
                    made = self._available(announced[2]) if announced is not None else None
                    if made is not None:
                        stats.announced.append(answered - made)
                for msn, index, uri in fresh:
                    started = time.time()
                    status, _, size = await self._get(job.base + uri, keep_body=False)
                    done = time.time()
                    counted = job.window[0] <= done <= job.window[1]
                    stats.requests += counted
                    if status != 200:
                        if counted:
                            stats.error(f"part {status}")
                        continue
                    last = (msn, index)
                    if counted:
                        stats.part_request.append(done - started)
                        stats.part_bytes += size
                        made = self._available(uri)
                        if made is not None:
                            stats.delivered.append(done - made)
                target = next_part(text, parts)
            except (OSError, TimeoutError, ValueError) as exc:
                if job.window[0] <= time.time() <= job.window[1]:
                    stats.error(type(exc).__name__)
                target = None
                await asyncio.sleep(0.2)
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()


async def _load(job: _Job) -> _Stats:
    stats = _Stats()
    mtimes: dict[str, float | None] = {}
    players = [_Player(job, job.first + i, stats, mtimes) for i in range(job.count)]
    running = asyncio.gather(*(p.run() for p in players))
    while not running.done():  # one watchdog per process rather than a timer per request
        await asyncio.wait([running], timeout=0.5)
        now = time.monotonic()
        for player in players:
            if player.connection is not None:
                player.connection.expire(now, job.timeout)
    await running
    return stats


def _worker(job: _Job, results: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop  # type: ignore[import-not-found]
        runner: Callable[..., _Stats] = uvloop.run
    except ImportError:
        runner = asyncio.run
    results.put(runner(_load(job)))


# --- one measured run --------------------------------------------------------------------------------


def _ticks(pids: Sequence[int]) -> int:
    return sum(process_tree_ticks(pid) for pid in pids)


def app_media_requests(app_url: str) -> float:
    """Requests the app answered on /live/ and for nginx's decisions (/live-decision/) so far (its
    ``live_http_requests_total``, from 127.0.0.1)."""
    with urllib.request.urlopen(app_url + "/metrics", timeout=30) as resp:  # a busy app answers late
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("live_http_requests_total{")
               and ('route="/live/{slug}/{tail}"' in line or 'route="/live-decision/{slug}/{tail}"' in line))


def run_once(port: int, base: str, folder: Path, viewers: int, seconds: float, processes: int,
             pids: dict[str, list[int]], app_url: str, one_address: bool = False) -> dict[str, Any]:
    """``viewers`` players over ``processes`` load processes; figures over ``seconds`` once all have joined."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    ramp = 2.0
    start = time.time() + 2.0  # spawning the load processes
    window = (start + ramp + 2.0, start + ramp + 2.0 + seconds)
    share = viewers // processes
    jobs = [_Job(port, base, str(folder), i * share, share + (viewers % processes if i == processes - 1 else 0),
                 start, ramp, window, one_address, timeout=15.0) for i in range(processes)]
    workers = [ctx.Process(target=_worker, args=(job, results), daemon=True) for job in jobs]
    for w in workers:
        w.start()
    groups = {**pids, "load generator": [w.pid for w in workers if w.pid is not None]}
    time.sleep(max(0.0, window[0] - time.time()))
    before = {name: _ticks(p) for name, p in groups.items()}
    load_start = os.getloadavg()[0]
    upstream = app_media_requests(app_url)
    time.sleep(max(0.0, window[1] - time.time()))
    cpu = {name: (_ticks(p) - before[name]) / CLOCK_TICKS / seconds for name, p in groups.items()}
    load_end = os.getloadavg()[0]
    upstream = app_media_requests(app_url) - upstream
    merged = _Stats()
    for _ in workers:
        part: _Stats = results.get(timeout=60)
        for key in ("delivered", "announced", "part_request", "playlist_request"):
            getattr(merged, key).extend(getattr(part, key))
        merged.requests += part.requests
        merged.part_bytes += part.part_bytes
        merged.behind += part.behind
        for what, n in part.errors.items():
            merged.errors[what] = merged.errors.get(what, 0) + n
    for w in workers:
        w.join(10)

    def ms(values: list[float], p: float) -> float:
        return percentile(values, p) * 1000

    return {
        "viewers": viewers, "requests_per_s": merged.requests / seconds,
        "parts_per_s": len(merged.delivered) / seconds, "app_requests_per_s": upstream / seconds,
        "delivered_p50_ms": ms(merged.delivered, 50), "delivered_p99_ms": ms(merged.delivered, 99),
        "announced_p50_ms": ms(merged.announced, 50), "announced_p99_ms": ms(merged.announced, 99),
        "part_request_p50_ms": ms(merged.part_request, 50), "part_request_p99_ms": ms(merged.part_request, 99),
        "errors": sum(merged.errors.values()), "error_kinds": dict(merged.errors), "behind": merged.behind,
        "megabytes_per_s": merged.part_bytes / seconds / 1e6,
        **{f"cpu {name}": value for name, value in cpu.items()},
        "load_start": load_start, "load_end": load_end,
    }


# --- nginx configuration variants ---------------------------------------------------------------------


def _app_blocking(conf: str) -> str:
    """Blocking reloads (``_HLS_msn`` present) bypass nginx's cache: the app holds every waiter."""
    anchor = "        proxy_cache_lock on;\n"
    assert anchor in conf, "the template changed: update the variant"
    return conf.replace(anchor, anchor + "        proxy_cache_bypass $arg__HLS_msn;\n        proxy_no_cache $arg__HLS_msn;\n")


VARIANTS: dict[str, Callable[[str], str] | None] = {"shipped": None, "app-blocking": _app_blocking}


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


KEYS = [("requests_per_s", "req/s", ".0f"), ("parts_per_s", "parts/s", ".0f"),
        ("app_requests_per_s", "app req/s", ".0f"),
        ("delivered_p50_ms", "avail→deliv p50", ".0f"), ("delivered_p99_ms", "avail→deliv p99", ".0f"),
        ("announced_p50_ms", "avail→listed p50", ".0f"), ("announced_p99_ms", "avail→listed p99", ".0f"),
        ("part_request_p50_ms", "part GET p50", ".1f"), ("part_request_p99_ms", "part GET p99", ".0f"),
        ("errors", "errors", ".0f"), ("behind", "behind", ".0f"), ("megabytes_per_s", "MB/s", ".0f"),
        ("cpu nginx", "nginx CPU", ".2f"), ("cpu app", "app CPU", ".2f"),
        ("cpu load generator", "loadgen CPU", ".2f"), ("cpu pusher", "pusher CPU", ".2f"),
        ("load_start", "load avg start", ".1f"), ("load_end", "load avg end", ".1f")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, nargs="+", default=[1500], help="one or more counts (the knee)")
    parser.add_argument("--seconds", type=float, default=20, help="measured window per run, after the join")
    parser.add_argument("--runs", type=int, default=1, help="runs per count and variant (medians reported)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--variant", choices=list(VARIANTS), nargs="+", default=["shipped"])
    parser.add_argument("--one-address", action="store_true",
                        help="every player from 127.0.0.1 (a lecture hall behind one NAT: nginx's limit_conn applies)")
    args = parser.parse_args(argv)
    cache = Path("/tmp/live-bench-media")
    cache.mkdir(exist_ok=True)
    source = make_source(cache / "lecture-720p-gop2.flv", gop_seconds=2.0)
    rows: list[tuple[str, dict[str, Any]]] = []
    with server(segment_seconds=2.0, ll_hls="true", media_accel_redirect="/_media/",
                trusted_proxies="127.0.0.1") as srv:
        event = srv.create_event("LL viewer load")
        pusher = push(source, srv.publish_url(event))
        fronts: dict[str, tuple[Any, int, Path]] = {}
        try:
            wait_until(lambda: _playing(srv, event), 60, "the event to be live")
            folder = srv.media_folder(event) / "source"
            for name in args.variant:
                fronts[name] = start_fronting_nginx(srv.port, srv.workdir / "media", workers=args.nginx_workers,
                                                    connections=8192, edit=VARIANTS[name])
                wait_until(lambda: _listening(fronts[name][1]), 10, "nginx")
            time.sleep(2)
            base = f"/live/{event['slug']}/source/"
            for viewers in args.viewers:
                for run in range(args.runs):
                    order = args.variant if run % 2 == 0 else list(reversed(args.variant))
                    for name in order:
                        proc, port, _ = fronts[name]
                        pids = {"nginx": [proc.pid], "app": [srv.process.pid], "pusher": [pusher.pid]}
                        result = run_once(port, base, folder, viewers, args.seconds, args.processes, pids,
                                          srv.base_url, args.one_address)
                        rows.append((name, result))
                        print(f"[{name}] {viewers} viewers run {run + 1}: "
                              + ", ".join(f"{label} {result[key]:{fmt}}" for key, label, fmt in KEYS)
                              + (f", errors {result['error_kinds']}" if result["errors"] else ""), flush=True)
        finally:
            for proc, _, work in fronts.values():
                stop(proc)
                shutil.rmtree(work, ignore_errors=True)
            stop(pusher)
    loop = "uvloop" if _has_uvloop() else "asyncio"
    print(f"\n{args.seconds:g} s measured per run, {args.runs} run(s) per count, medians; {args.processes} load processes "
          f"({loop}), nginx {args.nginx_workers} worker(s), {os.cpu_count()} CPUs, "
          f"{'one source address' if args.one_address else 'one source address per player'}; CPU in cores")
    print("| variant | viewers | " + " | ".join(label for _, label, _ in KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for name in args.variant:
        for viewers in args.viewers:
            mine = [r for n, r in rows if n == name and r["viewers"] == viewers]
            print(f"| {name} | {viewers} | " + " | ".join(f"{median([r[k] for r in mine]):{fmt}}" for k, _, fmt in KEYS)
                  + " |")


def _has_uvloop() -> bool:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
