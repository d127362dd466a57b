"""CPU per second of media: our Python fMP4 muxer (formats.cmaf) against ffmpeg packaging the same input.

Issue 18 chooses the LL-HLS packaging path by measurement. One H.264 + AAC FLV (1080p30 by
default, made once with libx264 by ``bench.harness.make_source``) is packaged without re-encoding:

- ``python mux``: every FLV tag fed to :class:`formats.cmaf.CmafMuxer` (0.334 s parts, 2 s
  segments), tags read from memory beforehand; CPU time of this process (``time.process_time``).
- ``python parse+mux+write``: the same plus our test-local FLV tag reading and writing every part and
  every segment to files, as the live path will (ffmpeg's figures include its demuxing and writes).
- ``ffmpeg hls fmp4`` / ``ffmpeg hls mpegts``: ``ffmpeg -i in.flv -c copy -f hls`` with
  ``-hls_segment_type fmp4`` (no parts: ffmpeg cannot make them) and with MPEG-TS (today's path);
  CPU of the child from ``getrusage`` (user + system), read as fast as it can (no ``-re``).

The file is played ``--loops`` times in one run (``-stream_loop`` for ffmpeg, shifted timestamps
into one muxer for ours) so that ffmpeg's start-up does not dominate its figure.

Each figure is the median of ``--runs`` runs, as CPU-seconds per media-second (x 100 = % of a core
per live stream). Run: ``.venv/bin/python -m bench.cmaf_mux [--size 1920x1080 --kbps 4500 --seconds 30 --loops 4 --runs 5]``
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.harness import ffmpeg_path, make_source, median
from formats.flv import read_tags
from formats.cmaf import CmafMuxer, Part, parse_aac_config, parse_avc_config


def mux(tags: list[tuple[int, int, bytes]], on_part: Callable[[Part], None], loops: int, length_ms: int) -> int:
    """Feed every tag ``loops`` times (one continuous stream) to a fresh muxer; returns the number of parts."""
    video = next(parse_avc_config(b[5:]) for t, _, b in tags if t == 9 and b[1] == 0)
    audio = next(parse_aac_config(b[2:]) for t, _, b in tags if t == 8 and b[1] == 0)
    muxer = CmafMuxer(video, audio, part_target=0.334, segment_target=2.0)
    count = 0
    for loop in range(loops):
        shift = loop * length_ms
        for kind, stamp, body in tags:
            if kind == 9 and body[1] == 1:
                parts = muxer.add_video(body[5:], stamp + shift, int.from_bytes(body[2:5], "big", signed=True),
                                        body[0] >> 4 == 1)
            elif kind == 8 and body[1] == 1:
                parts = muxer.add_audio(body[2:], stamp + shift)
            else:
                continue
            for part in parts:
                on_part(part)
                count += 1
    for part in muxer.flush():
        on_part(part)
        count += 1
    return count


def python_mux(source: Path, loops: int, seconds: int) -> float:
    tags = list(read_tags(source.read_bytes()))
    start = time.process_time()
    mux(tags, lambda part: None, loops, seconds * 1000)
    return time.process_time() - start


def python_full(source: Path, loops: int, seconds: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        folder = Path(out)
        segment: list[bytes] = []
        state = {"msn": 0}

        def write(part: Part) -> None:
            if part.segment_start and segment:
                (folder / f"s{state['msn']}.m4s").write_bytes(b"".join(segment))
                segment.clear()
            state["msn"] = part.msn
            (folder / f"p{part.msn}.{part.index}.m4s").write_bytes(part.data)
            segment.append(part.data)

        start = time.process_time()
        mux(list(flv_tags(source.read_bytes())), write, loops, seconds * 1000)
        (folder / f"s{state['msn']}.m4s").write_bytes(b"".join(segment))
        return time.process_time() - start


def ffmpeg_hls(source: Path, segment_type: str, loops: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-stream_loop", str(loops - 1), "-i", str(source), "-c", "copy", "-f", "hls",
             "-hls_time", "2", "-hls_segment_type", segment_type, "-hls_list_size", "0", f"{out}/index.m3u8"],
            check=True, stdin=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--kbps", type=int, default=4500)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loops", type=int, default=4, help="play the file this many times in one run")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / f"bench-cmaf-{args.size}-{args.kbps}-{args.seconds}.flv"
    source = make_source(cache, seconds=args.seconds, size=args.size, kbps=args.kbps)
    print(f"source: {args.size} 30 fps H.264 {args.kbps} kb/s + AAC 128 kb/s, {args.seconds} s, "
          f"{source.stat().st_size / 1e6:.1f} MB")
    measures: dict[str, Callable[[], float]] = {
        "python mux": lambda: python_mux(source, args.loops, args.seconds),
        "python parse+mux+write": lambda: python_full(source, args.loops, args.seconds),
        "ffmpeg hls fmp4": lambda: ffmpeg_hls(source, "fmp4", args.loops),
        "ffmpeg hls mpegts": lambda: ffmpeg_hls(source, "mpegts", args.loops),
    }
    media = args.seconds * args.loops
    print(f"{media} s of media per run ({args.loops} loops), median of {args.runs} runs")
    results = {name: median([run() for _ in range(args.runs)]) / media for name, run in measures.items()}
    reference = results["ffmpeg hls fmp4"]
    print(f"{'path':<26} {'CPU s / media s':>16} {'% of a core':>12} {'vs ffmpeg fmp4':>15}")
    for name, value in results.items():
        print(f"{name:<26} {value:>16.4f} {value * 100:>11.2f}% {value / reference:>14.2f}x")


if __name__ == "__main__":
    main()
