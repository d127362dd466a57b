"""A small per-publish ffmpeg that turns the publisher's FLV audio tags into 16 kHz mono PCM.

Kept apart from the packager's ffmpeg so captions can never disturb packaging. One process per
publish (FLV timestamps restart with each publish). ``aresample=async`` pads gaps and trims
overlaps, so sample ``n`` of the output is FLV time ``first audio tag + n / 16000`` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Callable

from formats.flv import flv_header, flv_tag

from .recognizer import SAMPLE_RATE

log = logging.getLogger(__name__)

__all__ = ["AudioDecoder", "decoder_args", "recording_decoder_args"]

AUDIO_TAG = 8


def decoder_args(ffmpeg: str) -> list[str]:
    """FLV (audio only) on stdin → s16le 16 kHz mono on stdout, with as little buffering as ffmpeg allows.

    Captions lag the speaker by whatever ffmpeg holds back, so every input and output buffer is
    turned down; the resampler keeps the sample count tied to FLV time (see the module docstring).
    """
    return [
        # -nostdin stops ffmpeg reading keyboard commands from stdin; it still reads the media from pipe:0.
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        # Start decoding at the first tags: no input buffering, and the smallest probe ffmpeg accepts
        # (the FLV header says audio only and the AAC sequence header comes first, so nothing is missed).
        "-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
        "-f", "flv", "-i", "pipe:0",
        # async=1000: pad gaps with silence and trim overlaps by the timestamps (stretching up to 1000
        # samples a second for small drift), so output sample n is FLV time first tag + n / 16000 s.
        "-vn", "-af", "aresample=async=1000", "-ac", "1", "-ar", str(SAMPLE_RATE),
        # Write each packet to the pipe at once rather than when ffmpeg's 32 KiB (1 s) output buffer fills.
        "-f", "s16le", "-flush_packets", "1", "pipe:1",
    ]


def recording_decoder_args(ffmpeg: str, playlist: str) -> list[str]:
    """A recording's HLS playlist (local files only) → its first audio track as s16le 16 kHz mono on stdout.

    For transcribing a finished recording: no low-latency flags (throughput matters, not delay) and no
    ``aresample=async``: a recording's timeline is the sum of its segment durations, which the decoded
    samples follow one after the other, whereas its timestamps restart at every reconnect. A recording
    without sound fails on ``-map 0:a:0`` with a reason ffmpeg states.
    """
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        # The playlist is ours, but it is still read as HLS only and may only open local files.
        "-protocol_whitelist", "file", "-f", "hls", "-i", playlist,
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-f", "s16le", "pipe:1",
    ]


class AudioDecoder:
    """Feeds FLV audio tags to ffmpeg and hands back PCM with its sample offset; never blocks the caller."""

    def __init__(self, ffmpeg: str, on_pcm: Callable[[int, bytes], None], chunk_bytes: int = 8000,
                 max_queued_bytes: int = 1024 * 1024, on_drop: Callable[[], None] = lambda: None) -> None:
        self._ffmpeg = ffmpeg
        self._on_drop = on_drop
        self._on_pcm = on_pcm
        self._chunk_bytes = chunk_bytes
        self._max_queued = max_queued_bytes
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.first_timestamp_ms: int | None = None
        self.samples_out = 0
        self.dropped_tags = 0
        self.stderr_tail: deque[str] = deque(maxlen=10)

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *decoder_args(self._ffmpeg), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self._queue.appendleft(flv_header(True, False))
        self._queued += 13
        self._tasks = [
            asyncio.create_task(self._write(), name="caption-decoder-in"),
            asyncio.create_task(self._read(), name="caption-decoder-out"),
            asyncio.create_task(self._stderr(), name="caption-decoder-err"),
        ]

    def push(self, timestamp_ms: int, payload: bytes, sequence_header: bool) -> None:
        """One FLV audio tag body."""
        if self._closing:
            return
        if not sequence_header and self.first_timestamp_ms is None:
            self.first_timestamp_ms = timestamp_ms
        data = flv_tag(AUDIO_TAG, timestamp_ms, payload)
        if self._queued + len(data) > self._max_queued and not sequence_header:
            self.dropped_tags += 1
            self._on_drop()
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wakeup.set()

    async def close(self, timeout: float = 5.0) -> None:
        """End of input: let ffmpeg flush its last PCM, then stop."""
        self._closing = True
        self._wakeup.set()
        proc = self._proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("captions: audio decoder did not stop in time; killing it")
        finally:
            with contextlib.suppress(ProcessLookupError):
                if proc.returncode is None:
                    proc.kill()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await proc.wait()

    async def _write(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        stdin = self._proc.stdin
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("captions: audio decoder exited early: %s", " | ".join(self.stderr_tail))
            return
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        pending = b""
        while True:
            data = await stdout.read(self._chunk_bytes)
            if not data:
                break
            pending += data
            usable = len(pending) - len(pending) % 2
            # Hand out whole chunks; a short tail waits for more (or for the end).
            while usable >= self._chunk_bytes:
                self._emit(pending[: self._chunk_bytes])
                pending = pending[self._chunk_bytes:]
                usable -= self._chunk_bytes
        if len(pending) >= 2:
            self._emit(pending[: len(pending) - len(pending) % 2])

    def _emit(self, pcm: bytes) -> None:
        offset = self.samples_out
        self.samples_out += len(pcm) // 2
        try:
            self._on_pcm(offset, pcm)
        except Exception:
            log.exception("captions: PCM consumer failed")

    async def _stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self.stderr_tail.append(line)
                log.debug("captions decoder: %s", line)
