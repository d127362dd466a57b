"""CPU of one WHIP publish at 720p30, with RTMP passthrough of the same picture side by side.

Cases, each in a fresh event of one ``live-server run`` (2 s segments, ICE on 127.0.0.1):

* ``rtmp`` (reference): the harness's prepared 720p30 2.5 Mbps H.264+AAC lecture pushed over RTMP with
  ``-c copy`` — the server's cost for a stream it only repackages;
* ``whip-h264``: the same picture as H.264 constrained baseline + Opus (prepared once), pushed by
  ffmpeg's ``whip`` muxer with ``-c copy``: our H.264 passthrough (RTP → FLV framing) + Opus → AAC;
* ``whip-vp8``: headless Chromium (fake 1280x720 camera and microphone, VP8 only, 2.5 Mbps) publishing
  over WHIP from a page on the server's origin: our VP8 → H.264 transcode (libx264 veryfast) + Opus → AAC.
  Chromium's own encoding runs in its processes and is not counted; it shares the 2 cores, so it may
  lower its frame rate: the fps actually received is reported.

For each case, once live: CPU-seconds per media-second of the server process alone (Python: aiortc,
converters) and of its packager ffmpeg children, sampled from ``/proc`` over ``--window`` seconds, and
the resolution and frame rate that reached the playlist.

Run: ``.venv/bin/python -m bench.whip_cpu [--window 20] [--runs 3] [--cases rtmp whip-h264 whip-vp8]``
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from bench.harness import (
    CLOCK_TICKS, Server, ffmpeg_path, make_source, median, process_tree_ticks, push, server, stop, wait_until,
)

SEGMENT = 2.0


def make_whip_source(path: Path, seconds: int = 60) -> Path:
    """720p30 2.5 Mbps H.264 constrained baseline (no B-frames, GOP = segment) + Opus, as WebRTC senders send."""
    if path.exists():
        return path
    gop = str(int(30 * SEGMENT))
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-b:v", "2500k",
         "-maxrate", "2500k", "-bufsize", "5000k", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-bf", "0",
         "-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "64k", "-ac", "2", str(path)],
        check=True,
    )
    return path


def _self_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@contextlib.contextmanager
def _publisher(case: str, srv: Server, event: dict[str, Any], sources: dict[str, Path]) -> Iterator[dict[str, Any]]:
    info: dict[str, Any] = {}
    if case == "rtmp":
        proc = push(sources["rtmp"], srv.publish_url(event))
        try:
            yield info
        finally:
            stop(proc)
    elif case == "whip-h264":
        proc = subprocess.Popen(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(sources["whip"]),
             "-c", "copy", "-f", "whip", "-authorization", event["stream"]["stream_key"], f"{srv.base_url}/whip"],
            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield info
        finally:
            stop(proc)
    else:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"])
            page = browser.new_page()
            page.goto(f"{srv.base_url}/healthz")
            page.evaluate(_VP8_PUBLISH, {"url": f"{srv.base_url}/whip", "key": event["stream"]["stream_key"]})
            try:
                yield info
            finally:
                browser.close()


_VP8_PUBLISH = """async ({url, key}) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true,
    video: {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30}}});
  const pc = new RTCPeerConnection();
  window.benchPc = pc;
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, {direction: "sendonly",
      sendEncodings: track.kind === "video" ? [{maxBitrate: 2500000}] : undefined});
    if (track.kind === "video") {
      t.setCodecPreferences(RTCRtpReceiver.getCapabilities("video").codecs.filter(c => /vp8|rtx/i.test(c.mimeType)));
      const p = t.sender.getParameters(); p.degradationPreference = "maintain-resolution";
      await t.sender.setParameters(p).catch(() => {});
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === "complete") r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); setTimeout(r, 3000); });
  const resp = await fetch(url, {method: "POST", body: pc.localDescription.sdp, credentials: "omit",
    headers: {"Content-Type": "application/sdp", Authorization: "Bearer " + key}});
  if (resp.status !== 201) throw new Error("WHIP POST: " + resp.status + " " + await resp.text());
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
}"""


def _received(folder: Path) -> str:
    """Resolution and frame rate that reached the playlist (last complete segment)."""
    master = (folder / "master.m3u8").read_text()
    resolution = re.search(r"RESOLUTION=(\d+x\d+)", master)
    segments = sorted((folder / "source").glob("seg_*.ts"))
    if len(segments) < 2:
        return "?"
    out = subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(segments[-2]), "-map", "0:v:0", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True)
    frames = sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))
    return f"{resolution.group(1) if resolution else '?'} @ {frames / SEGMENT:.0f} fps"


def run_case(case: str, srv: Server, sources: dict[str, Path], window: float, index: int) -> dict[str, Any]:
    event = srv.create_event(f"WHIP bench {case} {index}")
    with _publisher(case, srv, event, sources):
        wait_until(lambda: srv.event_state(event) == "live", 30, f"{case} to go live")
        time.sleep(SEGMENT + 1)
        pid = srv.process.pid
        own0, tree0 = _self_ticks(pid), process_tree_ticks(pid)
        time.sleep(window)
        own = (_self_ticks(pid) - own0) / CLOCK_TICKS / window
        tree = (process_tree_ticks(pid) - tree0) / CLOCK_TICKS / window
        received = _received(srv.media_folder(event))
    wait_until(lambda: srv.event_state(event) == "ended", 30, f"{case} to end")
    return {"server": own, "packager": tree - own, "total": tree, "received": received}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["rtmp", "whip-h264", "whip-vp8"])
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    sources = {
        "rtmp": make_source(workdir / "lecture-720p-60s-gop2.flv", seconds=60, gop_seconds=SEGMENT),
        "whip": make_whip_source(workdir / "lecture-720p-60s-gop2-baseline-opus.mkv"),
    }
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in args.cases}
    with server(segment_seconds=SEGMENT, grace_period_seconds=1, whip_host_addresses="127.0.0.1") as srv:
        for index in range(args.runs):
            for case in args.cases:
                results[case].append(run_case(case, srv, sources, args.window, index))
                r = results[case][-1]
                print(f"run {index + 1} {case:10s} server {r['server']:.3f} packager {r['packager']:.3f} "
                      f"total {r['total']:.3f} CPU-s per media-s; {r['received']}", flush=True)
    reference = median([r["total"] for r in results.get("rtmp", [])]) if "rtmp" in results else float("nan")
    print("\ncase        server  packager  total   ×rtmp  received (last run)")
    for case, rows in results.items():
        total = median([r["total"] for r in rows])
        print(f"{case:10s}  {median([r['server'] for r in rows]):.3f}   {median([r['packager'] for r in rows]):.3f}     "
              f"{total:.3f}  {total / reference:5.1f}  {rows[-1]['received']}")


if __name__ == "__main__":
    main()
