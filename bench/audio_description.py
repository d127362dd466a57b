"""Audio description: how long making a recording's described sound takes, per media second.

A recording made as the importer makes one (640x360 H.264 test pattern + AAC tone, 4 s MPEG-TS HLS
segments, ``--seconds`` long) gets one English description every ``--every`` seconds (a sentence of
about 3 s), made exactly as the server's job makes it: each cue spoken by espeak-ng
(``speech_args``), placed (``place``) into one WAV (``write_speech_track``), then one ffmpeg run
(``mix_args``: ducking, AAC, cut at the video segments' boundaries), both at niceness 10. Reported per
run: the speech stage, the mix-and-cut stage, and wall seconds per media second; medians of ``--runs``.

Run: ``.venv/bin/python -m bench.audio_description [--seconds 600] [--every 10] [--runs 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
import wave
from pathlib import Path

from bench.harness import ffmpeg_path, median
from formats.m3u8 import parse_media_playlist
from formats.webvtt import Cue
from vod.audio_description import boundaries, mix_args, place, speech_args
from vod.audio_descriptions import SPEECH_LEAD, renice, probe_programme, write_speech_track
from vod.tools import run_ffmpeg

TEXT = "Slide {n}: a diagram of the cell, with the nucleus on the left."


def make_recording(folder: Path, seconds: int) -> list[Path]:
    ffmpeg = ffmpeg_path()
    source = folder / "source.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=6000:sample_rate=48000,volume=0.5", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "100", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
                    str(source)], check=True)
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy", "-f", "hls",
                    "-hls_time", "4", "-hls_playlist_type", "vod", "-hls_list_size", "0",
                    "-hls_segment_filename", str(folder / "seg_%06d.ts"), str(folder / "import.m3u8")], check=True)
    return [folder / s.uri for s in parse_media_playlist((folder / "import.m3u8").read_text()).playlist.segments]


async def one_run(folder: Path, segments: list[Path], durations: list[float], every: float) -> tuple[float, float, float]:
    work = folder / "work"
    work.mkdir(exist_ok=True)
    for old in work.iterdir():
        old.unlink()
    total = sum(durations)
    cues = [Cue(every * (i + 1), every * (i + 1) + 3, TEXT.format(n=i + 1)) for i in range(int(total // every) - 1)]
    started = time.monotonic()
    clips, said = [], []
    for index, cue in enumerate(cues):
        clip = work / f"cue-{index:05d}.wav"
        proc = await asyncio.create_subprocess_exec(*speech_args("espeak-ng", "en", clip), stdin=asyncio.subprocess.PIPE)
        renice(proc.pid, 10)
        await proc.communicate(cue.text.encode())
        with wave.open(str(clip)) as speech:
            said.append(speech.getnframes() / speech.getframerate())
        clips.append(clip)
    placed = place([c.start for c in cues], said)
    write_speech_track(work / "speech.wav", clips, [p.start for p in placed], total)
    spoken = time.monotonic()
    programme = probe_programme(segments[0])
    args = mix_args(ffmpeg_path(), segments, work / "speech.wav", SPEECH_LEAD - programme.lead, programme.lead + total,
                    programme.start, boundaries(durations, programme.lead), programme.sample_rate, programme.channels,
                    work / "run0-%06d.ts")
    await run_ffmpeg(args, 3600, started=lambda pid: renice(pid, 10))
    done = time.monotonic()
    made = len(list(work.glob("run0-*.ts")))
    assert made == len(segments), f"{made} audio segments for {len(segments)} video segments"
    return spoken - started, done - spoken, (done - started) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        segments = make_recording(folder, args.seconds)
        durations = [s.duration for s in parse_media_playlist((folder / "import.m3u8").read_text()).playlist.segments]
        results = []
        for run in range(args.runs):
            speech, mix, factor = asyncio.run(one_run(folder, segments, durations, args.every))
            print(f"run {run + 1}: speech {speech:.1f} s, mix and cut {mix:.1f} s, {factor:.3f} wall s per media s")
            results.append((speech, mix, factor))
        print(f"median of {args.runs}: speech {median([r[0] for r in results]):.1f} s, "
              f"mix and cut {median([r[1] for r in results]):.1f} s, {median([r[2] for r in results]):.3f} wall s per media s "
              f"({args.seconds} s recording, {len(segments)} segments, a description every {args.every:g} s)")


if __name__ == "__main__":
    main()
