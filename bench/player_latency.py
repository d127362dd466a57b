"""Viewer latency: how far behind the pusher hls.js plays, in Chromium, on our event page and on bare ffmpeg HLS.

Both sides get the same stream: the prepared 720p30 2.5 Mbps lecture (GOP = 2 s, ``make_source``)
pushed at real-time speed with ``-c copy``.

* **ours**: ``live-server run`` (defaults: 2 s segments), an event created by the CLI, the pusher on
  its RTMP URL, and Chromium on the event page (``/events/<slug>``) with its own player script.
* **bare ffmpeg** (reference): the same file read by ``ffmpeg -re -c copy -f hls`` (``-hls_time 2``,
  same window, ``program_date_time``) into a folder served by aiohttp's ``web.static``, played by
  hls.js on a bare page with the event page's hls.js configuration.

Latency is read from the player itself, once a second after a warm-up: ``Date.now() -
hls.playingDate`` (the wall clock of the frame on screen, from EXT-X-PROGRAM-DATE-TIME, which both
write from the time media arrived) and, alongside, ``hls.latency`` (distance to the playlist's live
edge). The benchmark does not change the page: an init script wraps the ``Hls`` constructor to keep
a reference to the player the page creates. The TARGETDURATION of the playing rendition is read every
second too (all values seen are reported). BASELINES.md: latency ≈ 3 × TARGETDURATION + the age of
the newest segment. Runs alternate between the two sides; medians of per-run medians.

* **ours, LL-HLS** (``--ll-hls``): a second ``live-server run`` with ``ll_hls = true`` (fMP4 parts of
  ``ll_hls_part_target_seconds``, blocking reloads; recording off, as when the figures below were
  measured, before recordings took fMP4), the same event page (hls.js ``lowLatencyMode``).

Run: ``.venv/bin/python -m bench.player_latency --seconds 30 --runs 3 [--ll-hls]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from aiohttp import web

from bench.harness import ROOT, ffmpeg_path, free_port, make_source, median, push, server, stop, wait_until
from tests.browser import CHROMIUM_ARGS

HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"

# Keeps the page's player reachable without changing the page: hls.min.js assigns window.Hls once.
CAPTURE_HLS = """
(() => {
  let wrapped;
  window.__stalls = 0;  // "waiting": playback stopped for want of data (media events reach document's capture phase)
  document.addEventListener("waiting", () => { window.__stalls += 1; }, true);
  Object.defineProperty(window, "Hls", {
    configurable: true,
    get() { return wrapped; },
    set(original) {
      wrapped = class extends original {
        constructor(config) { super(config); (window.__players = window.__players || []).push(this); }
      };
    },
  });
})();
"""

SAMPLE = """() => {
  const hls = (window.__players || [])[0];
  const video = document.querySelector("video");
  if (!hls || !video || video.readyState < 2 || video.paused) return null;
  const date = hls.playingDate, level = hls.levels[hls.currentLevel];
  return {wall: date ? Date.now() - date.getTime() : null, latency: hls.latency, target: hls.targetLatency,
          url: level ? (level.uri || [].concat(level.url)[0]) : null};
}"""

BARE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bare ffmpeg HLS</title>
<script src="/hls.min.js"></script></head><body><video id="player" muted playsinline></video>
<script>
  const hls = new Hls({ liveSyncDurationCount: 3 });  // the event page's configuration (web/static/player.js)
  hls.loadSource("/live.m3u8");
  hls.attachMedia(document.getElementById("player"));
  hls.on(Hls.Events.MANIFEST_PARSED, () => document.getElementById("player").play());
</script></body></html>"""

TARGET = re.compile(r"^#EXT-X-TARGETDURATION:(\d+)", re.M)
EXTINF = re.compile(r"^#EXTINF:([0-9.]+)", re.M)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise SystemExit("Chromium is not installed (make test installs Debian's chromium)")
    return path


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


@contextlib.contextmanager
def player(browser: Any, page_url: str, *init_scripts: str) -> Iterator[Any]:
    """A fresh browser context on ``page_url`` whose hls.js player is reachable (``CAPTURE_HLS``), once it plays."""
    context = browser.new_context()
    for script in (CAPTURE_HLS, *init_scripts):
        context.add_init_script(script)
    page = context.new_page()
    try:
        page.goto(page_url)
        page.wait_for_function(SAMPLE, timeout=60_000)
        yield page
    finally:
        context.close()


def rendition_facts(url: str) -> tuple[int | None, float]:
    """(TARGETDURATION, longest EXTINF) of the media playlist at ``url``."""
    playlist = fetch(url)
    found = TARGET.search(playlist)
    return (int(found.group(1)) if found else None), max([0.0, *(float(d) for d in EXTINF.findall(playlist))])


def measure(browser: Any, page_url: str, seconds: float, warmup: float, join_after: float) -> dict[str, Any]:
    """Join once the stream has run ``join_after`` s (a student arriving mid-lecture: the playlist
    is full), let hls.js settle, then sample its latency once a second."""
    time.sleep(join_after)
    with player(browser, page_url) as page:
        time.sleep(warmup)
        wall: list[float] = []
        edge: list[float] = []
        targets: set[int] = set()
        longest = 0.0
        target_latency = 0.0
        stalls_before = page.evaluate("window.__stalls")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sample = page.evaluate(SAMPLE)
            if sample:
                if sample["wall"] is not None:
                    wall.append(sample["wall"] / 1000)
                if sample["latency"]:
                    edge.append(sample["latency"])
                target_latency = sample["target"] or target_latency
                if sample["url"]:
                    target, extinf = rendition_facts(sample["url"])
                    if target is not None:
                        targets.add(target)
                    longest = max(longest, extinf)
            time.sleep(1.0)
        return {"wall": median(wall), "edge": median(edge), "target_latency": target_latency,
                "targets": sorted(targets), "longest_extinf": longest, "samples": len(wall),
                "stalls": page.evaluate("window.__stalls") - stalls_before}


def run_ours(browser: Any, srv: Any, source: Path, seconds: float, warmup: float, join_after: float,
             run: int) -> dict[str, Any]:
    event = srv.create_event(f"Latency run {run}")
    pusher = push(source, srv.publish_url(event))
    try:
        wait_until(lambda: srv.event_state(event) == "live", 60, "the event to go live")
        return measure(browser, f"{srv.base_url}/events/{event['slug']}", seconds, warmup, join_after)
    finally:
        stop(pusher)


def _serve_static(folder: Path, port: int, ready: threading.Event, done: threading.Event) -> None:
    """aiohttp ``web.static`` for the folder; playlists must not be cached by the browser."""

    @web.middleware
    async def no_cache(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path.endswith(".m3u8"):
            response.headers["Cache-Control"] = "no-cache"
        return response

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=BARE_PAGE, content_type="text/html")

    async def hls_js(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    async def main() -> None:
        app = web.Application(middlewares=[no_cache])
        app.router.add_get("/", page)
        app.router.add_get("/hls.min.js", hls_js)
        app.router.add_static("/", folder)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.2)
        await runner.cleanup()

    asyncio.run(main())


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[int]:
    """Serve ``folder`` (and the bare hls.js page at ``/``) on a free loopback port, in a thread; yields the port."""
    port = free_port()
    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=_serve_static, args=(folder, port, ready, done), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port
    finally:
        done.set()
        thread.join(10)


def bare_hls_args(folder: Path, segment: float, window: int) -> list[str]:
    """ffmpeg's HLS muxer output options of the bare reference (playlist ``live.m3u8`` in ``folder``)."""
    return ["-f", "hls", "-hls_time", f"{segment:g}", "-hls_list_size", str(window),
            "-hls_flags", "delete_segments+program_date_time+independent_segments",
            "-hls_segment_filename", str(folder / "seg_%05d.ts"), str(folder / "live.m3u8")]


def run_bare(browser: Any, source: Path, seconds: float, warmup: float, join_after: float, segment: float,
             window: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bare-hls-"))
    try:
        with static_site(folder) as port:
            packager = subprocess.Popen(
                [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(source),
                 "-c", "copy", *bare_hls_args(folder, segment, window)],
                stdin=subprocess.DEVNULL)
            try:
                wait_until(lambda: (folder / "live.m3u8").exists(), 30, "bare ffmpeg's first segment")
                return measure(browser, f"http://127.0.0.1:{port}/", seconds, warmup, join_after)
            finally:
                stop(packager)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(name: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    wall = [r["wall"] for r in runs]
    edge = [r["edge"] for r in runs]
    targets = sorted({t for r in runs for t in r["targets"]})
    print(f"{name:12s} wall − playingDate: median {median(wall):5.2f} s (runs: {', '.join(f'{v:.2f}' for v in wall)}); "
          f"hls.latency {median(edge):5.2f} s; hls.targetLatency {median([r['target_latency'] for r in runs]):.1f} s; "
          f"TARGETDURATION seen {targets} (longest EXTINF {max(r['longest_extinf'] for r in runs):.3f} s); "
          f"stalls while sampling {[r['stalls'] for r in runs]}; samples/run {[r['samples'] for r in runs]}")
    return {"wall": median(wall), "edge": median(edge)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="sampling time per run")
    parser.add_argument("--warmup", type=float, default=8, help="seconds of playback before sampling")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--segment", type=float, default=2.0, help="segment length (both sides)")
    parser.add_argument("--window", type=int, default=6, help="live playlist length in segments (both sides)")
    parser.add_argument("--join-after", type=float, default=None,
                        help="seconds of stream before the viewer opens the page (default: window × segment)")
    parser.add_argument("--ll-hls", action="store_true", help="also measure our server with ll_hls on")
    parser.add_argument("--json", action="store_true", help="print the per-run results as JSON too")
    args = parser.parse_args()
    join_after = args.window * args.segment if args.join_after is None else args.join_after

    from playwright.sync_api import sync_playwright

    source = make_source(Path(tempfile.gettempdir()) / f"player-latency-720p30-gop{args.segment:g}.flv", gop_seconds=args.segment)
    ours: list[dict[str, Any]] = []
    ours_ll: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    common = {"segment_seconds": args.segment, "live_window_segments": args.window}
    with contextlib.ExitStack() as stack, sync_playwright() as pw:
        srv = stack.enter_context(server(**common))
        ll_srv = stack.enter_context(server(**common, ll_hls="true", recording_enabled="false")) if args.ll_hls else None
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            for run in range(args.runs):
                ours.append(run_ours(browser, srv, source, args.seconds, args.warmup, join_after, run))
                print(f"run {run + 1} ours: {ours[-1]}", flush=True)
                if ll_srv is not None:
                    ours_ll.append(run_ours(browser, ll_srv, source, args.seconds, args.warmup, join_after, run))
                    print(f"run {run + 1} ours LL-HLS: {ours_ll[-1]}", flush=True)
                bare.append(run_bare(browser, source, args.seconds, args.warmup, join_after, args.segment, args.window))
                print(f"run {run + 1} bare: {bare[-1]}", flush=True)
        finally:
            browser.close()
    a = report("ours", ours)
    if ours_ll:
        report("ours LL-HLS", ours_ll)
    b = report("bare ffmpeg", bare)
    print(f"ratio ours / bare: {a['wall'] / b['wall']:.2f} (wall clock), {a['edge'] / b['edge']:.2f} (hls.latency)")
    if args.json:
        print(json.dumps({"ours": ours, "ours_ll": ours_ll, "bare": bare}))


if __name__ == "__main__":
    main()
