"""From the end of a live event to its replay being ready (VOD playlist written, catalog state "ready").

A ``live-server run`` process (SQLite, 1 s grace period) receives a prepared 720p30 lecture pushed
without re-encoding; when the pusher has sent everything and disconnected, the event ends after
the grace period. The event's end is the moment the packager writes ENDLIST into the live
playlist (``source/live.m3u8``'s mtime; same machine, same clock). Per run we report, from it:

* ``ready (server)``: the recording's ``ready_at`` (VOD playlists written, catalog updated);
* ``ready (API)``: when ``GET /api/v1/recordings?event=`` first lists it as ready (polled every
  10 ms: includes up to 10 ms of polling and an HTTP round trip);
* reference, ``event ended``: the event's own ``ended_at`` in the catalog (the live side's end
  bookkeeping; the recording is finalised just before it).

Run: ``.venv/bin/python -m bench.vod_ready [--runs 5] [--seconds 20] [--segment 2]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import make_source, median, push, server

GRACE = 1.0


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run(runs: int, seconds: int, segment: float) -> dict[str, float]:
    workdir = Path(tempfile.gettempdir()) / "live-bench-media"
    workdir.mkdir(exist_ok=True)
    source = make_source(workdir / f"lecture-720p-{seconds}s-gop{segment:g}.flv", seconds=seconds, gop_seconds=segment)
    server_ready, api_ready, ended, durations = [], [], [], []
    with server(segment_seconds=segment, grace_period_seconds=GRACE) as srv:
        for i in range(runs):
            event = srv.create_event(f"VOD bench {i}")
            pusher = push(source, srv.publish_url(event), loop=False)
            pusher.wait(seconds + 30)
            seen_ready: float | None = None
            recording: dict[str, Any] = {}
            deadline = time.monotonic() + GRACE + 30
            while seen_ready is None and time.monotonic() < deadline:
                listed = json.loads(srv.get(f"/api/v1/recordings?event={event['id']}"))["recordings"]
                if listed and listed[0]["state"] == "ready":
                    seen_ready, recording = time.time(), listed[0]
                time.sleep(0.01)
            if seen_ready is None:
                raise RuntimeError("the recording did not become ready in time")
            while srv.event_state(event) != "ended":
                time.sleep(0.01)
            live_playlist = srv.media_folder(event) / "source" / "live.m3u8"
            assert live_playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
            end = live_playlist.stat().st_mtime
            event_body = json.loads(srv.get(f"/api/v1/events/{event['id']}"))
            server_ready.append(_ts(recording["ready_at"]) - end)
            api_ready.append(seen_ready - end)
            ended.append(_ts(event_body["ended_at"]) - end)
            durations.append(recording["duration_seconds"])
            print(f"run {i + 1}: ready {server_ready[-1] * 1000:.1f} ms (API {api_ready[-1] * 1000:.0f} ms), "
                  f"event ended {ended[-1] * 1000:.1f} ms, recorded {durations[-1]:.1f} s of {seconds} s")
    return {
        "server_ready_ms": median(server_ready) * 1000,
        "api_ready_ms": median(api_ready) * 1000,
        "event_ended_ms": median(ended) * 1000,
        "recorded_s": median(durations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--segment", type=float, default=2.0)
    args = parser.parse_args()
    result = run(args.runs, args.seconds, args.segment)
    print(f"median of {args.runs} runs ({args.seconds} s pushes, {args.segment:g} s segments), after the live ENDLIST: "
          f"VOD ready {result['server_ready_ms']:.1f} ms (seen by the API {result['api_ready_ms']:.0f} ms); "
          f"event marked ended {result['event_ended_ms']:.1f} ms (ratio ready/ended "
          f"{result['server_ready_ms'] / result['event_ended_ms']:.2f}); recorded {result['recorded_s']:.1f} s")

if __name__ == "__main__":
    main()
