"""Chat fan-out: delivery latency and server CPU with N clients in one event, against python-socketio.

    python -m bench.chat_fanout --clients 200 500 1000 1500 --rate 20 --seconds 15 --batch-ms 0 100 --fanout stock direct
    python -m bench.chat_fanout --clients 1500 --seconds 30 --batch-ms 100 --polling-share 0 0.1

For each ``--batch-ms`` value a fresh ``live-server run`` is started (bench/harness.py: its own
SQLite catalog, loopback only) with that ``chat_batch_ms``; for each client count, two worker
processes (this file with ``--worker``) open the websocket connections (raw Engine.IO v4 frames
over aiohttp, cheap enough that 750 fit in one Python process), then a sender sends
``--rate`` messages per second (logged in as the event owner, over 4 connections) for
``--seconds`` from a third process of its own. Every message carries its send time; each receiving client records
``now - sent`` for each message in a 1 ms histogram, and the distinct ids it saw. After a 3 s
drain the workers report; we print p50/p99/max latency, the share of deliveries that never
arrived, and the server's CPU over the sending window (from /proc).

The reference is ``--fanout stock --batch-ms 0``: python-socketio's own fan-out, one emit per
message, websockets compressed as the clients ask (aiohttp clients, like browsers, offer
permessage-deflate), which BASELINES.md measured at ~75 µs of server CPU per delivery.
``--fanout direct`` is ours (chat/fanout.py): frames built once and written straight to each
client's socket, uncompressed. ``--batch-ms`` is the coalescing window (``chat_batch_ms``).
Rows of the direct fan-out also show their ratios to the stock row with the same clients and window.
``--polling-share 0.1`` keeps that share of the receivers on HTTP long-polling (a GET held open
per client, a POST per pong), as socket.io-client does where a network blocks websockets; their
latency and losses are also shown on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from array import array
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.harness import BIN, CLOCK_TICKS, free_port, process_tree_ticks, server, stop, wait_until

SENDERS = 4
DRAIN_SECONDS = 3.0
RAMP_CONCURRENCY = 50
_PARSED: dict[str, list[tuple[int, float]]] = {}  # per worker process: frame text -> (seq, sent time) pairs


# --- worker: many cheap Socket.IO clients in one process -------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.seen: set[int] = set()


async def _client(session: Any, ws_url: str, auth: dict[str, Any], cookie: str | None, receiver: Receiver | None,
                  latencies: array, ready: asyncio.Event, outbox: asyncio.Queue[str] | None) -> None:
    headers = {"Cookie": f"live_session={cookie}"} if cookie else {}
    async with session.ws_connect(ws_url, headers=headers, autoping=True, max_msg_size=0) as ws:
        await ws.receive_str()  # "0{...}": the Engine.IO open packet
        await ws.send_str("40" + json.dumps(auth))
        first = await ws.receive_str()
        if not first.startswith("40"):
            raise RuntimeError(f"connection refused: {first}")
        ready.set()
        sender_task = None
        if outbox is not None:
            async def pump() -> None:
                while True:
                    await ws.send_str(await outbox.get())
            sender_task = asyncio.create_task(pump())
        try:
            async for msg in ws:
                data = msg.data
                if data == "2":
                    await ws.send_str("3")
                elif receiver is not None and data.startswith('42["messages"'):
                    _take_messages(data, receiver, latencies)
        finally:
            if sender_task is not None:
                sender_task.cancel()


def _take_messages(data: str, receiver: Receiver, latencies: array) -> None:
    now = time.time()
    # every client gets the same frame: parse it once per process (keeps the load generator cheap)
    parsed = _PARSED.get(data)
    if parsed is None:
        parsed = [(int(p[1]), float(p[2])) for p in (item["text"].split() for item in json.loads(data[2:])[1])]
        if len(_PARSED) > 64:
            _PARSED.clear()
        _PARSED[data] = parsed
    for seq, sent_at in parsed:
        receiver.seen.add(seq)
        latencies.append(now - sent_at)


async def _polling_client(session: Any, base_url: str, auth: dict[str, Any], receiver: Receiver, latencies: array,
                          ready: asyncio.Event) -> None:
    """A Socket.IO client that stays on HTTP long-polling (what a network blocking websockets leaves)."""
    url = base_url + "/socket.io/?EIO=4&transport=polling"
    async with session.get(url) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
    url += f"&sid={sid}"
    async with session.post(url, data="40" + json.dumps(auth)) as resp:
        resp.raise_for_status()
    while True:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise RuntimeError(f"poll answered {resp.status}")
            packets = (await resp.text()).split("\x1e")
        for data in packets:
            if data.startswith("40"):
                ready.set()
            elif data == "2":
                async with session.post(url, data="3") as resp:
                    resp.raise_for_status()
            elif data.startswith('42["messages"'):
                _take_messages(data, receiver, latencies)
            elif data.startswith("44"):
                raise RuntimeError(f"connection refused: {data}")


async def _worker(args: argparse.Namespace) -> None:
    import aiohttp

    ws_url = args.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    latencies: array = array("d")
    poll_latencies: array = array("d")
    receivers = [Receiver() for _ in range(args.n)]
    auth = {"event": args.event}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        tasks: list[asyncio.Task[None]] = []
        for start in range(0, args.n, RAMP_CONCURRENCY):
            batch_ready = []
            for i, receiver in enumerate(receivers[start:start + RAMP_CONCURRENCY], start):
                ready = asyncio.Event()
                batch_ready.append(ready)
                if i < args.polling:
                    client = _polling_client(session, args.url, auth, receiver, poll_latencies, ready)
                else:
                    client = _client(session, ws_url, auth, None, receiver, latencies, ready, None)
                tasks.append(asyncio.create_task(client))
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in batch_ready)), 60)
        outboxes: list[asyncio.Queue[str]] = []
        if args.cookie:
            for _ in range(SENDERS):
                ready = asyncio.Event()
                outbox: asyncio.Queue[str] = asyncio.Queue()
                outboxes.append(outbox)
                tasks.append(asyncio.create_task(_client(session, ws_url, auth, args.cookie, None, latencies, ready, outbox)))
                await asyncio.wait_for(ready.wait(), 30)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        sent = 0
        if outboxes:
            t0 = time.monotonic()
            total = int(args.rate * args.seconds)
            for seq in range(total):
                delay = t0 + seq / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                text = f"bench {seq} {time.time():.6f}"
                outboxes[seq % len(outboxes)].put_nowait("42" + json.dumps(["send", {"text": text}]))
                sent += 1
            await asyncio.sleep(0.2)
        else:
            await asyncio.sleep(args.seconds + 0.2)
        print("sent", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # "report" after the drain
        histogram: dict[int, int] = {}
        poll_histogram: dict[int, int] = {}
        for values, hist in ((latencies, histogram), (poll_latencies, poll_histogram)):
            for value in values:
                bucket = int(value * 1000)
                hist[bucket] = hist.get(bucket, 0) + 1
        report = {
            "sent": sent,
            "received": sum(len(r.seen) for r in receivers),
            "received_polling": sum(len(r.seen) for r in receivers[:args.polling]),
            "clients": len(receivers),
            "histogram": histogram,
            "poll_histogram": poll_histogram,
            "max_ms": max([*latencies, *poll_latencies]) * 1000 if latencies or poll_latencies else None,
            "cpu_seconds": time.process_time(),
        }
        print(json.dumps(report), flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- driver ----------------------------------------------------------------------------------


def _login(base_url: str) -> str:
    import http.cookies
    import urllib.request

    request = urllib.request.Request(
        base_url + "/api/v1/auth/login", data=json.dumps({"username": "bench", "password": "bench-password-1"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        jar = http.cookies.SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        return jar["live_session"].value


def _percentile(histogram: dict[int, int], p: float) -> float:
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank = p / 100 * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket + 0.5
    return float(max(histogram))


def run_once(base_url: str, pid: int, event: str, cookie: str, clients: int, rate: float, seconds: float,
             workers: int, others: Sequence[tuple[str, int]] = (), polling_share: float = 0.0) -> dict[str, Any]:
    """``others``: more server processes (url, pid) sharing the rooms through Redis; receivers are
    spread over all servers, the sender stays on the first. ``polling_share`` of the receivers
    stay on HTTP long-polling, spread evenly over the workers."""
    # the sender gets a process of its own: a busy receiving process would delay its sends and be measured
    share = [0] + [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    polling_total = round(clients * polling_share)
    polling = [0] + [polling_total // workers + (1 if i < polling_total % workers else 0) for i in range(workers)]
    procs = []
    urls = [base_url, *(url for url, _ in others)]
    for i, n in enumerate(share):
        url = base_url if i == 0 else urls[(i - 1) % len(urls)]
        cmd = [sys.executable, "-m", "bench.chat_fanout", "--worker", "--url", url, "--event", event,
               "--n", str(n), "--polling", str(polling[i]), "--rate", str(rate), "--seconds", str(seconds)]
        if i == 0:
            cmd += ["--cookie", cookie]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).resolve().parent.parent))
    try:
        for proc in procs:
            line = proc.stdout.readline().strip() if proc.stdout else ""
            if line != "ready":
                raise RuntimeError(f"a client worker failed to connect ({line!r})")
        time.sleep(1.0)  # let the join storm settle
        pids = [pid, *(other_pid for _, other_pid in others)]
        before = sum(process_tree_ticks(p) for p in pids)
        start = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # "sent"
        window = time.monotonic() - start
        cpu = (sum(process_tree_ticks(p) for p in pids) - before) / CLOCK_TICKS
        time.sleep(DRAIN_SECONDS)
        reports = []
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("report\n")
            proc.stdin.flush()
            reports.append(json.loads(proc.stdout.readline()))
    finally:
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    histogram: dict[int, int] = {}
    poll_histogram: dict[int, int] = {}
    for report in reports:  # p50/p99 over every delivery; the polling ones also on their own
        for name, targets in (("histogram", (histogram,)), ("poll_histogram", (histogram, poll_histogram))):
            for bucket, count in report[name].items():
                for hist in targets:
                    hist[int(bucket)] = hist.get(int(bucket), 0) + count
    sent = reports[0]["sent"]
    expected = sent * clients
    received = sum(r["received"] for r in reports)
    received_polling = sum(r["received_polling"] for r in reports)
    return {
        "clients": clients,
        "polling_clients": polling_total,
        "sent": sent,
        "p50_ms": _percentile(histogram, 50),
        "p99_ms": _percentile(histogram, 99),
        "polling_p50_ms": _percentile(poll_histogram, 50),
        "polling_p99_ms": _percentile(poll_histogram, 99),
        "polling_lost_pct": (100.0 * (sent * polling_total - received_polling) / (sent * polling_total)
                             if polling_total and sent else 0.0),
        "max_ms": max((r["max_ms"] or 0) for r in reports),
        "lost_pct": 100.0 * (expected - received) / expected if expected else 0.0,
        "server_cpu_pct": 100.0 * cpu / window,
        "client_cpu_s": sum(r["cpu_seconds"] for r in reports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[200, 500, 1000, 1500])
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second into the event (total)")
    parser.add_argument("--seconds", type=float, default=15.0, help="sending time per run (at most 60 s)")
    parser.add_argument("--batch-ms", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--fanout", nargs="+", choices=["stock", "direct"], default=["direct"],
                        help="stock: python-socketio's own fan-out (chat_direct_fanout=false), the reference")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--polling-share", type=float, nargs="+", default=[0.0],
                        help="share of the clients on HTTP long-polling instead of websocket, e.g. 0 0.1")
    parser.add_argument("--servers", type=int, default=1, choices=[1, 2],
                        help="2: a second server process shares the rooms through Redis on 127.0.0.1:6379 (db 14)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--event", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--polling", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args))
        return
    args.seconds = min(args.seconds, 60.0)
    rows = []
    for fanout, batch_ms in [(f, b) for f in args.fanout for b in args.batch_ms]:
        shared = ({"redis_url": "redis://127.0.0.1:6379/14", "chat_redis_channel": f"chat-bench-{os.getpid()}"}
                  if args.servers == 2 else {})
        with server(chat_batch_ms=batch_ms, chat_rate_messages=1_000_000, chat_rate_bytes=100_000_000,
                    chat_direct_fanout=str(fanout == "direct").lower(),
                    rtmp_enabled="false", log_level="WARNING", **shared) as srv:
            event = srv.create_event("Chat bench")
            cookie = _login(srv.base_url)
            with contextlib.ExitStack() as stack:
                others = [stack.enter_context(_second_process(srv))] if args.servers == 2 else []
                for clients, polling_share in [(c, p) for c in args.clients for p in args.polling_share]:
                    row = run_once(srv.base_url, srv.process.pid, event["slug"], cookie, clients, args.rate,
                                   args.seconds, args.workers, others, polling_share)
                    row["batch_ms"] = batch_ms
                    row["fanout"] = fanout
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    _table(args, rows)


@contextlib.contextmanager
def _second_process(srv: Any) -> Iterator[tuple[str, int]]:
    """Another ``live-server run`` on the same catalog and Redis (a second web worker)."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "live-server"), "run", "--host", "127.0.0.1", "--port", str(port)],
                            env=srv.env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), 30, "the second server")
        yield url, proc.pid
    finally:
        stop(proc)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1):
            return True
    except OSError:
        return False


def _table(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{args.servers} server process(es); {args.rate:g} msg/s for {args.seconds:g} s; server CPU over the sending window (100 % = one core)")
    print("| fan-out | batch | clients (polling) | p50 | p99 | max | lost | polling p50 / p99 / lost | server CPU | p50, p99, CPU vs stock |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    stock = {(r["clients"], r["batch_ms"], r["polling_clients"]): r for r in rows if r["fanout"] == "stock"}
    for row in rows:
        batch = "none" if row["batch_ms"] == 0 else f"{row['batch_ms']} ms"
        ref = stock.get((row["clients"], row["batch_ms"], row["polling_clients"])) if row["fanout"] == "direct" else None
        ratios = (f"{row['p50_ms'] / ref['p50_ms']:.2f}×, {row['p99_ms'] / ref['p99_ms']:.2f}×, "
                  f"{row['server_cpu_pct'] / ref['server_cpu_pct']:.2f}×") if ref else "—"
        polling = (f"{row['polling_p50_ms']:.0f} / {row['polling_p99_ms']:.0f} ms / {row['polling_lost_pct']:.1f} %"
                   if row["polling_clients"] else "—")
        print(f"| {row['fanout']} | {batch} | {row['clients']} ({row['polling_clients']}) | {row['p50_ms']:.0f} ms "
              f"| {row['p99_ms']:.0f} ms | {row['max_ms']:.0f} ms | {row['lost_pct']:.1f} % | {polling} "
              f"| {row['server_cpu_pct']:.0f} % | {ratios} |")


if __name__ == "__main__":
    main()
