"""One long-lived Vosk recognizer per stream, fed off the event loop through a bounded queue.

``StreamRecognizer`` is synchronous (it runs in a worker thread; Vosk releases the GIL) and
turns 16 kHz mono s16le PCM into final words and partial text on the media timeline.
``RecognitionStream`` is the asyncio shell: the captioner pushes PCM chunks without ever
waiting; when the recognizer falls behind, the oldest chunks are dropped and counted, so a
slow recognizer never stalls ingest or the web server. Each stream has at most one chunk in a
worker at a time, so its recognizer is never used by two threads at once.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import sys
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable

from .cues import Word, words_from_result
from .vosk_models import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["SAMPLE_RATE", "BYTES_PER_SECOND", "PcmChunk", "RecognitionUpdate", "StreamRecognizer", "RecognitionStream"]

SAMPLE_RATE = 16_000
BYTES_PER_SECOND = SAMPLE_RATE * 2
#: A 20 ms frame whose peak stays under this (about -36 dBFS) counts as a pause.
SILENCE_PEAK = 500


@dataclass(frozen=True)
class PcmChunk:
    """16 kHz mono s16le audio starting at ``media_start`` on the stream's timeline."""

    media_start: float
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


@dataclass
class RecognitionUpdate:
    """What one chunk (or a flush) produced."""

    finals: list[list[Word]] = field(default_factory=list)
    partial: list[Word] = field(default_factory=list)
    partial_changed: bool = False
    #: media time up to which audio was recognized
    processed_until: float = 0.0
    #: media time before which no result can change any more
    settled_until: float = 0.0
    cpu_seconds: float = 0.0
    audio_seconds: float = 0.0


class _TimeMap:
    """Recognizer seconds (audio fed so far) to media seconds, across dropped chunks and publishes."""

    def __init__(self) -> None:
        self.anchors: deque[tuple[float, float]] = deque(maxlen=512)
        self.fed = 0.0

    def note_chunk(self, media_start: float, seconds: float) -> None:
        if not self.anchors:
            self.anchors.append((self.fed, media_start))
        else:
            r, m = self.anchors[-1]
            if abs(media_start - (m + self.fed - r)) > 0.02:
                self.anchors.append((self.fed, media_start))
        self.fed += seconds

    def to_media(self, r: float) -> float:
        for ar, am in reversed(self.anchors):
            if ar <= r + 1e-9:
                return am + (r - ar)
        ar, am = self.anchors[0]
        return am + (r - ar)


class StreamRecognizer:
    """A ``KaldiRecognizer`` with word times mapped to media time. Not thread-safe: one caller at a time."""

    def __init__(self, model: LoadedModel, vocabulary: list[str] | None = None, endpoint_silence: float = 0.5) -> None:
        import vosk

        self.model = model
        #: trailing silence (after the last partial word) that ends an utterance
        self.endpoint_silence = endpoint_silence
        self.grammar: list[str] | None = None
        if vocabulary and model.supports_grammar:
            self.grammar = [*vocabulary, "[unk]"]
            self._rec = vosk.KaldiRecognizer(model.model, SAMPLE_RATE, json.dumps(self.grammar, ensure_ascii=False))
        else:
            self._rec = vosk.KaldiRecognizer(model.model, SAMPLE_RATE)
        self._rec.SetWords(True)
        self._rec.SetPartialWords(True)
        self._time = _TimeMap()
        self._silent_for = 0.0
        self._partial: list[Word] = []
        self._last_final_end = 0.0

    def feed(self, chunk: PcmChunk) -> RecognitionUpdate:
        started = time.thread_time()
        self._time.note_chunk(chunk.media_start, chunk.seconds)
        update = RecognitionUpdate(audio_seconds=chunk.seconds)
        if self._rec.AcceptWaveform(chunk.pcm):
            self._final(json.loads(self._rec.Result()), update)
        partial = words_from_result(json.loads(self._rec.PartialResult()), self._time.to_media)
        self._track_silence(chunk.pcm)
        if partial and self._silent_for >= self.endpoint_silence:
            # Our own endpoint on a quiet pause: Kaldi's rules wait 1-2 s; viewers want the cue sooner.
            # (Partial word times lag the audio by a second or more, so they cannot tell.) In a noisy
            # hall the pause is never quiet enough and Kaldi's own endpointing decides, only later.
            self._final(json.loads(self._rec.FinalResult()), update)
            partial = []
        update.partial_changed = [w.text for w in partial] != [w.text for w in self._partial]
        self._partial = partial
        update.partial = partial
        self._finish(update, started)
        return update

    def _track_silence(self, pcm: bytes) -> None:
        """Seconds of quiet audio at the end of what was fed (peak per 20 ms frame below ``SILENCE_PEAK``)."""
        samples = array.array("h")
        samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
        if sys.byteorder == "big":
            samples.byteswap()
        frame = SAMPLE_RATE // 50
        for start in range(0, len(samples), frame):
            part = samples[start: start + frame]
            if max(part) > SILENCE_PEAK or -min(part) > SILENCE_PEAK:
                self._silent_for = 0.0
            else:
                self._silent_for += len(part) / SAMPLE_RATE

    def flush(self) -> RecognitionUpdate:
        """End of a publish: finalize the utterance in progress."""
        started = time.thread_time()
        update = RecognitionUpdate()
        if self._time.anchors:
            self._final(json.loads(self._rec.FinalResult()), update)
        update.partial_changed = bool(self._partial)
        self._partial = []
        self._finish(update, started)
        return update

    def _final(self, result: dict[str, Any], update: RecognitionUpdate) -> None:
        words = words_from_result(result, self._time.to_media)
        if words:
            update.finals.append(words)
            self._last_final_end = max(self._last_final_end, words[-1].end)
        self._partial = []

    def _finish(self, update: RecognitionUpdate, started: float) -> None:
        processed = self._time.to_media(self._time.fed) if self._time.anchors else 0.0
        update.processed_until = processed
        update.settled_until = self._partial[0].start if self._partial else processed
        update.cpu_seconds = time.thread_time() - started


class _Flush:
    pass


_FLUSH = _Flush()


class RecognitionStream:
    """The asyncio side of one stream's recognizer: bounded queue, drop counter, worker hand-off."""

    def __init__(self, make_recognizer: Callable[[], StreamRecognizer], executor: Executor | None,
                 max_queue_seconds: float, on_update: Callable[[RecognitionUpdate], None],
                 on_failure: Callable[[str], None] | None = None, on_drop: Callable[[], None] = lambda: None) -> None:
        self._make = make_recognizer
        self._on_drop = on_drop
        self._executor = executor
        self.max_queue_seconds = max_queue_seconds
        self._on_update = on_update
        self._on_failure = on_failure
        self._queue: deque[PcmChunk | _Flush] = deque()
        self._queued_seconds = 0.0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.ready = False
        self.failed: str | None = None
        self.dropped_chunks = 0
        self.dropped_seconds = 0.0
        self.cpu_seconds = 0.0
        self.audio_seconds = 0.0
        self._recent: deque[tuple[float, float]] = deque(maxlen=40)
        self._task = asyncio.create_task(self._run(), name="caption-recognizer")

    @property
    def queued_seconds(self) -> float:
        return self._queued_seconds

    @property
    def real_time_factor(self) -> float | None:
        """CPU seconds per audio second over the last ~10 s of audio."""
        audio = sum(a for _, a in self._recent)
        return sum(c for c, _ in self._recent) / audio if audio > 0 else None

    def push(self, chunk: PcmChunk) -> None:
        """Queue audio; never waits. Past the bound the oldest audio is dropped (and counted)."""
        if self._closing or self.failed:
            return
        self._queue.append(chunk)
        self._queued_seconds += chunk.seconds
        while self._queued_seconds > self.max_queue_seconds:
            oldest = next((i for i, item in enumerate(self._queue) if isinstance(item, PcmChunk)), None)
            if oldest is None:
                break
            dropped = self._queue[oldest]
            del self._queue[oldest]
            assert isinstance(dropped, PcmChunk)
            self._queued_seconds -= dropped.seconds
            self.dropped_chunks += 1
            self.dropped_seconds += dropped.seconds
            self._on_drop()
        self._idle.clear()
        self._wakeup.set()

    def flush(self) -> None:
        """Finalize what was said so far (a publish ended)."""
        if self._closing or self.failed:
            return
        self._queue.append(_FLUSH)
        self._idle.clear()
        self._wakeup.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued was recognized; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        self._closing = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            recognizer = await loop.run_in_executor(self._executor, self._make)
        except Exception as exc:
            self.failed = str(exc) or type(exc).__name__
            self._queue.clear()
            self._idle.set()
            if self._on_failure is not None:
                self._on_failure(self.failed)
            return
        self.ready = True
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._queue.popleft()
            if isinstance(item, PcmChunk):
                self._queued_seconds -= item.seconds
                work: Callable[[], RecognitionUpdate] = lambda item=item: recognizer.feed(item)  # type: ignore[misc]
            else:
                work = recognizer.flush
            try:
                update = await loop.run_in_executor(self._executor, work)
            except Exception:
                log.exception("captions: recognizer failed on a chunk; skipping it")
                continue
            self.cpu_seconds += update.cpu_seconds
            self.audio_seconds += update.audio_seconds
            if update.audio_seconds:
                self._recent.append((update.cpu_seconds, update.audio_seconds))
            try:
                self._on_update(update)
            except Exception:
                log.exception("captions: handling recognition results failed")
