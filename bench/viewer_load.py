"""Viewer load: a lecture hall of simulated hls.js players against the app, and against nginx.

One event is live (a 720p 2.5 Mbps lecture pushed over RTMP, copied). N simulated viewers (default
1,500, each with its own User-Agent so the app counts them as distinct) poll the live playlist once
per segment duration and fetch every new segment, for a bounded time, from two load-generator
processes. The same viewers then run against nginx (one worker, sendfile) serving the very same
live folder. Reported per target: requests/s, p50/p99 latency for playlists and segments, errors,
server CPU; and the app/nginx ratios side by side. Everything stays on 127.0.0.1.

With ``--mode fronted`` the viewers go through nginx configured from ``deploy/nginx/`` in front of
the app (access checked and viewers counted by the app, segments sent by nginx via
X-Accel-Redirect): the production layout, and what "viewers per web worker" is measured with.

With ``--logged-in`` the viewers are logged in: each load process first opens ``--sessions`` login
sessions through ``POST /api/v1/auth/login`` (a password check costs ~80 ms of scrypt, so a hall
shares a pool of sessions round-robin), then every poll carries a session cookie, as a student's
browser does. ``--visibility authenticated`` makes the event need that login; ``--no-nginx`` skips
the nginx column (for app-only comparisons).

``--ll-hls``: low-latency players (blocking reloads, every part) through the shipped nginx, see
``bench/ll_viewer_load.py`` (its own options).

Run: ``.venv/bin/python -m bench.viewer_load [--viewers 1500] [--seconds 30] [--runs 3] [--mode fronted]
[--logged-in [--sessions 100]] [--visibility authenticated] [--no-nginx]``
(nginx from Debian: ``apt-get install nginx-light``; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp

from bench.harness import cpu_seconds, free_port, make_source, median, percentile, push, server, stop, wait_until

_SEGMENT = re.compile(r"^(seg_\d+\.ts)$", re.M)


async def _viewer(session: aiohttp.ClientSession, base: str, index: int, segment: float, deadline: float,
                  stats: dict[str, list[Any]], cookie: str | None = None) -> None:
    headers = {"User-Agent": f"bench-viewer/{index}"}
    if cookie is not None:
        headers["Cookie"] = f"live_session={cookie}"
    fetched: set[str] = set()
    await asyncio.sleep(random.uniform(0, segment))  # players do not start in lockstep
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            async with session.get(f"{base}/live.m3u8", headers=headers) as resp:
                text = await resp.text()
                ok = resp.status == 200
            stats["playlist"].append(time.monotonic() - started)
            if not ok:
                stats["errors"].append(f"playlist {resp.status}")
                continue
            names = _SEGMENT.findall(text)
            todo = [n for n in names if n not in fetched] if fetched else names[-1:]
            for name in todo:
                t0 = time.monotonic()
                async with session.get(f"{base}/{name}", headers=headers) as resp:
                    size = len(await resp.read())
                    if resp.status != 200:
                        stats["errors"].append(f"segment {resp.status}")
                        continue
                stats["segment"].append(time.monotonic() - t0)
                stats["bytes"].append(size)
                fetched.add(name)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            stats["errors"].append(type(exc).__name__)
        await asyncio.sleep(max(0.0, segment - (time.monotonic() - started)))


async def login_sessions(origin: str, count: int, username: str, password: str) -> list[str]:
    """``count`` login sessions of one account, opened the way a browser does (the session cookie it gets)."""
    tokens: list[str] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            session.cookie_jar.clear()
            async with session.post(f"{origin}/api/v1/auth/login", json={"username": username, "password": password}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"bench login failed: {resp.status} {await resp.text()}")
                tokens.append(resp.cookies["live_session"].value)
    return tokens


async def _load(base: str, first: int, count: int, segment: float, seconds: float,
                cookies: list[str]) -> dict[str, list[Any]]:
    stats: dict[str, list[Any]] = {"playlist": [], "segment": [], "errors": [], "bytes": []}
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(_viewer(session, base, first + i, segment, deadline, stats,
                                       cookies[i % len(cookies)] if cookies else None) for i in range(count)))
    return stats


def _worker(args: tuple[str, int, int, float, float, list[str]]) -> dict[str, list[Any]]:
    return asyncio.run(_load(*args))



def worker_jobs(base: str, viewers: int, processes: int, poll: float, seconds: float,
                cookies: list[str]) -> list[tuple[str, int, int, float, float, list[str]]]:
    """``_worker`` arguments: the viewers (and their cookies) shared out among the load processes."""
    share = viewers // processes
    per = len(cookies) // processes
    return [(base, i * share, share + (viewers % processes if i == processes - 1 else 0), poll, seconds,
             cookies[i * per:(i + 1) * per] if cookies else [])
            for i in range(processes)]


def merge_results(results: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """The load processes' timings, errors and byte counts as one set."""
    merged: dict[str, list[Any]] = {"playlist": [], "segment": [], "errors": [], "bytes": []}
    for r in results:
        for k in merged:
            merged[k] += r[k]
    return merged

def load(base: str, viewers: int, segment: float, seconds: float, processes: int, server_pid: int,
         cookies: list[str] | None = None) -> dict[str, float]:
    jobs = worker_jobs(base, viewers, processes, segment, seconds, cookies or [])
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pending = pool.map_async(_worker, jobs)
        time.sleep(segment * 2)  # ramp-up
        window = max(1.0, seconds - segment * 3)
        cpu = cpu_seconds(server_pid, window) / window
        results = pending.get(seconds + 60)
    merged = merge_results(results)
    requests = len(merged["playlist"]) + len(merged["segment"])
    return {
        "requests_per_s": requests / seconds,
        "playlist_p50_ms": median(merged["playlist"]) * 1000, "playlist_p99_ms": percentile(merged["playlist"], 99) * 1000,
        "segment_p50_ms": median(merged["segment"]) * 1000, "segment_p99_ms": percentile(merged["segment"], 99) * 1000,
        "errors": len(merged["errors"]), "megabytes_per_s": sum(merged["bytes"]) / seconds / 1e6,
        "server_cpu_cores": cpu,
    }


NGINX_CONF = """
worker_processes 1;
user root;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{port};
        location /live/ {{
            alias {folder}/;
            location ~ \\.m3u8$ {{ add_header Cache-Control "max-age=1"; }}
            location ~ \\.ts$ {{ add_header Cache-Control "max-age=86400"; }}
        }}
    }}
}}
"""


def start_nginx(folder: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="live-bench-nginx-"))
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port, folder=folder))
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")], stdin=subprocess.DEVNULL)
    return proc, port, work


def start_fronting_nginx(app_port: int, media_dir: Path, workers: int = 1, connections: int = 4096,
                         edit: Callable[[str], str] | None = None) -> tuple[subprocess.Popen[bytes], int, Path]:
    """nginx configured from deploy/nginx/live.conf.template in front of the app (X-Accel-Redirect);
    ``edit`` may change the rendered include (a configuration variant under test)."""
    from tests.nginx import render

    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="live-bench-front-"))
    port = free_port()
    conf = render(f"127.0.0.1:{port}", [f"127.0.0.1:{app_port}"], media_dir, work)
    (work / "live.conf").write_text(edit(conf) if edit is not None else conf)
    (work / "nginx.conf").write_text(
        f"worker_processes {workers};\nworker_rlimit_nofile {connections * 2};\nuser root;\ndaemon off;\n"
        f"pid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
        f"events {{ worker_connections {connections}; }}\nhttp {{ access_log off; proxy_temp_path {work}/proxy; "
        f"client_body_temp_path {work}/body; include {work}/live.conf; }}\n")
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")], stdin=subprocess.DEVNULL)
    return proc, port, work


def _playing(srv: Any, event: dict[str, Any]) -> bool:
    """Live with a first playlist on disk (read there: an authenticated event's API answers anonymous callers 404)."""
    try:
        return (srv.media_folder(event) / "source" / "live.m3u8").exists()
    except (FileNotFoundError, IndexError):
        return False


def main() -> None:
    if "--ll-hls" in sys.argv[1:]:  # LL-HLS players through the shipped nginx: bench/ll_viewer_load.py
        from bench.ll_viewer_load import main as ll_main

        return ll_main([a for a in sys.argv[1:] if a != "--ll-hls"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--mode", choices=["direct", "fronted"], default="direct",
                        help="direct: viewers hit the app; fronted: nginx (deploy/ config) in front of the app, "
                             "segments by X-Accel-Redirect — the production layout")
    parser.add_argument("--logged-in", action="store_true",
                        help="viewers log in first and poll with their session cookie (a pool of --sessions sessions)")
    parser.add_argument("--sessions", type=int, default=100, help="login sessions shared by the viewers (--logged-in)")
    parser.add_argument("--visibility", choices=["public", "authenticated"], default="public")
    parser.add_argument("--no-nginx", action="store_true", help="measure the app only")
    args = parser.parse_args()
    if args.visibility == "authenticated" and not args.logged_in:
        parser.error("an authenticated event needs --logged-in viewers")
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / f"lecture-720p-gop{args.segment:g}.flv", gop_seconds=args.segment)
    results: dict[str, list[dict[str, float]]] = {"app": [], "nginx": []}
    viewers_seen: list[int] = []
    extra = {"media_accel_redirect": "/_media/", "trusted_proxies": "127.0.0.1"} if args.mode == "fronted" else {}
    with server(segment_seconds=args.segment, **extra) as srv:
        event = srv.create_event("Viewer load", "--visibility", args.visibility)
        cookies: list[str] = []
        if args.logged_in:
            srv.cli("users", "create", "--username", "student", "--password", "student-password-1")
            cookies = asyncio.run(login_sessions(srv.base_url, max(args.processes, args.sessions),
                                                 "student", "student-password-1"))
        pusher = push(source, srv.publish_url(event))
        try:
            wait_until(lambda: _playing(srv, event), 60, "the event to be live")
            folder = srv.media_folder(event) / "source"
            nginx, nginx_port, nginx_work = start_nginx(folder) if not args.no_nginx else (None, 0, None)
            front = start_fronting_nginx(srv.port, srv.workdir / "media") if args.mode == "fronted" else None
            app_base = (f"http://127.0.0.1:{front[1]}" if front else srv.base_url) + f"/live/{event['slug']}/source"
            try:
                time.sleep(1)
                for _ in range(args.runs):
                    results["app"].append(load(app_base, args.viewers,
                                               args.segment, args.seconds, args.processes, srv.process.pid, cookies))
                    import json
                    viewers_seen.append(json.loads(srv.get(f"/api/v1/events/{event['slug']}"))["viewers"]
                                        if args.visibility == "public" else -1)
                    if nginx is None:
                        continue
                    results["nginx"].append(load(f"http://127.0.0.1:{nginx_port}/live", args.viewers,
                                                 args.segment, args.seconds, args.processes, nginx.pid))
            finally:
                if nginx is not None and nginx_work is not None:
                    stop(nginx)
                    shutil.rmtree(nginx_work, ignore_errors=True)
                if front is not None:
                    stop(front[0])
                    shutil.rmtree(front[2], ignore_errors=True)
        finally:
            stop(pusher)
    print(f"mode {args.mode} ('app' is {'nginx + app, X-Accel' if args.mode == 'fronted' else 'the app alone'}; "
          f"'server_cpu_cores' of the app column is the app process only)")
    print(f"{args.viewers} viewers, {args.seconds:g} s per run, {args.runs} runs per target, segment {args.segment:g} s, "
          f"{args.processes} load processes on the same 2 cores; app counted viewers: {viewers_seen}")
    print(f"viewers {'logged in (' + str(len(cookies)) + ' sessions)' if args.logged_in else 'anonymous'}, "
          f"event {args.visibility}")
    keys = ["requests_per_s", "playlist_p50_ms", "playlist_p99_ms", "segment_p50_ms", "segment_p99_ms",
            "errors", "megabytes_per_s", "server_cpu_cores"]
    print(f"{'metric':18s} {'app':>10s} {'nginx':>10s} {'app/nginx':>10s}")
    for key in keys:
        app_v = median([r[key] for r in results["app"]])
        ngx_v = median([r[key] for r in results["nginx"]]) if results["nginx"] else 0.0
        ratio = app_v / ngx_v if ngx_v else float("nan")
        print(f"{key:18s} {app_v:10.1f} {ngx_v:10.1f} {ratio:10.2f}")


if __name__ == "__main__":
    main()
