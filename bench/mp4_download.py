"""MP4 download of a recording: the remux of an fMP4 (LL-HLS) recording against an MPEG-TS one.

Both recordings are made from one H.264 + AAC lecture (``bench.harness.make_source``, encoded once by
ffmpeg and cached): the MPEG-TS one by ffmpeg's HLS muxer with ``-c copy`` (2 s segments, as the
plain packager writes them), the fMP4 one by our LL-HLS muxer (``ingest.packaging.ll_stream``, 0.334 s
parts, 2 s segments, as the LL packager writes them) fed the same FLV tags. The file is looped
(shifted timestamps) to ``--minutes`` of media, so the source is encoded only once.

Each run times what ``GET /api/v1/recordings/{id}/download.mp4`` does the first time: the
recording's remux inputs (``recorder.storage.RecordingFiles.remux_inputs``: the segments themselves
for MPEG-TS, one HLS playlist per publish session for fMP4) joined by ``vod.tools.remux_mp4``
(ffmpeg's concat demuxer, stream copy, ``+faststart``). Wall time and ffmpeg's CPU (user + system,
``getrusage`` of the children), median of ``--runs`` runs per kind, in alternating order; the page
cache is warm after the first run of each kind (as on a server that just wrote the recording).

Run: ``.venv/bin/python -m bench.mp4_download --minutes 10 --runs 3 [--size 1280x720 --kbps 2500]``
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import ffmpeg_path, make_source, median
from formats.flv import read_tags
from formats.m3u8 import Segment, parse_media_playlist, render_vod
from ingest.packaging.ll_stream import LlRendition, LlUpdate
from recorder.storage import RecordingFiles
from vod.tools import remux_mp4

KINDS = {8: "audio", 9: "video"}


def mpegts_recording(source: Path, folder: Path, loops: int) -> list[Segment]:
    """ffmpeg's HLS muxer, stream copy: the MPEG-TS segments the plain packager records."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                    "-i", str(source), "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "0",
                    "-hls_segment_filename", str(folder / "seg_%06d.ts"), str(folder / "index.m3u8")],
                   check=True, stdin=subprocess.DEVNULL)
    segments = parse_media_playlist((folder / "index.m3u8").read_text()).playlist.segments
    (folder / "vod.m3u8").write_text(render_vod(segments))
    return list(segments)


def fmp4_recording(source: Path, folder: Path, loops: int, length_ms: int) -> list[Segment]:
    """Our LL-HLS muxer fed the source's FLV tags, looped: the fMP4 segments an LL recording holds."""
    folder.mkdir(parents=True, exist_ok=True)
    tags = [(KINDS[kind], stamp, body) for kind, stamp, body in read_tags(source.read_bytes()) if kind in KINDS]
    stream = LlRendition(part_target=0.334, segment_seconds=2.0, window_segments=6)
    stream.begin_session()
    segments: list[Segment] = []

    def keep(update: LlUpdate) -> None:
        for file in update.files:
            if not file.name.startswith("part_"):  # a recording keeps segments and the init section
                (folder / file.name).write_bytes(file.data)
        segments.extend(update.segments)

    for loop in range(loops):
        for kind, stamp, body in tags:
            if loop and body[1] == 0:
                continue  # sequence headers once
            keep(stream.feed(kind, stamp + loop * length_ms, body, 1e9 + (stamp + loop * length_ms) / 1000))
    keep(stream.end_session())
    (folder / "vod.m3u8").write_text(render_vod(segments))
    return segments


def time_download(folder: Path, segments: list[Segment]) -> tuple[float, float, int]:
    """(wall s, ffmpeg CPU s, MP4 bytes) of one download remux, as the catalog runs it."""
    files = RecordingFiles(folder)
    output = folder / "download.mp4"
    output.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    inputs = files.remux_inputs(segments)
    try:
        asyncio.run(remux_mp4(ffmpeg_path(), inputs, output, timeout=3600, audio=files.remux_audio(segments)))
    finally:
        files.discard_remux_inputs(inputs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), output.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="media per recording")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--kbps", type=int, default=2500)
    parser.add_argument("--source-seconds", type=int, default=60, help="encoded once, then looped")
    args = parser.parse_args()
    loops = max(1, round(args.minutes * 60 / args.source_seconds))
    cache = Path(tempfile.gettempdir()) / f"bench-mp4-{args.size}-{args.kbps}-{args.source_seconds}.flv"
    source = make_source(cache, seconds=args.source_seconds, size=args.size, kbps=args.kbps)
    work = Path(tempfile.mkdtemp(prefix="bench-mp4-download-"))
    try:
        made = time.perf_counter()
        recordings = {
            "mpegts": (work / "ts", mpegts_recording(source, work / "ts", loops)),
            "fmp4": (work / "fmp4", fmp4_recording(source, work / "fmp4", loops, args.source_seconds * 1000)),
        }
        media = {kind: sum(s.duration for s in segments) for kind, (_, segments) in recordings.items()}
        print(f"source: {args.size} 30 fps H.264 {args.kbps} kb/s + AAC 128 kb/s, {args.source_seconds} s x {loops}; "
              f"recordings made in {time.perf_counter() - made:.1f} s: "
              + ", ".join(f"{kind} {len(segs)} segments, {media[kind]:.1f} s, "
                          f"{sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.0f} MB"
                          for kind, (folder, segs) in recordings.items()))
        results: dict[str, list[tuple[float, float, int]]] = {kind: [] for kind in recordings}
        for run in range(args.runs):
            for kind in (("mpegts", "fmp4") if run % 2 == 0 else ("fmp4", "mpegts")):
                folder, segments = recordings[kind]
                results[kind].append(time_download(folder, segments))
        print(f"MP4 download remux, median of {args.runs} runs")
        print(f"{'recording':<10} {'wall s':>8} {'CPU s':>8} {'MP4 MB':>8} {'wall s / media min':>19}")
        walls = {}
        for kind, runs in results.items():
            walls[kind] = median([r[0] for r in runs])
            print(f"{kind:<10} {walls[kind]:>8.2f} {median([r[1] for r in runs]):>8.2f} {runs[-1][2] / 1e6:>8.0f} "
                  f"{walls[kind] / (media[kind] / 60):>19.3f}")
        print(f"fmp4 / mpegts wall time: {walls['fmp4'] / walls['mpegts']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
