"""Transcribe one finished recording: its audio decoded by ffmpeg, recognized by Vosk, shaped into cues.

Blocking code for a worker thread of ``captions.transcription`` (Vosk releases the GIL, ffmpeg is a
child process). It reuses what live captions use: the ``StreamRecognizer`` (Vosk, word times),
``shape_cues`` (subtitle rules) and the decoder's argument builder. It yields to live captions: the
thread and its ffmpeg run at a lower priority (``lower_priority``), and the loop pauses while
``Control.live_behind`` says a live caption stream is behind.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable

from .cues import Cue, CueRules, Word, shape_cues
from .recognizer import BYTES_PER_SECOND, PcmChunk, RecognitionUpdate, StreamRecognizer

__all__ = ["Control", "Transcript", "TranscriptionFailed", "TranscriptionStopped", "lower_priority", "transcribe"]

#: How long the loop sleeps while live captions are behind, before it looks again.
YIELD_SLEEP = 0.2


class TranscriptionFailed(Exception):
    """The recording cannot be transcribed (no sound, unreadable media); the message is for its owner."""


class TranscriptionStopped(Exception):
    """The job was cancelled, or the server is stopping."""


@dataclass
class Control:
    """What the asyncio side and the worker thread share: progress out, stop and live pressure in."""

    stop: threading.Event = field(default_factory=threading.Event)
    live_behind: Callable[[], bool] = lambda: False
    #: media seconds decoded and recognized so far (written by the worker thread only)
    progress_seconds: float = 0.0
    #: seconds spent paused for live captions
    yielded_seconds: float = 0.0


@dataclass(frozen=True)
class Transcript:
    cues: list[Cue]
    audio_seconds: float
    cpu_seconds: float
    wall_seconds: float

    @property
    def real_time_factor(self) -> float | None:
        """Wall seconds per media second (below 1: faster than the recording plays)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else None


def lower_priority(niceness: int) -> None:
    """Make the calling thread (Linux niceness is per thread) at least this nice; never raises it back."""
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if niceness > current:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError:
        pass


def _renice(pid: int, niceness: int) -> None:
    try:
        if niceness > os.getpriority(os.PRIO_PROCESS, pid):
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError:  # the process is already gone
        pass


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    lines = [line.strip() for line in stderr.read()[-4000:].decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-3:])


def transcribe(args: list[str], make_recognizer: Callable[[], StreamRecognizer], control: Control,
               chunk_seconds: float = 1.0, niceness: int = 10, rules: CueRules = CueRules()) -> Transcript:
    """Run ffmpeg (``args`` write s16le 16 kHz mono to stdout) and Vosk over the whole recording.

    Raises :class:`TranscriptionStopped` when ``control.stop`` is set, and :class:`TranscriptionFailed`
    when ffmpeg fails or decodes no sound.
    """
    recognizer = make_recognizer()  # the model loads once per process: not counted in the real-time factor
    started, cpu_started = time.monotonic(), time.thread_time()
    words: list[Word] = []
    chunk_bytes = max(2, int(BYTES_PER_SECOND * chunk_seconds) // 2 * 2)
    offset = 0.0
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        _renice(proc.pid, niceness)
        assert proc.stdout is not None
        try:
            while True:
                while control.live_behind() and not control.stop.is_set():
                    time.sleep(YIELD_SLEEP)
                    control.yielded_seconds += YIELD_SLEEP
                if control.stop.is_set():
                    raise TranscriptionStopped()
                pcm = proc.stdout.read(chunk_bytes)
                if not pcm:
                    break
                pcm = pcm[: len(pcm) - len(pcm) % 2]
                chunk = PcmChunk(offset, pcm)
                _collect(recognizer.feed(chunk), words)
                offset += chunk.seconds
                control.progress_seconds = offset
            _collect(recognizer.flush(), words)
            code = proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if code != 0:
            raise TranscriptionFailed(f"ffmpeg could not decode the recording's sound: {_tail(stderr) or f'exit code {code}'}")
    if offset <= 0:
        raise TranscriptionFailed("the recording has no sound to transcribe")
    return Transcript(shape_cues(words, rules), round(offset, 3), time.thread_time() - cpu_started,
                      time.monotonic() - started - control.yielded_seconds)


def _collect(update: RecognitionUpdate, words: list[Word]) -> None:
    for final in update.finals:
        words.extend(final)
