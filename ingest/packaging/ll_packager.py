"""The LL-HLS packager: FLV tags in, fMP4 parts and LL playlists out, per rendition.

The asyncio shell of :class:`ingest.packaging.ll_ladder.LlLadder`. A passthrough event's tags are
muxed on the loop as they arrive, without ffmpeg (the muxer costs about a fifth of ffmpeg's
``-c copy``, bench/cmaf_mux.py); an ABR event's tags go to one ffmpeg that only encodes
(:mod:`ingest.packaging.transcoder`), and each rendition's output comes back as FLV tags into the
same muxer. The files a tag closed go to one writer thread per packager (off the loop, in order),
and only once they are on disk does the playlist snapshot listing them become visible: kept in
memory for blocking reloads (:class:`LlPlaylists`, shared by every viewer, rendered at most once per
version) and written as ``live.m3u8`` / ``dvr.m3u8`` at every segment and at the end, or at every
part where web-only nodes of a multi-node deployment answer blocking reloads from these files
(``playlist_files_every_part``, ``web/ll_files.py``).
Same layout and listener calls as the ffmpeg packager: ``master.m3u8`` (and ``master-dvr.m3u8``),
``<rendition>/live.m3u8``, ``<rendition>/dvr.m3u8``, segments reported to the listener once listed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from formats.cmaf import CmafError, parse_avc_config
from formats.m3u8 import LlPlaylist, Segment, SubtitleRendition, VariantStream, render_ll, render_master
from live_server.files import write_atomic
from live_server.layout import MASTER_PLAYLIST

from .feed import announced_streams, publisher_has_audio, publisher_source_height
from .ffmpeg_args import encoded_renditions
from .ll_ladder import LlLadder
from .ll_stream import LlFile, LlUnsupported, LlUpdate
from .options import PackagerOptions
from .packager import DVR_MASTER_PLAYLIST, DVR_PLAYLIST, PackagerListener
from .transcoder import Transcoder
from .variants import MEDIA_PLAYLIST, build_variants, codecs_from_sequence_headers

__all__ = ["LlPackager", "LlPlaylists"]

log = logging.getLogger(__name__)


class LlPlaylists:
    """One rendition's published LL playlists (live and DVR views), rendered once per version.

    ``changed()`` is the event the next version sets: blocking reloads wait on it (no polling),
    then decide again with :func:`formats.m3u8.decide_reload` on the new :meth:`current`.
    A delta update (``_HLS_skip``) is rendered at most once per version, on first demand.
    """

    def __init__(self) -> None:
        self._playlists: dict[str, LlPlaylist] = {}
        self._texts: dict[tuple[str, bool], str] = {}
        self._changed = asyncio.Event()
        self.version = 0

    def current(self, name: str) -> LlPlaylist | None:
        """The playlist ``name`` (``live.m3u8`` or ``dvr.m3u8``) as published now, or None."""
        return self._playlists.get(name)

    def text(self, name: str, skip: bool = False) -> str:
        key = (name, skip)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = render_ll(self._playlists[name], skip=skip)
        return text

    def changed(self) -> asyncio.Event:
        return self._changed

    def publish(self, playlists: Mapping[str, LlPlaylist], texts: Mapping[str, str]) -> None:
        """Make a new version visible and wake every request waiting for one."""
        self._playlists = dict(playlists)
        self._texts = {(name, False): text for name, text in texts.items()}
        self.version += 1
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()


class LlPackager:
    """Packages one live event into LL-HLS under ``output_dir``: one folder per rendition.

    Passthrough (no ladder): the publisher's tags are muxed as they are (``source``), no ffmpeg.
    ABR ladder: the tags go to the :class:`~ingest.packaging.transcoder.Transcoder` (one ffmpeg),
    whose per-rendition FLV outputs come back as tags into the same muxer, one
    :class:`~ingest.packaging.ll_ladder.LlLadder` rendition each, with aligned segment numbers and
    rendition reports. A transcoder restart is a discontinuity in every rendition.
    """

    def __init__(self, output_dir: Path, options: PackagerOptions, listener: PackagerListener, *,
                 part_target: float, ffmpeg: str | None = None, on_drop: Callable[[], None] = lambda: None,
                 on_write_error: Callable[[], None] = lambda: None, playlist_files_every_part: bool = True) -> None:
        self.output_dir = Path(output_dir)
        #: live.m3u8 / dvr.m3u8 written at every part (web-only nodes read them), else at every segment and the end
        self._files_every_part = playlist_files_every_part
        self.options = options
        self.names = options.rendition_names
        self._listener = listener
        self._on_drop = on_drop
        self._on_write_error = on_write_error
        followers = [r.name for r in options.ladder if r.is_audio_only]
        self._ladder = LlLadder(self.names, part_target=part_target, segment_seconds=options.segment_seconds,
                                window_segments=options.window_segments, keep_history=options.dvr,
                                followers=followers, transcoded=not options.passthrough)
        self._transcoder: Transcoder | None = None
        if not options.passthrough:
            if ffmpeg is None:
                raise ValueError("an ABR ladder needs ffmpeg to transcode")
            self._transcoder = Transcoder(ffmpeg, options, self.output_dir, on_tag=self._rendition_tag,
                                          on_restart=self._transcoder_restarted, on_failed=self._fail,
                                          on_drop=on_drop, on_ladder=self._ladder_chosen)
        self.playlists = {name: LlPlaylists() for name in self.names}
        self._writer: ThreadPoolExecutor | None = None
        self._last_write: asyncio.Future[OSError | None] | None = None
        self._master_text: dict[str, str] = {}
        self._metadata: Mapping[str, Any] | None = None
        self._headers: dict[str, bytes] = {}  # the publisher's sequence headers (passthrough CODECS)
        self._rendition_headers: dict[str, dict[str, bytes]] = {name: {} for name in self.names}
        self._subtitles: tuple[SubtitleRendition, ...] = ()
        self._started = False
        self._session_active = False
        self._failed_reason: str | None = None
        self._bytes_in = 0
        self._segments = 0
        self._peak_bps = 0
        self._write_failing = False
        self.write_errors = 0
        self._last_listing_delay: float | None = None

    # -- what the hub and its taps read ---------------------------------------------------
    @property
    def rendition(self) -> str:
        """The reference rendition (recordings and captions follow it; its segments are counted)."""
        return self.names[0]

    @property
    def segments(self) -> int:
        return self._segments

    @property
    def bytes_in(self) -> int:
        return self._bytes_in

    @property
    def restarts(self) -> int:
        return self._transcoder.restarts if self._transcoder is not None else 0  # passthrough: no process

    @property
    def transcoder(self) -> Transcoder | None:
        return self._transcoder

    @property
    def dropped_tags(self) -> int:
        muxed = sum(r.dropped_tags for r in self._ladder.renditions.values())
        return muxed + (self._transcoder.dropped_tags if self._transcoder is not None else 0)

    @property
    def session_active(self) -> bool:
        return self._session_active

    @property
    def finished(self) -> bool:
        return self._ladder.renditions[self.rendition].ended

    @property
    def failed_reason(self) -> str | None:
        return self._failed_reason

    @property
    def segment_overdue_seconds(self) -> float:
        # Segments are cut here as the media arrives; only a transcoder can owe us media.
        return self._transcoder.overdue_seconds if self._transcoder is not None else 0.0

    @property
    def overlong_segments(self) -> int:
        return self._ladder.renditions[self.rendition].overlong_segments

    @property
    def last_listing_delay(self) -> float | None:
        return self._last_listing_delay

    @property
    def history_paused(self) -> bool:
        return self._ladder.renditions[self.rendition].history_paused

    def pause_history(self, paused: bool) -> None:
        for name, removed in self._ladder.pause_history(paused):
            self._write_soon([], [self.output_dir / name / file for file in removed])

    def target_duration(self, rendition: str) -> int | None:
        stream = self._ladder.renditions.get(rendition)
        return stream.target_duration if stream is not None else None

    def playlist_segments(self, rendition: str) -> list[Segment]:
        stream = self._ladder.renditions.get(rendition)
        return stream.segments if stream is not None else []

    def ll_playlists(self, rendition: str) -> LlPlaylists | None:
        return self.playlists.get(rendition)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        folders = [self.output_dir / name for name in self.names]
        await asyncio.get_running_loop().run_in_executor(None, _make_folders, folders)
        await self._submit(self._master_files(), [])

    async def begin_session(self) -> None:
        if not self._started:
            await self.start()
        if self._session_active:
            await self.end_session()
        self._ladder.begin_session()
        self._session_active = True
        self._failed_reason = None
        if self._transcoder is not None:
            self._transcoder.begin()
            if self._metadata is not None:
                self._transcoder.on_metadata(self._metadata)

    async def end_session(self) -> None:
        if not self._session_active:
            return
        self._session_active = False
        if self._transcoder is not None:
            await self._transcoder.stop()  # its last frames come out (and are muxed) first
        self._apply(self._ladder.end_session())
        await self.flush()

    async def finish(self) -> None:
        self._session_active = False
        if self._transcoder is not None:
            await self._transcoder.stop()
        if not self._started:
            await self.start()
        self._apply(self._ladder.end())
        try:
            await self.flush()
            if self._last_write is not None:
                error = await self._last_write
                if error is not None:
                    raise error  # an OSError writing the final playlists is the caller's to report
        finally:
            self._stop_writer()

    async def close(self) -> None:
        self._session_active = False
        if self._transcoder is not None:
            await self._transcoder.close()
        self._stop_writer()

    async def flush(self) -> None:
        if self._last_write is not None:
            await asyncio.gather(asyncio.shield(self._last_write), return_exceptions=True)

    def set_subtitles(self, subtitles: Sequence[SubtitleRendition]) -> None:
        self._subtitles = tuple(subtitles)
        if self._started:
            self._write_soon(self._master_files())

    # -- ingest side (never blocks) -----------------------------------------------------------
    def on_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._metadata = dict(metadata)
        self._ladder.expect_streams(*announced_streams(metadata))
        if self._transcoder is not None and self._session_active:
            self._transcoder.on_metadata(metadata)
        if self._started:
            self._write_soon(self._master_files())

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One FLV tag body of the publisher: muxed now (passthrough) or queued for the transcoder."""
        self._bytes_in += len(payload)
        if not self._session_active or self._failed_reason is not None:
            return
        if len(payload) > 1 and payload[1] == 0 and kind in ("audio", "video") and self._headers.get(kind) != payload:
            self._headers[kind] = bytes(payload)
            if self._transcoder is None:
                self._write_soon(self._master_files())
        if self._transcoder is not None:
            self._transcoder.on_media(kind, timestamp_ms, payload)
        else:
            self._mux(self.rendition, kind, timestamp_ms, payload)

    def _rendition_tag(self, name: str, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One tag of a rendition the transcoder made (on the loop, as its pipe delivers it)."""
        if self._failed_reason is not None:
            return
        headers = self._rendition_headers[name]
        if len(payload) > 1 and payload[1] == 0 and headers.get(kind) != payload:
            headers[kind] = bytes(payload)
            self._write_soon(self._master_files())
        self._mux(name, kind, timestamp_ms, payload)

    def _mux(self, name: str, kind: str, timestamp_ms: int, payload: bytes) -> None:
        try:
            updates = self._ladder.feed(name, kind, timestamp_ms, payload, time.time())
        except LlUnsupported as exc:
            self._fail(f"{name}: {exc}" if self._transcoder is not None else str(exc))
            return
        for _, update in updates:  # the updates say what they dropped: no sum over the renditions per tag
            if update.dropped:
                self._on_drop()
                break
        self._apply(updates)

    def _transcoder_restarted(self) -> None:
        """A new ffmpeg, a new timeline: every rendition closes its segment and starts a new session,
        at the same segment (what a faster rendition had past the others' last media is dropped)."""
        self._apply(self._ladder.end_session(aligned=True))
        self._ladder.begin_session()
        segments = {name: len(stream.segments) for name, stream in self._ladder.renditions.items()}
        if len(set(segments.values())) > 1:
            log.warning("%s: renditions no longer have the same number of segments: %s", self.output_dir, segments)

    # -- output -----------------------------------------------------------------------------
    def _apply(self, updates: list[tuple[str, LlUpdate]]) -> None:
        """Queue the media files every rendition's update made, then each changed rendition's playlists,
        published once written. One writer thread, in order: whatever a playlist lists, or names in a
        rendition report (another rendition's last part, made by the same input), is on disk first."""
        active = [(name, update) for name, update in updates if update.changed or update.files or update.removed]
        if not active:
            return
        media: list[tuple[Path, bytes | str]] = [(self.output_dir / name / f.name, f.data)
                                                 for name, update in active for f in update.files]
        media_written = self._submit(media, []) if media else None
        if media_written is not None:
            media_written.add_done_callback(lambda done: self._written(_outcome(done)[0]))
        for name, update in active:
            self._apply_one(name, update, media_written)

    def _apply_one(self, name: str, update: LlUpdate, media_written: "asyncio.Future[OSError | None] | None") -> None:
        stream = self._ladder.renditions[name]
        folder = self.output_dir / name
        published: dict[str, LlPlaylist] = {}
        if update.changed:
            views = {MEDIA_PLAYLIST: self._ladder.playlist(name, self.options.window_segments, MEDIA_PLAYLIST)}
            if self.options.dvr:
                views[DVR_PLAYLIST] = self._ladder.playlist(name, None, DVR_PLAYLIST)
            published = {view: p for view, p in views.items() if p is not None}
        # On disk after the media it lists (same writer thread), at every version where web-only nodes
        # answer blocking reloads from these files (web/ll_files.py); else at every segment and at the end
        # (viewers of this node are answered from memory; the files serve the folder's other readers and
        # the run after its end). Rendered here only for the files: otherwise once per version, on the
        # first request (``LlPlaylists.text``), so a part nobody asks for costs no render, and the DVR
        # view (as long as the lecture so far) is not rendered three times a second for nobody.
        to_disk = self._files_every_part or bool(update.segments) or stream.ended
        texts = {view: render_ll(p) for view, p in published.items()} if to_disk else {}
        files: list[tuple[Path, bytes | str]] = [(folder / view, text) for view, text in texts.items()]
        if update.segments or stream.ended:
            if self._transcoder is None:
                for segment in update.segments:
                    self._measure(segment, update.files)
            files += self._master_files()
        own = bool(files or update.removed)
        if own:
            future = self._submit(files, [folder / file for file in update.removed])
        else:
            # Nothing to write for a mere part (the usual case): publish once the writes queued so far
            # are done (one writer thread, in order) rather than queueing an empty batch behind them.
            future = media_written or self._last_write or _done_future()
        segments = update.segments
        playlists = self.playlists[name]

        def visible(done: "asyncio.Future[OSError | None]") -> None:
            if media_written is not None and media_written.done() and _outcome(media_written)[0] is not None:
                return  # a part or segment is not on disk: listing it would send viewers to a 404
            playlist_error = _outcome(done)[1] if own else None  # another batch's error is counted by its own callback
            if playlist_error is not None:
                self._written(playlist_error)
            # A playlist file that could not be written is counted, but viewers are answered from
            # memory: the media is on disk, so they get it, as the ffmpeg packager lists segments
            # whatever happens to its playlist files.
            if published:
                playlists.publish(published, texts)
            for segment in segments:
                self._listed(name, segment)

        future.add_done_callback(visible)

    def _listed(self, name: str, segment: Segment) -> None:
        if name == self.rendition:
            self._segments += 1
            if segment.program_date_time is not None:
                self._last_listing_delay = time.time() - segment.program_date_time.timestamp() - segment.duration
        try:
            self._listener.on_segment(name, segment)
        except Exception:
            log.exception("%s: on_segment raised", self.output_dir)

    def _measure(self, segment: Segment, files: list[LlFile]) -> None:
        if segment.duration <= 0.5:
            return
        size = next((len(f.data) for f in files if f.name == segment.uri), 0)
        bps = int(size * 8 / segment.duration)
        if bps > self._peak_bps * 1.1:
            self._peak_bps = bps

    def _ladder_chosen(self, options: PackagerOptions) -> None:
        """The transcoder's first start kept the rungs no taller than the source: from now on only those
        are muxed, listed and reported (before any of their media; the reference is the first kept)."""
        if options.rendition_names == self.names:
            return
        self.options = options
        self.names = options.rendition_names
        self._ladder.select(self.names)
        self.playlists = {name: self.playlists[name] for name in self.names}
        self._rendition_headers = {name: self._rendition_headers[name] for name in self.names}
        if self._started:
            self._write_soon(self._master_files())

    def _variants(self) -> list[VariantStream]:
        """What the master lists: for the ladder, CODECS and RESOLUTION as each rendition's own
        sequence headers say (x264's profile and level, the scaled size) once they are known; the
        rungs the transcoder chose for the source (before its first start: those the publisher's
        tallest picture so far would keep)."""
        if self._transcoder is None:
            return build_variants(self.options, self._metadata, self._headers, self._peak_bps)
        has_audio = self._transcoder.encodes_audio
        if has_audio is None:  # before ffmpeg starts: what the publisher says so far
            has_audio = publisher_has_audio(self._metadata, self._headers)
        options = self.options if self._transcoder.ladder_chosen else self.options.for_source_height(
            self._transcoder.tallest_height or publisher_source_height(self._metadata, self._headers))
        variants = build_variants(options, self._metadata, self._headers, self._peak_bps, has_audio)
        out = []
        for rendition, variant in zip(encoded_renditions(options, has_audio), variants):
            headers = self._rendition_headers[rendition.name]
            codecs = codecs_from_sequence_headers(headers) if headers else None
            resolution = variant.resolution
            if "video" in headers:
                try:
                    config = parse_avc_config(headers["video"][5:])
                    resolution = (config.width, config.height)
                except CmafError:
                    pass
            out.append(dataclasses.replace(variant, codecs=codecs or variant.codecs, resolution=resolution))
        return out

    def _master_files(self) -> list[tuple[Path, bytes | str]]:
        variants = self._variants()
        targets = {MASTER_PLAYLIST: render_master(variants, self._subtitles)}
        if self.options.dvr:
            targets[DVR_MASTER_PLAYLIST] = render_master(
                [dataclasses.replace(v, uri=v.uri.replace(MEDIA_PLAYLIST, DVR_PLAYLIST)) for v in variants],
                [dataclasses.replace(s, uri=s.uri.replace(MEDIA_PLAYLIST, DVR_PLAYLIST)) for s in self._subtitles])
        changed: list[tuple[Path, bytes | str]] = []
        for name, text in targets.items():
            if self._master_text.get(name) != text:
                self._master_text[name] = text
                changed.append((self.output_dir / name, text))
        return changed

    def _submit(self, files: list[tuple[Path, bytes | str]], removed: list[Path]) -> "asyncio.Future[OSError | None]":
        """Queue writes (then deletions) on this packager's one writer thread: off the loop, in order.

        The future fails when media bytes could not be written; it returns the first playlist
        write error (the other files are still written), or None."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ll-hls")
        future = asyncio.wrap_future(self._writer.submit(_write_files, files, removed))
        self._last_write = future
        return future

    def _write_soon(self, files: list[tuple[Path, bytes | str]], removed: Sequence[Path] = ()) -> None:
        """Queue writes nobody waits for (a master change, a DVR shrinking); failures are counted."""
        if files or removed:
            self._submit(files, list(removed)).add_done_callback(
                lambda done: self._written(_outcome(done)[0] or _outcome(done)[1]))

    def _written(self, error: BaseException | None) -> bool:
        if error is None:
            if self._write_failing:
                log.warning("%s: media written again after %d failed writes", self.output_dir, self.write_errors)
                self._write_failing = False
            return True
        self.write_errors += 1
        self._on_write_error()
        if not self._write_failing:
            log.error("%s: cannot write LL-HLS media (%s)", self.output_dir, error)
        self._write_failing = True
        return False

    def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    def _fail(self, reason: str) -> None:
        self._failed_reason = reason
        log.error("%s: LL-HLS packager failed: %s", self.output_dir, reason)
        try:
            self._listener.on_packager_failed(reason)
        except Exception:
            log.exception("%s: on_packager_failed raised", self.output_dir)


def _done_future() -> "asyncio.Future[OSError | None]":
    future: asyncio.Future[OSError | None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _outcome(done: "asyncio.Future[OSError | None]") -> tuple[BaseException | None, OSError | None]:
    """(media write error, playlist write error) of one batch of writes."""
    if done.cancelled():
        return None, None
    error = done.exception()
    return (error, None) if error is not None else (None, done.result())


def _write_files(files: list[tuple[Path, bytes | str]], removed: list[Path]) -> OSError | None:
    """The writer thread's job: each file atomically, in order, then the deletions (never raised).

    Media bytes that cannot be written raise (what follows them would list them); a playlist that
    cannot be written is skipped and its error returned, so the media after it still lands."""
    playlist_error: OSError | None = None
    for path, data in files:
        if isinstance(data, str):
            try:
                write_atomic(path, data)
            except OSError as exc:
                playlist_error = playlist_error or exc
        else:
            _write_bytes(path, data)
    for path in removed:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: could not delete %s: %s", path.parent, path.name, exc)
    return playlist_error


def _write_bytes(path: Path, data: bytes) -> None:
    """Media bytes, renamed into place so that nobody reads half a part. With the descriptor itself
    (``open()`` would add an ``fstat``, an ``ioctl`` and a buffered file object to each of the few
    files a second every stream writes: each call the writer thread makes is a GIL hand-off)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_folders(folders: list[Path]) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
