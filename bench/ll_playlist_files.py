"""What sharing LL-HLS playlists through the media folder costs, per part and rendition.

The LL packager replaces ``live.m3u8`` (and ``dvr.m3u8`` with DVR) at every part, on its writer thread
(``live_server.files.write_atomic``), so that web-only nodes answer blocking reloads from the files
(``web.ll_files``); each web node reads and parses (``formats.m3u8.parse_ll``) each version once while
requests wait. Measured here, wall time per operation, median of ``--runs`` runs of ``--count`` operations:

- ``write live``: the live window (``--window`` segments of 2 s, six 0.334 s parts each);
- ``write dvr N min``: the DVR playlist after N minutes (every segment, parts near the end only);
- ``parse live`` / ``parse dvr N min``: ``parse_ll`` of the same texts, whole;
- ``next part ...``: ``read_ll`` of the version with one more part, from the last one (what a web node
  does, once per version, while requests wait);
- ``delta ...``: the delta update (``_HLS_skip``) rendered from what was read, once per version on demand;
- ``stat x2``: the watcher's look at a rendition's two files (every 25 ms while requests wait).

Run: ``.venv/bin/python -m bench.ll_playlist_files [--dir /path/on/the/media/disk --count 500 --runs 5]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from bench.harness import median

from formats.m3u8 import LlPart, LlPlaylist, LlSegment, parse_ll, read_ll, render_ll
from live_server.files import write_atomic

PART = 0.334
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def playlist(segments: int, window: int | None) -> LlPlaylist:
    all_segments = [LlSegment(f"seg_{m:06d}.m4s", 6 * PART, tuple(LlPart(f"part_{m:06d}_{i}.m4s", PART, i == 0)
                                                                  for i in range(6)),
                              T0 + timedelta(seconds=m * 6 * PART), False, "init_1.mp4")
                    for m in range(segments)]
    shown = all_segments if window is None else all_segments[-window:]
    return LlPlaylist(target_duration=2, part_target=PART, map_uri="init_1.mp4", media_sequence=segments - len(shown),
                      segments=tuple(shown), pending_parts=(LlPart(f"part_{segments:06d}_0.m4s", PART, True),),
                      preload_hint=f"part_{segments:06d}_1.m4s",
                      playlist_type="EVENT" if window is None else None)


def timed(operation: Callable[[], object], count: int, runs: int) -> float:
    """Median of ``runs`` runs, in microseconds per operation."""
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            operation()
        results.append((time.perf_counter() - start) / count * 1e6)
    return median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        texts = {"live": render_ll(playlist(180, args.window))}
        for minutes in (10, 60, 180):
            texts[f"dvr {minutes} min"] = render_ll(playlist(round(minutes * 60 / (6 * PART)), None))
        print(f"{'operation':<22} {'bytes':>8} {'us/op':>9}")
        nexts = {}
        for name in texts:
            segments = 180 if name == "live" else round(int(name.split()[1]) * 60 / (6 * PART))
            version = playlist(segments, args.window if name == "live" else None)
            after = replace(version, pending_parts=version.pending_parts + (LlPart(f"part_{segments:06d}_1.m4s", PART),),
                            preload_hint=f"part_{segments:06d}_2.m4s")
            nexts[name] = (read_ll(texts[name]), render_ll(after))
        for name, text in texts.items():
            count = args.count if name == "live" else max(20, args.count // 10)
            path = folder / "live.m3u8"
            write = timed(lambda: write_atomic(path, text), count, args.runs)
            parse = timed(lambda: parse_ll(text), count, args.runs)
            print(f"{'write ' + name:<22} {len(text):>8} {write:>9.0f}")
            print(f"{'parse ' + name:<22} {len(text):>8} {parse:>9.0f}")
            last, following = nexts[name]
            resumed = timed(lambda: read_ll(following, last), count, args.runs)
            print(f"{'next part ' + name:<22} {len(following):>8} {resumed:>9.0f}")
            delta = timed(lambda: render_ll(last.playlist, skip=True), count, args.runs)
            print(f"{'delta ' + name:<22} {len(render_ll(last.playlist, skip=True)):>8} {delta:>9.0f}")
        write_atomic(folder / "dvr.m3u8", texts["live"])
        stat = timed(lambda: (os.stat(folder / "live.m3u8"), os.stat(folder / "dvr.m3u8")), args.count * 10, args.runs)
        print(f"{'stat x2':<22} {'':>8} {stat:>9.1f}")


if __name__ == "__main__":
    main()
