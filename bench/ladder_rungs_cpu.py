"""CPU the ABR ladder saves by encoding no rung taller than the source: the plain-HLS ladder command
(``ffmpeg_args.build_ffmpeg_args``) run by the server's ffmpeg, as fast as it can, on the same FLV file
(``--size``, default 160x120 at 10 fps, as the tests publish), once with the whole ladder (what an
unknown source height gets) and once with the rungs ``options.ladder_for_source`` keeps for the
source's height. CPU-seconds from ``wait4``, divided by the media's length: the share of a core each
would take live (100 % = one core).

Run: ``.venv/bin/python -m bench.ladder_rungs_cpu [--size 160x120] [--fps 10] [--seconds 30] [--runs 2]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from bench.harness import ffmpeg_path, make_source
from ingest.packaging.ffmpeg_args import build_ffmpeg_args, encoded_renditions
from ingest.packaging.options import DEFAULT_LADDER, PackagerOptions


def cpu_seconds(source: Path, height: int | None) -> float:
    """CPU-seconds (user + system) of one ladder ffmpeg over the whole file."""
    options = PackagerOptions(ladder=DEFAULT_LADDER)
    with tempfile.TemporaryDirectory() as out:
        for rendition in DEFAULT_LADDER:
            Path(out, rendition.name).mkdir()
        read, write = os.pipe()
        args = build_ffmpeg_args(ffmpeg_path(), options, Path(out), 0, write, True, height)
        with open(source, "rb") as stdin:
            proc = subprocess.Popen(args, stdin=stdin, stderr=subprocess.PIPE, pass_fds=[write])
        os.close(write)
        with os.fdopen(read, "rb") as listing:
            listing.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"ffmpeg failed: {proc.stderr.read().decode() if proc.stderr else status}")
        return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2)
    ns = parser.parse_args()
    height = int(ns.size.split("x")[1])
    with tempfile.TemporaryDirectory() as tmp:
        source = make_source(Path(tmp) / "source.flv", ns.seconds, ns.size, ns.fps, kbps=300, gop_seconds=1.0)
        kept = "/".join(r.name for r in encoded_renditions(PackagerOptions(ladder=DEFAULT_LADDER), True, height))
        for _ in range(ns.runs):
            for label, h in (("whole ladder", None), (kept, height)):
                cpu = cpu_seconds(source, h)
                print(f"{ns.size}@{ns.fps}: {label:24s} {cpu:6.2f} CPU-s for {ns.seconds} s: "
                      f"{100 * cpu / ns.seconds:5.1f} % of a core")


if __name__ == "__main__":
    main()
