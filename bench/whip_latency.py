"""WHIP publish-to-playlist latency, measured like the RTMP figure (bench/publish_latency.py).

SRTP encrypts RTP payloads but not RTP headers, so a packet socket on the loopback interface
(root only) sees, for every video packet ffmpeg's ``whip`` muxer sends, its RTP timestamp and the
wall time it left the publisher. The video stream is the SSRC whose timestamps advance at 90 kHz;
the first video timestamp is media time 0. The source has a keyframe every segment, so segment *k*
of the live playlist starts at the frame whose timestamp is T0 + (sum of earlier EXTINF) × 90,000.
The playlist is polled every 10 ms over HTTP. Reported: the first frame of a segment → listed
(target: one segment + 0.5 s) and the last frame → listed (overhead once the segment is complete).

Run (as root): ``.venv/bin/python -m bench.whip_latency [--seconds 30] [--runs 3]``
"""

from __future__ import annotations

import argparse
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import report_latency_runs, ffmpeg_path, median, percentile, poll_playlist, server, stop
from bench.whip_cpu import make_whip_source

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_SEGMENT = re.compile(r"#EXTINF:([\d.]+),\s*\n(seg_(\d+)\.ts)")


class RtpSniffer:
    """First-seen wall time of every (SSRC, RTP timestamp) sent over loopback UDP."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.first_seen: dict[int, dict[int, float]] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            now = time.time()
            if address[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + 12:
                continue  # loopback shows each packet twice: keep the received copy
            if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:  # IPv4, UDP
                continue
            ihl = (frame[14] & 0x0F) * 4
            rtp = frame[14 + ihl + 8:]
            if len(rtp) < 12 or rtp[0] >> 6 != 2 or not 96 <= rtp[1] & 0x7F <= 127:
                continue  # not RTP (STUN, DTLS, RTCP)
            timestamp, ssrc = struct.unpack("!II", rtp[4:12])
            self.first_seen.setdefault(ssrc, {}).setdefault(timestamp, now)

    def video(self) -> dict[int, float]:
        """The stream whose timestamps advance at 90 kHz (audio: 48 kHz)."""
        best: dict[int, float] = {}
        for stamps in self.first_seen.values():
            if len(stamps) < 10:
                continue
            items = sorted(stamps.items(), key=lambda kv: kv[1])
            (ts0, t0), (ts1, t1) = items[0], items[-1]
            rate = ((ts1 - ts0) % 2**32) / (t1 - t0) if t1 > t0 else 0
            if 60_000 < rate < 120_000:
                best = stamps
        return best


def run(seconds: float, segment: float, source: Path) -> dict[str, float]:
    with server(segment_seconds=segment, grace_period_seconds=1, whip_host_addresses="127.0.0.1") as srv:
        event = srv.create_event("WHIP latency")
        sniffer = RtpSniffer()
        sniffer.start()
        publisher = subprocess.Popen(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(source), "-t", str(seconds + 10),
             "-c", "copy", "-f", "whip", "-authorization", event["stream"]["stream_key"], f"{srv.base_url}/whip"],
            stdin=subprocess.DEVNULL)
        listed: dict[int, tuple[float, float]] = {}  # number -> (listed at, media start)
        path = f"/live/{event['slug']}/source/dvr.m3u8"
        try:
            poll_playlist(srv, path, lambda text, now: _record(text, now, listed), seconds)
        finally:
            stop(publisher)
            sniffer.close()
    video = sniffer.video()
    if not video:
        raise RuntimeError("no RTP video seen on loopback (run as root)")
    ordered = sorted(video.items(), key=lambda kv: kv[1])
    t0_stamp = ordered[0][0]
    arrival = {((ts - t0_stamp) % 2**32) / 90_000: at for ts, at in ordered}
    times = sorted(arrival)
    first, last = [], []
    for number, (listed_at, start) in sorted(listed.items()):
        if number == 0:
            continue  # listed before polling began
        later = [t for t in times if t >= start - 0.001]
        earlier = [t for t in times if t < start - 0.001]
        if not later or not earlier:
            continue
        first.append(listed_at - arrival[later[0]])
        nxt = listed.get(number + 1)
        end = nxt[1] if nxt else None
        if end is not None:
            inside = [t for t in times if start - 0.001 <= t < end - 0.001]
            if inside:
                last.append(listed_at - arrival[inside[-1]])
    return {"segments": len(first), "first_median": median(first), "first_p90": percentile(first, 90),
            "last_median": median(last), "last_p90": percentile(last, 90)}


def _record(text: str, now: float, listed: dict[int, tuple[float, float]]) -> bool:
    start = 0.0
    for match in _SEGMENT.finditer(text):
        number = int(match.group(3))
        listed.setdefault(number, (now, start))
        start += float(match.group(1))
    return bool(listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from bench.whip_cpu import SEGMENT

    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_whip_source(workdir / "lecture-720p-60s-gop2-baseline-opus.mkv")
    results = [run(args.seconds, SEGMENT, source) for _ in range(args.runs)]
    report_latency_runs(results, SEGMENT)


if __name__ == "__main__":
    main()
