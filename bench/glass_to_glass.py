"""Glass-to-glass latency: a live encoder burns its wall clock into the picture, hls.js plays it in Chromium.

One invocation measures, for each encoder keyframe interval (``--gop 2 10``), three sides in turn,
run after run (alternating, so the machine's load falls on all of them alike):

* **plain**: ``live-server run`` with its defaults (plain HLS, 2 s segments, DVR), the event page;
* **ll**: a second ``live-server run`` with ``ll_hls = true`` (fMP4 parts, blocking reloads), the
  event page (hls.js ``lowLatencyMode``);
* **bare**: the same encoder writing HLS itself (``ffmpeg -f hls -hls_time 2``, program date time),
  served by aiohttp ``web.static``, played by hls.js on a bare page with the event page's plain
  configuration (``bench.player_latency``'s reference).

The encoder is what a lecturer's OBS does by default, in ffmpeg: ``testsrc2`` + a sine tone read at
real-time pace, libx264 ``veryfast`` (no tune: lookahead and B-frames on, as OBS), CBR at
``--kbps``, AAC 128 kb/s, the keyframe interval the only setting changed (``-g``); ours get it over
RTMP. Before encoding, ``drawtext`` burns the UTC wall clock of each frame (``HH:MM:SS.mmm``) in its
top-left corner. ``--size`` defaults to 640x360: a live 720p30 x264 encode, Chromium decoding it and
the servers do not keep real time on 2 shared cores; 640x360 does.

The page is not changed: init scripts keep a reference to the page's hls.js (``bench.player_latency``)
and, every 100 ms of the page's own clock, note ``Date.now()``, ``Date.now() - hls.playingDate`` (the
issue's page-side figure: the frame on screen against its EXT-X-PROGRAM-DATE-TIME, which our server
stamps when media *arrives*, so it leaves out the encoder's own delay) and copy the burned-in clock's
pixels of the frame on screen into a canvas. The bench reads those digits back (templates rendered
by the same ``drawtext`` on black; each digit cell matched by Hamming distance), which gives the true
glass-to-glass: ``Date.now()`` minus the wall clock the frame was made at, encoder, RTMP, packaging,
HTTP and the player's buffer included. Both are reported per side and keyframe interval: p50 and p95
over every sample of every run, stalls (``waiting`` events while sampling) and samples where the
video was not playing, and the ratio of p50s to bare ffmpeg.

The viewer joins once the stream has run ``max(window × segment, 4 × keyframe interval)`` seconds
(a student arriving mid-lecture: plain players can hold three full segments back), lets the player
settle ``--warmup`` s, then samples for ``--seconds``.

Run (the lead's measurement, ~30 min): ``.venv/bin/python -m bench.glass_to_glass --gop 2 10 --seconds 60 --runs 3``
Smoke: ``.venv/bin/python -m bench.glass_to_glass --gop 2 10 --seconds 10 --runs 1 --warmup 4``
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.harness import ffmpeg_path, median, percentile, server, stop, wait_until
from bench.player_latency import SAMPLE, bare_hls_args, chromium, player, rendition_facts, static_site
from tests.browser import CHROMIUM_ARGS

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"  # Debian fonts-dejavu-core
SIDES = ("plain", "ll", "bare")
SAMPLE_PERIOD_MS = 100

# Every SAMPLE_PERIOD_MS of the page's clock: the page's clock, its player's playingDate and the pixels of
# the burned-in clock of the frame on screen (luma, base64), kept until the bench takes them.
SAMPLER = """
(() => {
  window.__g2g = [];
  window.__g2gStart = (crop, period) => {
    const canvas = document.createElement("canvas");
    canvas.width = crop.w; canvas.height = crop.h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    window.__g2gStalls = 0;
    document.addEventListener("waiting", () => { window.__g2gStalls += 1; }, true);
    setInterval(() => {
      const now = Date.now();
      const hls = (window.__players || [])[0];
      const video = document.querySelector("video");
      if (!hls || !video || video.readyState < 2 || video.paused) { window.__g2g.push({ now, playing: false }); return; }
      const date = hls.playingDate;
      let luma = null;
      if (video.videoWidth === crop.vw && video.videoHeight === crop.vh) {
        ctx.drawImage(video, crop.x, crop.y, crop.w, crop.h, 0, 0, crop.w, crop.h);
        const rgba = ctx.getImageData(0, 0, crop.w, crop.h).data;
        let bytes = "";
        for (let i = 0; i < rgba.length; i += 4) {
          bytes += String.fromCharCode((77 * rgba[i] + 150 * rgba[i + 1] + 29 * rgba[i + 2]) >> 8);
        }
        luma = btoa(bytes);
      }
      window.__g2g.push({ now, playing: true, wall: date ? now - date.getTime() : null, luma });
    }, period);
  };
})();
"""


def drawtext(size: str, text: str) -> str:
    """The ``drawtext`` filter of the burned-in clock (the encoder's and the templates' alike)."""
    height = int(size.split("x")[1])
    font = f"fontfile={FONT}" if Path(FONT).exists() else "font=monospace"
    return (f"drawtext={font}:text='{text}':x=8:y=8:fontsize={max(16, height // 11)}:fontcolor=white"
            ":box=1:boxcolor=black:boxborderw=6")


CLOCK_TEXT = r"%{gmtime\:%H\\\:%M\\\:%S.%3N}"  # UTC, milliseconds (drawtext's strftime takes %3N)


def template_text(digit: int) -> str:
    d = str(digit)
    return rf"{d * 2}\\\:{d * 2}\\\:{d * 2}.{d * 3}"


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    w: int
    h: int
    vw: int
    vh: int


class ClockReader:
    """Reads ``HH:MM:SS.mmm`` back from the pixels of the burned-in clock.

    Templates: the same ``drawtext`` with every digit set to 0, 1, … 9, rendered on black (gray
    frames from ffmpeg). The columns where the templates differ are the 9 digit cells; a cell of a
    sample is thresholded at the middle of the crop's range and matched to the nearest template by
    Hamming distance. A match farther than ``max_miss`` of the cell's pixels is no reading."""

    def __init__(self, size: str, max_miss: float = 0.2) -> None:
        width, height = (int(v) for v in size.split("x"))
        templates = [self._render(size, template_text(d), width * height) for d in range(10)]
        ink = [i for t in templates for i, v in enumerate(t) if v > 64]
        xs = sorted({i % width for i in ink})
        ys = sorted({i // width for i in ink})
        x0, y0 = max(0, xs[0] - 2), max(0, ys[0] - 2)
        x1, y1 = min(width, xs[-1] + 3), min(height, ys[-1] + 3)
        self.crop = Crop(x0, y0, x1 - x0, y1 - y0, width, height)
        crops = [self._cut(t, width) for t in templates]
        differs = [any(max(c[y * self.crop.w + x] for c in crops) - min(c[y * self.crop.w + x] for c in crops) > 64
                       for y in range(self.crop.h)) for x in range(self.crop.w)]
        self.cells: list[tuple[int, int]] = []
        start = None
        for x, flag in enumerate([*differs, False]):
            if flag and start is None:
                start = x
            elif not flag and start is not None:
                self.cells.append((start, x))
                start = None
        if len(self.cells) != 9:
            raise RuntimeError(f"the clock's digit cells were not found ({len(self.cells)} column runs, not 9)")
        self.max_miss = max_miss
        self.templates = [[self._bits(c, cell) for c in crops] for cell in self.cells]

    @staticmethod
    def _render(size: str, text: str, length: int) -> bytes:
        data = subprocess.run(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"color=black:size={size}",
             "-frames:v", "1", "-vf", drawtext(size, text), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            check=True, capture_output=True).stdout
        if len(data) != length:
            raise RuntimeError("ffmpeg rendered no clock template")
        return data

    def _cut(self, frame: bytes, width: int) -> bytes:
        c = self.crop
        return b"".join(frame[(c.y + row) * width + c.x:(c.y + row) * width + c.x + c.w] for row in range(c.h))

    def _bits(self, luma: bytes, cell: tuple[int, int], threshold: int = 128) -> int:
        bits = 0
        for row in range(self.crop.h):
            base = row * self.crop.w
            for value in luma[base + cell[0]:base + cell[1]]:
                bits = (bits << 1) | (value > threshold)
        return bits

    def read(self, luma: bytes) -> float | None:
        """Seconds since midnight UTC the frame was made at, or None if a digit is not recognised."""
        if len(luma) != self.crop.w * self.crop.h:
            return None
        threshold = (min(luma) + max(luma)) // 2
        digits = []
        for cell, templates in zip(self.cells, self.templates):
            bits = self._bits(luma, cell, threshold)
            misses = [(bits ^ t).bit_count() for t in templates]
            best = min(range(10), key=misses.__getitem__)
            if misses[best] > self.max_miss * (cell[1] - cell[0]) * self.crop.h:
                return None
            digits.append(best)
        hh, mm, ss = digits[0] * 10 + digits[1], digits[2] * 10 + digits[3], digits[4] * 10 + digits[5]
        if hh > 23 or mm > 59 or ss > 59:
            return None
        return hh * 3600 + mm * 60 + ss + (digits[6] * 100 + digits[7] * 10 + digits[8]) / 1000


def encoder_args(size: str, fps: int, kbps: int, gop_seconds: float) -> list[str]:
    """A live encoder with OBS's defaults (x264 veryfast, CBR, no tune), its wall clock burned in."""
    return [ffmpeg_path(), "-hide_banner", "-loglevel", "error",
            # a camera: real time from the first frame (no -re initial burst)
            "-re", "-readrate_initial_burst", "0", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
            "-re", "-readrate_initial_burst", "0", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-vf", drawtext(size, CLOCK_TEXT), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k", "-g", str(round(fps * gop_seconds)),
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]


def measure(browser: Any, page_url: str, reader: ClockReader, seconds: float, warmup: float) -> dict[str, Any]:
    """Open the page, let hls.js settle ``warmup`` s, then take the page's 10 Hz samples for ``seconds``."""
    with player(browser, page_url, SAMPLER) as page:
        time.sleep(warmup)
        c = reader.crop
        page.evaluate("([crop, period]) => window.__g2gStart(crop, period)",
                      [{"x": c.x, "y": c.y, "w": c.w, "h": c.h, "vw": c.vw, "vh": c.vh}, SAMPLE_PERIOD_MS])
        raw: list[dict[str, Any]] = []
        targets: set[int] = set()
        longest = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(1.0)
            raw += page.evaluate("() => window.__g2g.splice(0)")
            state = page.evaluate(SAMPLE)
            if state and state["url"]:
                with contextlib.suppress(OSError):
                    target, extinf = rendition_facts(state["url"])
                    if target is not None:
                        targets.add(target)
                    longest = max(longest, extinf)
        stalls = page.evaluate("window.__g2gStalls")
    wall: list[float] = []
    burned: list[float] = []
    unreadable = 0
    for sample in raw:
        if not sample["playing"]:
            continue
        if sample.get("wall") is not None:
            wall.append(sample["wall"] / 1000)
        made = reader.read(base64.b64decode(sample["luma"])) if sample.get("luma") else None
        if made is None:
            unreadable += 1
            continue
        age = (sample["now"] / 1000) % 86400 - made
        age += 86400 if age < -43200 else -86400 if age > 43200 else 0
        if -1 < age < 300:
            burned.append(age)
        else:
            unreadable += 1
    return {"wall": wall, "burned": burned, "samples": len(raw), "not_playing": sum(not s["playing"] for s in raw),
            "unreadable": unreadable, "stalls": stalls, "targets": sorted(targets), "longest_extinf": longest}


def run_ours(browser: Any, srv: Any, encoder: list[str], reader: ClockReader, args: argparse.Namespace,
             join_after: float, label: str) -> dict[str, Any]:
    event = srv.create_event(f"Glass to glass {label}")
    process = subprocess.Popen([*encoder, "-f", "flv", srv.publish_url(event)], stdin=subprocess.DEVNULL)
    return _join_and_measure(process, lambda: srv.event_state(event) == "live", "the event to go live", join_after,
                             browser, f"{srv.base_url}/events/{event['slug']}", reader, args)


def _join_and_measure(process: subprocess.Popen, ready: Any, what: str, join_after: float, browser: Any, url: str,
                      reader: ClockReader, args: argparse.Namespace) -> dict[str, Any]:
    """Once the stream is ready, join ``join_after`` s after the encoder started (mid-lecture), then measure."""
    try:
        started = time.monotonic()
        wait_until(ready, 60, what)
        time.sleep(max(0.0, join_after - (time.monotonic() - started)))
        if process.poll() is not None:
            raise RuntimeError("the encoder stopped")
        return measure(browser, url, reader, args.seconds, args.warmup)
    finally:
        stop(process)


def run_bare(browser: Any, encoder: list[str], reader: ClockReader, args: argparse.Namespace,
             join_after: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="g2g-bare-"))
    try:
        with static_site(folder) as port:
            process = subprocess.Popen([*encoder, *bare_hls_args(folder, args.segment, args.window)],
                                       stdin=subprocess.DEVNULL)
            return _join_and_measure(process, lambda: (folder / "live.m3u8").exists(), "bare ffmpeg's first segment",
                                     join_after, browser, f"http://127.0.0.1:{port}/", reader, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def summary(runs: Sequence[dict[str, Any]], key: str) -> tuple[float, float, int]:
    values = [v for r in runs for v in r[key]]
    return percentile(values, 50), percentile(values, 95), len(values)


def report(results: dict[tuple[float, str], list[dict[str, Any]]], gops: Sequence[float], sides: Sequence[str],
           printer: Callable[[str], None] = print) -> None:
    names = {"plain": "ours plain HLS", "ll": "ours LL-HLS", "bare": "bare ffmpeg -f hls"}
    for gop in gops:
        printer(f"\nencoder keyframe interval {gop:g} s")
        bare = results.get((gop, "bare"))
        bare_p50 = {k: summary(bare, k)[0] for k in ("wall", "burned")} if bare else {}
        for side in sides:
            runs = results.get((gop, side))
            if not runs:
                continue
            line = f"  {names[side]:19s}"
            for key, label in (("burned", "burned-in clock"), ("wall", "Date.now()-playingDate")):
                p50, p95, n = summary(runs, key)
                ratio = f", {p50 / bare_p50[key]:.2f}x bare" if bare_p50.get(key) else ""
                line += f" | {label}: p50 {p50:5.2f} s p95 {p95:5.2f} s (n={n}{ratio})"
            per_run = ", ".join(f"{median(r['burned']):.2f}" for r in runs)
            line += (f" | per-run p50 (burned) {per_run}; stalls {[r['stalls'] for r in runs]}; "
                     f"not playing {sum(r['not_playing'] for r in runs)}/{sum(r['samples'] for r in runs)} samples; "
                     f"unreadable {sum(r['unreadable'] for r in runs)}; "
                     f"TARGETDURATION {sorted({t for r in runs for t in r['targets']})}, "
                     f"longest EXTINF {max(r['longest_extinf'] for r in runs):.3f} s")
            printer(line)
    printer("\ntargets (issue 18): LL-HLS p50 ≤ 2.0 s and p95 ≤ 3.0 s with either keyframe interval; plain HLS ≤ 6 s")
    for gop in gops:
        for side, p50_max, p95_max in (("ll", 2.0, 3.0), ("plain", 6.0, None)):
            runs = results.get((gop, side))
            if not runs:
                continue
            for key in ("burned", "wall"):
                p50, p95, _ = summary(runs, key)
                ok = p50 <= p50_max and (p95_max is None or p95 <= p95_max)
                printer(f"  gop {gop:g} s {side:5s} {key:6s}: {'met' if ok else 'NOT met'} (p50 {p50:.2f}, p95 {p95:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gop", type=float, nargs="+", default=[2.0, 10.0], help="encoder keyframe intervals (s)")
    parser.add_argument("--seconds", type=float, default=60, help="sampling time per run and side")
    parser.add_argument("--warmup", type=float, default=8, help="seconds of playback before sampling")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--size", default="640x360", help="encoded picture size (720p does not keep real time here)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--kbps", type=int, default=1000, help="video bitrate (CBR)")
    parser.add_argument("--segment", type=float, default=2.0, help="segment length (all sides)")
    parser.add_argument("--window", type=int, default=6, help="live playlist length in segments (all sides)")
    parser.add_argument("--join-after", type=float, default=None,
                        help="seconds of stream before the viewer opens the page "
                             "(default: max(window × segment, 4 × keyframe interval))")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    reader = ClockReader(args.size)
    results: dict[tuple[float, str], list[dict[str, Any]]] = {}
    common = {"segment_seconds": args.segment, "live_window_segments": args.window}
    started = time.time()
    with contextlib.ExitStack() as stack, sync_playwright() as pw:
        servers = {}
        if "plain" in args.sides:
            servers["plain"] = stack.enter_context(server(**common))
        if "ll" in args.sides:
            servers["ll"] = stack.enter_context(server(**common, ll_hls="true"))
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            for run in range(args.runs):
                for gop in args.gop:
                    encoder = encoder_args(args.size, args.fps, args.kbps, gop)
                    join_after = (args.join_after if args.join_after is not None
                                  else max(args.window * args.segment, 4 * gop))
                    for side in args.sides:
                        load = os.getloadavg()[0]
                        if side == "bare":
                            result = run_bare(browser, encoder, reader, args, join_after)
                        else:
                            result = run_ours(browser, servers[side], encoder, reader, args, join_after,
                                              f"{side} gop {gop:g} run {run + 1}")
                        result["load"] = load
                        results.setdefault((gop, side), []).append(result)
                        print(f"run {run + 1} gop {gop:g} {side:5s}: burned p50 {median(result['burned']):.2f} s, "
                              f"playingDate p50 {median(result['wall']):.2f} s, samples {result['samples']}, "
                              f"unreadable {result['unreadable']}, stalls {result['stalls']}, load {load:.1f}",
                              flush=True)
        finally:
            browser.close()
    print(f"\n{args.size}@{args.fps} {args.kbps} kb/s x264 veryfast; {args.runs} run(s) × {args.seconds:g} s per side; "
          f"{(time.time() - started) / 60:.1f} min; load average now {os.getloadavg()[0]:.1f}")
    report(results, args.gop, args.sides)
    if args.json:
        args.json.write_text(json.dumps({f"{gop:g}/{side}": runs for (gop, side), runs in results.items()}))


if __name__ == "__main__":
    main()
