"""Live captions: the asyncio shell that taps each live event's audio and publishes its captions.

``LiveCaptions`` plugs into ``LiveStreams`` twice: as a media tap (publish start/end, every FLV
tag, run end) and as a segment observer (every listed segment). For each live run whose event
has a caption language with a configured model, an ``EventCaptioner`` decodes the audio to
16 kHz PCM (``decoder``), recognizes it off the event loop (``recognizer``), shapes cues
(``cues``) on the HLS timeline (``timeline``) and sends them three ways:

- to viewers, live, through every ``CaptionSink`` (Socket.IO ``caption`` events);
- into the HLS master playlist as a WebVTT subtitle rendition (``track``);
- into the catalog as ``CaptionSegment`` rows, in batches, complete when the run ends.

No model for the language: captions are off for that run, said once in the log and in the
owner's stream health; nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from formats.cmaf import fragment_start_90khz
from formats.flv import is_sequence_header
from formats.m3u8 import Segment, SubtitleRendition
from ingest.live_run import LiveRun
from live_server.db import Database
from live_server.languages import own_name
from live_server.metrics import Metrics
from live_server.models import CaptionSegment, Event
from live_server.settings import Settings

from .cues import Cue, CueRules, Word, shape_cues, wrap_lines
from .decoder import AudioDecoder
from .vosk_models import LoadedModel, ModelRegistry, ModelUnavailable
from .recognizer import BYTES_PER_SECOND, SAMPLE_RATE, PcmChunk, RecognitionStream, RecognitionUpdate, StreamRecognizer
from .timeline import MediaClock, first_pts
from .track import LIVE_PLAYLIST, SubtitleTrack


log = logging.getLogger(__name__)

__all__ = ["CaptionSink", "LiveCaptions", "EventCaptioner", "caption_payload", "parse_vocabulary"]

#: Folder of the subtitle rendition inside a run folder (next to the video renditions).
SUBTITLES_FOLDER = "subtitles"


class CaptionSink(Protocol):
    """Where live caption events go (the Socket.IO server wires one in ``app.py``)."""

    async def send_caption(self, event_id: int, caption: dict[str, Any]) -> None: ...


def caption_payload(start: float, end: float, text: str, final: bool, language: str,
                    wall_start: float | None) -> dict[str, Any]:
    """A ``caption`` event: times are media seconds on the HLS timeline (the recording's time);
    ``program_date_time`` (ms since the epoch) lets a player on a sliding window place it too."""
    return {
        "start": round(start, 3),
        "end": round(end, 3),
        "text": text,
        "final": final,
        "language": language,
        "program_date_time": None if wall_start is None else int(wall_start * 1000),
    }


def parse_vocabulary(text: str) -> list[str]:
    """One term per line or comma; words of multi-word terms count separately (Vosk grammars are words)."""
    words: list[str] = []
    for term in re.split(r"[\n,;]", text or ""):
        for word in term.strip().lower().split():
            if word and word not in words:
                words.append(word)
    return words


@dataclass
class _EventInfo:
    language: str | None
    vocabulary: list[str]


def _event_info(session: Session, event_id: int) -> _EventInfo:
    event = session.get(Event, event_id)
    if event is None:
        return _EventInfo(None, [])
    return _EventInfo(event.caption_language, parse_vocabulary(event.caption_vocabulary or ""))


def _store_cues(session: Session, event_id: int, language: str, cues: list[Cue]) -> None:
    session.add_all(
        CaptionSegment(event_id=event_id, language=language, start_seconds=c.start, end_seconds=c.end, text=c.text)
        for c in cues
    )


# What hls.js (and Apple's players) need to list a track as captions, not subtitles: same-language text
# for viewers who cannot hear the sound (RFC 8216 4.3.4.1, Apple HLS authoring spec).
CAPTION_CHARACTERISTICS = "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"


def _read_head(path: Path, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


class EventCaptioner:
    """Captions of one live run of one event."""

    def __init__(self, owner: "LiveCaptions", live: LiveRun, language: str, vocabulary: list[str]) -> None:
        settings = owner.settings
        self.owner = owner
        self.run = live
        self.event_id = live.event_id
        self.language = language
        self.vocabulary = vocabulary
        self.rules = CueRules()
        self.clock = MediaClock()
        for segment in live.media.playlist_segments(self.reference):  # recovered after a restart
            self.clock.segment_listed(segment.duration, None)
        self.track = SubtitleTrack(
            live.folder / SUBTITLES_FOLDER / language, live.options.window_segments, live.options.dvr,
            int(max(1, round(live.options.segment_seconds))), settings.caption_max_lag_seconds,
        )
        self.state = "loading"
        self.message = f"loading the {language} model"
        self.vocabulary_note: str | None = None
        self.decoder: AudioDecoder | None = None
        self._first_audio_media: float | None = None
        self._publish_open = False
        self._last_cue_end = 0.0
        self._last_partial = ""
        self._unsaved: list[Cue] = []
        self.cue_count = 0
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.dropped_events = 0
        self._segment_jobs: asyncio.Queue[tuple[Segment, float, float] | None] = asyncio.Queue()
        self._inits: dict[str, bytes] = {}  # fMP4 init sections of the run, read once each (timescales)
        self._tasks: list[asyncio.Task[None]] = []
        self.recognition = RecognitionStream(
            self._make_recognizer, owner.executor, settings.caption_queue_seconds, self._on_update, self._on_failure,
            owner.recognizer_dropped,
        )
        self.track.start()
        live.media.set_subtitles([SubtitleRendition(
            name=own_name(language), language=language, uri=f"{SUBTITLES_FOLDER}/{language}/{LIVE_PLAYLIST}",
            default=False, autoselect=True, characteristics=CAPTION_CHARACTERISTICS,
        )])
        self._settled: float | None = None
        self._segment_task = asyncio.create_task(self._segment_loop(), name=f"captions-segments-{self.event_id}")
        self._tasks = [
            asyncio.create_task(self._send_loop(), name=f"captions-send-{self.event_id}"),
            self._segment_task,
            asyncio.create_task(self._save_loop(), name=f"captions-save-{self.event_id}"),
        ]

    # -- recognizer (worker thread) ---------------------------------------------------
    def _make_recognizer(self) -> StreamRecognizer:
        model: LoadedModel = self.owner.registry.get(self.language)
        vocabulary = None
        if self.vocabulary:
            if model.supports_grammar:
                known, unknown = model.known_words(self.vocabulary)
                vocabulary = known or None
                self.vocabulary_note = f"{len(known)} vocabulary words used as the recognition grammar" + (
                    f"; not in the model: {', '.join(unknown[:10])}" if unknown else "")
            else:
                self.vocabulary_note = "this model has no run-time grammar; vocabulary ignored"
        recognizer = StreamRecognizer(model, vocabulary, self.owner.settings.caption_pause_seconds)
        self.state, self.message = "on", f"captioning in {self.language}"
        return recognizer

    def _on_failure(self, reason: str) -> None:
        self.state, self.message = "unavailable", reason
        log.error("event %s: captions off: %s", self.event_id, reason)
        self.run.media.set_subtitles([])

    # -- media tap ------------------------------------------------------------------------
    async def publish_started(self) -> None:
        if self.decoder is not None:
            await self._end_publish()
        self._publish_open = True
        self._first_audio_media = None
        holder: list[AudioDecoder] = []
        decoder = AudioDecoder(self.owner.ffmpeg, lambda offset, pcm: self._on_pcm(holder[0], offset, pcm),
                               chunk_bytes=int(BYTES_PER_SECOND * self.owner.settings.caption_chunk_seconds),
                               on_drop=self.owner.decoder_dropped)
        holder.append(decoder)
        self.decoder = decoder
        try:
            await decoder.start()
        except OSError as exc:
            self.decoder = None
            self.state, self.message = "failed", f"cannot start the audio decoder: {exc}"
            log.error("event %s: %s", self.event_id, self.message)

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        if not self._publish_open:
            return
        header = is_sequence_header(kind, payload)
        if not self.clock.publishing and not header:
            self.clock.publish_started(timestamp_ms, time.time())
        if kind == "audio" and self.decoder is not None:
            self.decoder.push(timestamp_ms, payload, header)

    async def publish_ended(self) -> None:
        self._publish_open = False
        await self._end_publish()

    async def _end_publish(self) -> None:
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            await decoder.close()
        self.recognition.flush()
        self.clock.publish_ended()

    def _on_pcm(self, decoder: AudioDecoder, sample_offset: int, pcm: bytes) -> None:
        if decoder.first_timestamp_ms is None or not self.clock.publishing:
            return
        flv_ms = decoder.first_timestamp_ms + sample_offset * 1000 / SAMPLE_RATE
        self.recognition.push(PcmChunk(self.clock.media_of(flv_ms), pcm))

    # -- segments -------------------------------------------------------------------------
    @property
    def reference(self) -> str:
        """The rendition cues are timed on: the packager's reference, the first rung it encodes (an ABR
        event skips the rungs taller than its source, chosen once media flows: asked, not remembered)."""
        return self.run.media.reference_rendition()

    def on_segment(self, rendition: str, segment: Segment) -> None:
        if rendition != self.reference:
            return
        start, end = self.clock.segment_listed(segment.duration, segment.program_date_time)
        self._segment_jobs.put_nowait((segment, start, end))

    async def _segment_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._segment_jobs.get()
            if job is None:
                return
            segment, start, end = job
            folder = self.run.folder / self.reference
            head = await loop.run_in_executor(None, _read_head, folder / segment.uri)
            if segment.map_uri is None:  # MPEG-TS: the segment's first PTS
                start_90khz = first_pts(head)
            else:  # fMP4 (LL-HLS): its first tfdt, in the timescale its init section declares
                init = self._inits.get(segment.map_uri)
                if init is None:
                    init = self._inits[segment.map_uri] = await loop.run_in_executor(
                        None, _read_head, folder / segment.map_uri)
                start_90khz = fragment_start_90khz(init, head)
            name = os.path.splitext(segment.uri)[0] + ".vtt"
            self.track.video_segment(segment.sequence, name, start, end, segment.discontinuity,
                                     segment.program_date_time, start_90khz,
                                     self.run.media.target_duration(self.reference))
            self._advance_track(None)

    def _advance_track(self, settled: float | None) -> None:
        if settled is None:
            settled = self._settled
        try:
            self.track.advance(settled)
        except OSError as exc:
            log.warning("event %s: cannot write subtitles: %s", self.event_id, exc)

    # -- results ----------------------------------------------------------------------------
    def _on_update(self, update: RecognitionUpdate) -> None:
        metrics = self.owner.metrics
        now_wall = time.time()
        for words in update.finals:
            cues = shape_cues(words, self.rules)
            for cue in cues:
                if cue.start < self._last_cue_end:
                    cue = Cue(self._last_cue_end, max(cue.end, self._last_cue_end + 0.001), cue.lines)
                self._last_cue_end = cue.end
                self.track.add_cue(cue)
                self._unsaved.append(cue)
                self.cue_count += 1
                self._send(caption_payload(cue.start, cue.end, cue.text, True, self.language,
                                           self.clock.wall_of_media(cue.start)))
            spoken_end = self.clock.wall_of_media(words[-1].end)
            if spoken_end is not None:
                metrics.caption_delay.observe(max(0.0, now_wall - spoken_end))
        if update.partial_changed:
            text = "\n".join(wrap_lines([w.text for w in update.partial], self.rules.max_line_chars)[-self.rules.max_lines:])
            if text != self._last_partial:
                self._last_partial = text
                if update.partial:
                    start, end = update.partial[0].start, update.partial[-1].end
                else:
                    start = end = update.processed_until
                self._send(caption_payload(start, end, text, False, self.language, self.clock.wall_of_media(start)))
        self._settled = update.settled_until
        self._advance_track(update.settled_until)
        rtf = self.recognition.real_time_factor
        if rtf is not None:
            metrics.caption_rtf.labels(str(self.event_id)).set(round(rtf, 4))

    def _send(self, payload: dict[str, Any]) -> None:
        if not self.owner.sinks:
            return
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped_events += 1

    async def _send_loop(self) -> None:
        while True:
            payload = await self._outbox.get()
            for sink in list(self.owner.sinks):
                try:
                    await sink.send_caption(self.event_id, payload)
                except Exception:
                    log.exception("event %s: caption sink %r failed", self.event_id, sink)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.owner.settings.caption_save_seconds)
            await self.save()

    async def save(self) -> None:
        """Write the cues not yet in the catalog, in one transaction."""
        batch, self._unsaved = self._unsaved, []
        if not batch:
            return
        try:
            await self.owner.db.run(lambda s: _store_cues(s, self.event_id, self.language, batch))
        except Exception:
            log.exception("event %s: could not store %d caption cues; will retry", self.event_id, len(batch))
            self._unsaved = batch + self._unsaved

    # -- end --------------------------------------------------------------------------------
    async def finish(self, timeout: float) -> None:
        """The run ended: recognize what is left, complete the subtitle track and the catalog."""
        self._publish_open = False
        await self._end_publish()
        if not await self.recognition.drain(timeout):
            log.warning("event %s: captions still %.1f s behind at the end; the rest is dropped",
                        self.event_id, self.recognition.queued_seconds)
        self._segment_jobs.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._segment_task), timeout)
        except asyncio.TimeoutError:
            pass
        await self.recognition.close()
        try:
            self.track.end()
        except OSError as exc:
            log.warning("event %s: cannot finish subtitles: %s", self.event_id, exc)
        # Let queued live events out, then stop the loops.
        deadline = time.monotonic() + 2.0
        while not self._outbox.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.save()
        self.state = "ended"
        _remove_label(self.owner.metrics.caption_rtf, str(self.event_id))

    def health(self) -> dict[str, Any]:
        rtf = self.recognition.real_time_factor
        data: dict[str, Any] = {
            "state": self.state,
            "language": self.language,
            "message": self.message,
            "cues": self.cue_count,
            "real_time_factor": None if rtf is None else round(rtf, 3),
            "dropped_chunks": self.recognition.dropped_chunks,
            "queued_seconds": round(self.recognition.queued_seconds, 2),
            "subtitle_segments": self.track.segments_written,
        }
        if self.vocabulary_note:
            data["vocabulary"] = self.vocabulary_note
        return data


def _remove_label(metric: Any, label: str) -> None:
    try:
        metric.remove(label)
    except KeyError:
        pass


class LiveCaptions:
    """Captions for every live event of this process (a ``LiveStreams`` media tap and segment observer)."""

    def __init__(self, settings: Settings, db: Database, metrics: Metrics, ffmpeg: str,
                 registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.ffmpeg = ffmpeg
        self.registry = registry or ModelRegistry(dict(settings.vosk_models))
        self.sinks: list[CaptionSink] = []
        self.captioners: dict[int, EventCaptioner] = {}
        self._off: dict[int, dict[str, Any]] = {}
        self._dropped_frames = metrics.drop_counter("recognizer")
        self._dropped_chunks = metrics.caption_dropped_chunks.inc
        self.decoder_dropped = metrics.drop_counter("caption_decoder")
        self.executor = ThreadPoolExecutor(max_workers=settings.caption_threads or (os.cpu_count() or 2),
                                           thread_name_prefix="vosk")

    def preload(self) -> None:
        """Load every configured model in the background, one after the other (``vosk_preload``).

        A model takes seconds to load (more on a busy machine); loaded at the first captioned publish, the
        first seconds of the first lecture after a start would be captioned late or dropped from the queue.
        One thread of its own, not the recognizers' pool: the registry loads one model at a time anyway,
        and a stream whose model is already loaded must not wait behind the others' loads for a thread. A
        daemon thread, so that stopping the server never waits for a load. A model that cannot be loaded
        is logged by the registry, once, and captions for it say so."""
        if self.registry.languages:
            threading.Thread(target=self._preload, name="vosk-preload", daemon=True).start()

    def _preload(self) -> None:
        for language in self.registry.languages:
            try:
                self.registry.get(language)
            except ModelUnavailable:
                pass  # logged by the registry; publishes in that language get captions "unavailable"

    async def close(self) -> None:
        for captioner in list(self.captioners.values()):
            await captioner.finish(timeout=2.0)
        self.captioners.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- media tap --------------------------------------------------------------------------
    async def publish_started(self, live: LiveRun) -> None:
        captioner = self.captioners.get(live.event_id)
        if captioner is None:
            info = await self.db.run(lambda s: _event_info(s, live.event_id))
            if not info.language:
                self._off[live.event_id] = {"state": "off", "language": None,
                                            "message": "no caption language set for this event"}
                return
            if info.language not in self.registry.paths:
                configured = ", ".join(self.registry.languages) or "none"
                message = f"no Vosk model configured for {info.language!r} (configured: {configured}); captions are off"
                if self._off.get(live.event_id, {}).get("message") != message:
                    log.warning("event %s: %s", live.event_id, message)
                self._off[live.event_id] = {"state": "unavailable", "language": info.language, "message": message}
                return
            self._off.pop(live.event_id, None)
            captioner = EventCaptioner(self, live, info.language, info.vocabulary)
            self.captioners[live.event_id] = captioner
            log.info("event %s: live captions in %s", live.event_id, info.language)
        await captioner.publish_started()

    def on_media(self, live: LiveRun, kind: str, timestamp_ms: int, payload: bytes) -> None:
        captioner = self.captioners.get(live.event_id)
        if captioner is not None:
            try:
                captioner.on_media(kind, timestamp_ms, payload)
            except Exception:  # never let captions disturb ingest
                log.exception("event %s: captions could not take a media tag", live.event_id)

    async def publish_ended(self, live: LiveRun) -> None:
        captioner = self.captioners.get(live.event_id)
        if captioner is not None:
            await captioner.publish_ended()

    async def run_ended(self, live: LiveRun) -> None:
        self._off.pop(live.event_id, None)
        captioner = self.captioners.pop(live.event_id, None)
        if captioner is not None:
            await captioner.finish(timeout=self.settings.caption_finish_seconds)
            log.info("event %s: captions finished: %d cues, %d audio chunks dropped",
                     live.event_id, captioner.cue_count, captioner.recognition.dropped_chunks)

    def health(self, event_id: int) -> dict[str, Any] | None:
        captioner = self.captioners.get(event_id)
        if captioner is not None:
            return {"captions": captioner.health()}
        off = self._off.get(event_id)
        return {"captions": dict(off)} if off is not None else None

    def backlog_seconds(self) -> float:
        """Audio the most behind live caption stream has queued (transcriptions pause while it grows)."""
        return max((c.recognition.queued_seconds for c in list(self.captioners.values())), default=0.0)

    def recognizer_dropped(self) -> None:
        """One audio chunk dropped by a recognizer's queue (called where it happens)."""
        self._dropped_frames()
        self._dropped_chunks()

    # -- segment observer -----------------------------------------------------------------
    def on_segment(self, event_id: int, rendition: str, segment: Segment) -> None:
        captioner = self.captioners.get(event_id)
        if captioner is not None:
            captioner.on_segment(rendition, segment)
