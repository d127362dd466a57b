"""The LL-HLS transcoder: one supervised ffmpeg per event session, the event's FLV in, each ABR
rendition's FLV (H.264 + AAC) out on its own pipe, read back as tags for our CMAF muxer.

ffmpeg only encodes here (``ffmpeg_args.build_transcoder_args``); the packaging (parts, segments,
playlists) is ``ll_ladder``'s, fed by the caller's ``on_tag``. The process is run by the same
``supervisor.Supervisor`` as the plain-HLS packager's (``packager.py``): ffmpeg starts at a session's
first media frame; the bounded ``FlvFeed`` stands between the publisher and its stdin; a process that
dies mid-session is restarted (back-off, ``max_restarts_per_minute``), resuming at the next keyframe,
and the caller is told (``on_restart``: a discontinuity in every rendition); one that was fed media and
has output nothing for ``hung_after`` seconds is killed, then restarted the same way. Only this event
is affected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from formats.flv import TAG_AUDIO, TAG_VIDEO, FlvTagReader, is_sequence_header

from .feed import FlvFeed
from .ffmpeg_args import build_transcoder_args, encoded_renditions
from .options import PackagerOptions, chosen_for_source, ladder_wait_seconds
from .supervisor import FfmpegRun, Supervised, Supervisor, spawn_ffmpeg

__all__ = ["Transcoder"]

log = logging.getLogger(__name__)

_KINDS = {TAG_AUDIO: "audio", TAG_VIDEO: "video"}
#: Output may trail input by this much before the watchdog and the health call it overdue:
#: ffmpeg probes up to ``analyzeduration`` (1 s) of media before its first frame.
OUTPUT_SLACK_SECONDS = 1.0


class _Output(asyncio.Protocol):
    """One rendition's pipe: FLV bytes in, tags out to the transcoder (on the loop)."""

    def __init__(self, name: str, on_tags: Callable[[str, list[tuple[int, int, bytes]]], None]) -> None:
        self.name = name
        self._reader = FlvTagReader()
        self._on_tags = on_tags
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            tags = self._reader.feed(data)
        except ValueError as exc:
            self.error = str(exc)
            return
        if tags:
            try:
                self._on_tags(self.name, tags)
            except Exception:  # never let one bad tag stop this pipe's reading (ffmpeg would block on it)
                log.exception("%s: muxing a transcoded tag failed", self.name)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run(FfmpegRun):
    def __init__(self, proc: asyncio.subprocess.Process, outputs: list[_Output],
                 transports: Sequence[asyncio.BaseTransport], stderr_lines: int) -> None:
        super().__init__(proc, transports, stderr_lines)
        self.outputs = outputs
        self.readers += [output.closed for output in outputs]
        self.owed_since: float | None = None  # monotonic: input written and no output read since


class Transcoder(Supervised):
    """Encodes one event's ABR ladder with ffmpeg; each output tag goes to ``on_tag(rendition, kind, ms, body)``."""

    def __init__(self, ffmpeg: str, options: PackagerOptions, label: Path | str, *,
                 on_tag: Callable[[str, str, int, bytes], None],
                 on_restart: Callable[[], None] = lambda: None,
                 on_failed: Callable[[str], None] = lambda reason: None,
                 on_drop: Callable[[], None] = lambda: None,
                 on_ladder: Callable[[PackagerOptions], None] = lambda options: None) -> None:
        if options.passthrough:
            raise ValueError("the transcoder encodes ABR ladders only")
        self._on_ladder = on_ladder
        #: Whether the rungs were chosen for the source (at the first start; kept for this transcoder's life).
        self.ladder_chosen = False
        self._ffmpeg = ffmpeg
        self.options = options
        self._label = str(label)
        self._on_tag = on_tag
        self._on_failed = on_failed
        self._feed = FlvFeed(options.queue_max_bytes, on_drop)
        self._process: Supervisor[_Run] = Supervisor(
            options, self._feed, self._label, name="the transcoder", hang_note="no output for",
            launch=self._spawn, overdue_since=lambda run: run.owed_since, on_restart=on_restart,
            on_failed=self._fail, before_write=_owe_output, on_ended=_note_output_errors, hold=self._ladder_wait)
        self.tags_out = 0
        self.failed_reason: str | None = None
        #: Whether the running (or last) ffmpeg encodes audio; None before its first start this session.
        self.encodes_audio: bool | None = None

    # -- what the packager reads ------------------------------------------------------------
    @property
    def tallest_height(self) -> int | None:
        """The tallest picture this session's publisher has sent so far (what the rungs are chosen for)."""
        return self._feed.tallest_height

    @property
    def overdue_seconds(self) -> float:
        """How long media written to ffmpeg has gone without any output, past the slack (0: none)."""
        run = self._process.running
        if run is None or run.owed_since is None:
            return 0.0
        return max(0.0, time.monotonic() - run.owed_since - OUTPUT_SLACK_SECONDS)

    # -- input (never blocks) ------------------------------------------------------------------
    def on_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._feed.set_metadata(metadata)
        self._process.wake()

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        self._feed.push(kind, timestamp_ms, payload, time.time())
        if is_sequence_header(kind, payload):
            # Not media yet: ffmpeg starts at the first frame, when the picture's size is known (a WHIP
            # session sends its AAC configuration before the first video keyframe and its header).
            self._process.wake()
        else:
            self._process.media_arrived()

    # -- lifecycle ---------------------------------------------------------------------------
    def begin(self) -> None:
        """A publish session starts: ffmpeg will start at its first media frame."""
        self._feed.reset()
        self.failed_reason = None
        self.encodes_audio = None
        self._process.begin(f"transcoder {self._label}")

    async def stop(self) -> None:
        """The session ends: ffmpeg gets what was queued, then EOF; its last frames come out before this
        returns (killed after ``stop_timeout_seconds``)."""
        await self._process.stop()

    async def close(self) -> None:
        """Hard stop (server shutdown)."""
        await self._process.close()

    # -- the supervised ffmpeg -----------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        self.failed_reason = reason
        log.error("%s: transcoder failed: %s", self._label, reason)
        self._on_failed(reason)

    def _ladder_wait(self, waited: float) -> float:
        """How much longer the first start waits for a taller picture (``options.ladder_wait_seconds``)."""
        return 0.0 if self.ladder_chosen else ladder_wait_seconds(self.options, self._feed.tallest_height, waited)

    def _choose_ladder(self) -> None:
        """At the first start: keep only the rungs no taller than the tallest picture the source has sent
        (``ladder_for_source``; a WHIP publisher's is waited for: :meth:`_ladder_wait`), for good. A
        restart after a crash, or a later session with another picture size, gets the same renditions
        (scaled up or down), so the master and the renditions' playlists stay the same ones; ``on_ladder``
        is told first."""
        if self.ladder_chosen:
            return
        self.ladder_chosen = True
        self.options = chosen_for_source(self.options, self._feed.tallest_height, self._label)
        self._on_ladder(self.options)

    async def _spawn(self, resync: bool) -> _Run:
        """Start one ffmpeg, each rendition's FLV on its own pipe; a publisher without audio (as far as
        its onMetaData and headers tell at its first frame) gets no audio-only rendition. The rungs are
        chosen at the first start (:meth:`_choose_ladder`)."""
        self._choose_ladder()
        has_audio = self._feed.has_audio
        self.encodes_audio = has_audio
        renditions = encoded_renditions(self.options, has_audio)
        outputs = [_Output(rendition.name, self._tags_out) for rendition in renditions]
        proc, transports = await spawn_ffmpeg(
            lambda fds: build_transcoder_args(self._ffmpeg, self.options, fds, has_audio), outputs, self._label)
        return _Run(proc, outputs, transports, self.options.stderr_lines_kept)

    def _tags_out(self, name: str, tags: list[tuple[int, int, bytes]]) -> None:
        run = self._process.run
        if run is not None:
            run.owed_since = None
        for tag_type, timestamp_ms, payload in tags:
            kind = _KINDS.get(tag_type)
            if kind is None:
                continue  # onMetaData: what the master says comes from the sequence headers
            self.tags_out += 1
            self._on_tag(name, kind, timestamp_ms, payload)


def _owe_output(run: _Run) -> None:
    """Media is being written: output is owed from now unless some is already owed."""
    if run.owed_since is None:
        run.owed_since = time.monotonic()


def _note_output_errors(run: _Run) -> None:
    """An output that could not be read says so in the tail the supervisor logs."""
    for output in run.outputs:
        if output.error is not None:
            run.stderr_tail.append(f"{output.name}: {output.error}")
