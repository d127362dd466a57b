"""Audience collection on vs off under a lecture hall: extra server CPU and database writes per minute.

``python -m bench.audience_cpu --viewers 1500 --seconds 60 --runs 3 [--poll-seconds 2]``

Two ``live-server run`` processes side by side, identical but for ``audience_enabled`` (on / off),
each on its own PostgreSQL database made for the run on 127.0.0.1 (``--pg-admin``; dropped after)
and each with the prepared 720p lecture pushed over RTMP (``bench.harness``). Runs alternate
between the two: ``--viewers`` simulated players (``bench.viewer_load``'s client, distinct
User-Agents) poll the live media playlist every ``--poll-seconds`` and fetch each new segment for
``--seconds`` (the order flips every run: on, off, off, on, on, off …). Per run: CPU-seconds of the server process alone (``/proc/<pid>/stat``, not its
packager ffmpeg) over the measured window, requests served, the load average, and the writes the
run caused in the server's database (``pg_stat_database``: commits, rows inserted + updated +
deleted), read after the last flush has been written and PostgreSQL's statistics have settled.
CPU-seconds of the server are more robust than wall time on a shared machine; the script reports
both (CPU per 1,000 requests too, since a starved run serves fewer). Everything stays on 127.0.0.1;
each loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, text

from bench.harness import CLOCK_TICKS, make_source, median, percentile, push, server, stop, wait_until
from bench.viewer_load import _playing, _worker, merge_results, worker_jobs

STATS = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")


def process_ticks(pid: int) -> int:
    """user + system clock ticks of one process (the server; its ffmpeg children are not ours to count)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@contextlib.contextmanager
def database(admin_url: str, label: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of its own for one server, so its statistics count that server's writes only."""
    name = f"live_bench_audience_{label}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name, name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def db_stats(admin_url: str, name: str) -> dict[str, int]:
    """The database's cumulative counters, from a fresh connection (no cached statistics snapshot)."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            row = conn.execute(text(f"SELECT {', '.join(STATS)} FROM pg_stat_database WHERE datname = :n"),
                               {"n": name}).one()
    finally:
        engine.dispose()
    return dict(zip(STATS, (int(v) for v in row)))


def one_run(base: str, pid: int, viewers: int, poll: float, seconds: float, processes: int) -> dict[str, float]:
    """Drive the hall for ``seconds``; the CPU window leaves out the ramp-up (two polls) and the tail."""
    jobs = worker_jobs(base, viewers, processes, poll, seconds, [])
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pending = pool.map_async(_worker, jobs)
        time.sleep(poll * 2)
        window = max(1.0, seconds - poll * 3)
        load_before = os.getloadavg()[0]
        ticks, wall = process_ticks(pid), time.monotonic()
        time.sleep(window)
        ticks, wall = process_ticks(pid) - ticks, time.monotonic() - wall
        load_after = os.getloadavg()[0]
        results = pending.get(seconds + 60)
    merged = merge_results(results)
    requests = len(merged["playlist"]) + len(merged["segment"])
    cpu = ticks / CLOCK_TICKS
    return {
        "server_cpu_s_per_s": cpu / wall, "requests_per_s": requests / seconds,
        "cpu_ms_per_1000_requests": cpu / wall / (requests / seconds) * 1e6 if requests else float("nan"),
        "playlist_p50_ms": median(merged["playlist"]) * 1000, "playlist_p99_ms": percentile(merged["playlist"], 99) * 1000,
        "errors": len(merged["errors"]), "load_avg": (load_before + load_after) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3, help="runs per side (on and off alternate)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--size", default="1280x720", help="picture of the pushed lecture")
    parser.add_argument("--kbps", type=int, default=2500, help="video bitrate of the pushed lecture")
    parser.add_argument("--poll-seconds", type=float, default=0.0, help="playlist poll period (default: the segment)")
    parser.add_argument("--flush-seconds", type=float, default=15.0, help="audience_flush_seconds of both servers")
    parser.add_argument("--pg-admin", default=os.environ.get("LIVE_TEST_POSTGRES",
                                                             "postgresql+psycopg://root@127.0.0.1:5432/test"))
    args = parser.parse_args()
    if not (1 <= args.runs <= 20 and 5 <= args.seconds <= 600 and 1 <= args.viewers <= 10_000):
        parser.error("runs 1-20, seconds 5-600, viewers 1-10000")
    poll = args.poll_seconds or args.segment
    settle = args.flush_seconds + 12  # the last flush, then PostgreSQL's idle stats report (at most 10 s)
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    name = (f"lecture-720p-gop{args.segment:g}.flv" if (args.size, args.kbps) == ("1280x720", 2500)
            else f"lecture-{args.size}-{args.kbps}k-gop{args.segment:g}.flv")  # the 720p file is bench.viewer_load's
    source = make_source(workdir / name, size=args.size, kbps=args.kbps, gop_seconds=args.segment)
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with contextlib.ExitStack() as stack:
        sides: dict[str, tuple[Any, str, str]] = {}
        events: dict[str, dict[str, Any]] = {}
        pushers = []
        for label, enabled in (("on", True), ("off", False)):
            url, name = stack.enter_context(database(args.pg_admin, label))
            srv = stack.enter_context(server(segment_seconds=args.segment, database_url=url, audience_enabled=enabled,
                                             audience_flush_seconds=args.flush_seconds))
            event = events[label] = srv.create_event(f"Audience {label}")
            pushers.append(push(source, srv.publish_url(event)))
            stack.callback(stop, pushers[-1])
            sides[label] = (srv, f"{srv.base_url}/live/{event['slug']}/source", name)
        for label, (srv, _, _) in sides.items():
            wait_until(lambda: _playing(srv, events[label]), 60, "the event to be live")
        time.sleep(settle)  # start-up writes settled in the statistics
        for run in range(args.runs):
            # on, off, then off, on …: a trend in the machine's load (other work starting or ending) does not
            # always fall on the same side
            for label in (("on", "off") if run % 2 == 0 else ("off", "on")):
                srv, base, name = sides[label]
                before = db_stats(args.pg_admin, name)
                started = time.monotonic()
                figures = one_run(base, srv.process.pid, args.viewers, poll, args.seconds, args.processes)
                time.sleep(max(0.0, settle - (time.monotonic() - started - args.seconds)))
                after = db_stats(args.pg_admin, name)
                minutes = args.seconds / 60
                figures["commits_per_min"] = (after["xact_commit"] - before["xact_commit"]) / minutes
                figures["rows_written_per_min"] = sum(after[k] - before[k] for k in STATS[1:]) / minutes
                results[label].append(figures)
                print(f"run {run + 1} {label:3s}: " + ", ".join(f"{k}={v:,.2f}" for k, v in figures.items()), flush=True)
    print(f"\n{args.size} {args.kbps} kb/s lecture; {args.viewers} viewers polling every {poll:g} s, {args.seconds:g} s per run, {args.runs} runs per side "
          f"(on/off alternating), audience_flush_seconds {args.flush_seconds:g}, {os.cpu_count()} cores, "
          f"{args.processes} load processes on the same machine")
    print(f"{'metric (median)':26s} {'on':>10s} {'off':>10s} {'on/off':>8s}")
    for key in results["on"][0]:
        on, off = median([r[key] for r in results["on"]]), median([r[key] for r in results["off"]])
        ratio = f"{on / off:8.3f}" if off else "       -"
        print(f"{key:26s} {on:10.3f} {off:10.3f} {ratio}")
    pairs = [a["server_cpu_s_per_s"] / b["server_cpu_s_per_s"] for a, b in zip(results["on"], results["off"])]
    per_request = [a["cpu_ms_per_1000_requests"] / b["cpu_ms_per_1000_requests"] for a, b in zip(results["on"], results["off"])]
    print("on/off CPU per run pair: " + ", ".join(f"{p:.3f}" for p in pairs)
          + "; per 1,000 requests: " + ", ".join(f"{p:.3f}" for p in per_request))


if __name__ == "__main__":
    main()
