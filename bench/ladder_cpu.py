"""CPU of one ABR event (the default ladder: 720p/480p/240p/audio) from a 720p30 source: plain HLS
(ffmpeg's ``segment`` muxer writes MPEG-TS) against LL-HLS (ffmpeg only encodes, each rendition as
FLV on a pipe, our CMAF muxer packages it in the server process).

One RTMP push of a 720p30 2.5 Mbps lecture (copied, ``-re``) to a ``live-server run`` with
``ll_hls`` off, then on. Once the event lists segments, the CPU of the ffmpeg child (the encoder)
and of the whole server process tree (Python included) are sampled from ``/proc`` over a fixed
window: %CPU = CPU-seconds / window x 100 (100 % = one core). Whether the ladder kept real time is
told by the segments listed in the window.

On a loaded machine the ladder may not keep real time, and %CPU then says how much CPU the
process got, not what it needs. ``--batch`` measures what it needs: the same 20 s file goes through
each command as fast as it can (``ffmpeg_args.build_ffmpeg_args`` writing MPEG-TS segments, and
``build_transcoder_args`` with its four FLV pipes read and muxed by ``LlLadder`` in this process),
and the CPU-seconds each used (ffmpeg from ``wait4``, the muxing from ``time.process_time``) are
divided by the media's 20 s: the %CPU it would take live.

Run: ``.venv/bin/python -m bench.ladder_cpu [--window 20] [--batch]``
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import (_descendants, ffmpeg_path, make_source, process_tree_ticks, push, server, stop,
                           wait_until)
from formats.flv import FlvTagReader
from ingest.packaging.ffmpeg_args import build_ffmpeg_args, build_transcoder_args
from ingest.packaging.ll_ladder import LlLadder
from ingest.packaging.options import DEFAULT_LADDER, PackagerOptions

CLOCK_TICKS = 100


def _ffmpeg_ticks(server_pid: int) -> int:
    """user+system ticks of the server's ffmpeg children (the packager or the transcoder)."""
    total = 0
    for pid in _descendants(server_pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "(ffmpeg" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def run(source: Path, ll: bool, window: float) -> dict[str, float]:
    suffix = "m4s" if ll else "ts"
    with server(segment_seconds=2, ll_hls=str(ll).lower(), recording_enabled="false") as srv:
        event = srv.create_event("Ladder", "--abr")
        pusher = push(source, srv.publish_url(event))
        try:
            def listed() -> int:
                try:
                    text = srv.get(f"/live/{event['slug']}/720p/live.m3u8").decode()
                except OSError:
                    return 0
                numbers = re.findall(rf"seg_(\d+)\.{suffix}", text)
                return int(numbers[-1]) + 1 if numbers else 0
            wait_until(lambda: listed() >= 2, 60, "the ladder to list segments")
            time.sleep(2)
            first = listed()
            tree, ffmpeg = process_tree_ticks(srv.process.pid), _ffmpeg_ticks(srv.process.pid)
            time.sleep(window)
            tree = process_tree_ticks(srv.process.pid) - tree
            ffmpeg = _ffmpeg_ticks(srv.process.pid) - ffmpeg
            segments = listed() - first
        finally:
            stop(pusher)
    return {"ffmpeg": ffmpeg / CLOCK_TICKS / window * 100, "tree": tree / CLOCK_TICKS / window * 100,
            "segments": segments, "expected": window / 2}


def _rusage_cpu(proc: subprocess.Popen[bytes]) -> float:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def batch(source: Path, seconds: float) -> dict[str, float]:
    """CPU-seconds per media-second (x 100: %CPU live) of each path, fed the file as fast as it goes."""
    options = PackagerOptions(ladder=DEFAULT_LADDER)
    data = source.read_bytes()
    with tempfile.TemporaryDirectory() as out:
        for rendition in options.ladder:
            (Path(out) / rendition.name).mkdir()
        read_fd, write_fd = os.pipe()
        plain = subprocess.Popen(build_ffmpeg_args(ffmpeg_path(), options, Path(out), 0, write_fd),
                                 stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(write_fd,))
        os.close(write_fd)
        assert plain.stdin is not None
        plain.stdin.write(data)
        plain.stdin.close()
        plain_cpu = _rusage_cpu(plain)
        os.close(read_fd)

    names = [r.name for r in options.ladder]
    ladder = LlLadder(names, part_target=0.334, segment_seconds=2.0, window_segments=6, followers=["audio"],
                      transcoded=True)
    ladder.begin_session()
    pipes = [os.pipe() for _ in names]
    with tempfile.TemporaryFile() as stdin:
        stdin.write(data)
        stdin.seek(0)
        proc = subprocess.Popen(build_transcoder_args(ffmpeg_path(), options, [w for _, w in pipes]),
                                stdin=stdin, stderr=subprocess.DEVNULL, pass_fds=[w for _, w in pipes])
    for _, w in pipes:
        os.close(w)
    selector = selectors.DefaultSelector()
    for name, (r, _) in zip(names, pipes):
        selector.register(r, selectors.EVENT_READ, (name, FlvTagReader()))
    muxing = 0.0
    parts = 0
    open_pipes = len(names)
    while open_pipes:
        for key, _ in selector.select():
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                os.close(key.fd)
                open_pipes -= 1
                continue
            name, reader = key.data
            started = time.process_time()
            for tag_type, ms, body in reader.feed(chunk):
                if tag_type in (8, 9):
                    for _, update in ladder.feed(name, "audio" if tag_type == 8 else "video", ms, body, 0.0):
                        parts += sum(1 for f in update.files if f.name.startswith("part_"))
            muxing += time.process_time() - started
    ffmpeg_cpu = _rusage_cpu(proc)
    return {"plain": plain_cpu / seconds * 100, "transcoder": ffmpeg_cpu / seconds * 100,
            "muxing": muxing / seconds * 100, "parts": parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--batch", action="store_true", help="CPU needed per media-second, not CPU got live")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.batch:
            source = make_source(Path(tmp) / "lecture-720p30-20s.flv", seconds=20)
            r = batch(source, 20.0)
            print(f"20 s of 720p30 through the default ladder, as fast as it goes (CPU per media-second x 100):\n"
                  f"  plain HLS: ffmpeg (encode + MPEG-TS segments)      {r['plain']:5.1f} %CPU\n"
                  f"  LL-HLS:    ffmpeg transcoder (encode + FLV pipes)  {r['transcoder']:5.1f} %CPU"
                  f" + CMAF muxing in Python {r['muxing']:4.1f} %CPU ({r['parts']:.0f} parts)")
            return
        source = make_source(Path(tmp) / "lecture-720p30.flv", seconds=60)
        for ll in (False, True):
            r = run(source, ll, args.window)
            print(f"{'LL-HLS (transcoder + CMAF muxer)' if ll else 'plain HLS (ffmpeg segment muxer)':34s} "
                  f"ffmpeg {r['ffmpeg']:5.1f} %CPU, server tree {r['tree']:5.1f} %CPU, "
                  f"{r['segments']:.0f}/{r['expected']:.0f} segments in {args.window:g} s")


if __name__ == "__main__":
    main()
