"""Slowloris against `live-server run`'s listener (live_server/http_server.py) with default settings:
N connections each send a request line and then one header line a second, never finishing the head,
while a normal client asks /healthz every 0.5 s. Prints when the attackers were closed and what the
normal client saw.  Usage: PYTHONPATH=. .venv/bin/python -m bench.http_slowloris [N=300]"""
import asyncio
import sys
import tempfile
import time
from pathlib import Path
import aiohttp
from live_server import migrations
from live_server.app import create_app
from live_server.http_server import serve
from live_server.http_server import CONNECTION_GUARD
from live_server.settings import load_settings

async def main(count: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp/'live.db'}"
    migrations.upgrade(url)
    s = load_settings(environ={}, data_dir=tmp, media_dir=tmp/"media", rtmp_enabled=False, port=0, database_url=url)
    app = create_app(s)
    fut = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, "127.0.0.1", 0, app[CONNECTION_GUARD], fut.set_result, handle_signals=False))
    site = await fut
    conns = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(count)]
    t0 = time.monotonic()
    for _, w in conns: w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    closed = {}
    async def drip(i, r, w):
        while True:
            try:
                w.write(b"X: y\r\n"); await w.drain()
                if await asyncio.wait_for(r.read(100), 1.0) == b"": break
            except asyncio.TimeoutError: continue
            except OSError: break
        closed[i] = time.monotonic() - t0
    drips = [asyncio.create_task(drip(i, r, w)) for i, (r, w) in enumerate(conns)]
    lat = []
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - t0 < 9:
            a = time.monotonic()
            async with http.get(f"http://127.0.0.1:{site.port}/healthz") as resp:
                assert resp.status == 200
            lat.append(time.monotonic() - a); await asyncio.sleep(0.5)
    await asyncio.wait_for(asyncio.gather(*drips), 30)
    v = sorted(closed.values())
    print(f"closed {len(v)}/{count}; first {v[0]:.2f}s, median {v[len(v)//2]:.2f}s, last {v[-1]:.2f}s; healthz during attack: {len(lat)} requests, max {max(lat)*1000:.0f} ms, all 200; guard {app[CONNECTION_GUARD].closed}")
    task.cancel(); await asyncio.gather(task, return_exceptions=True)
if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
