"""One Low-Latency HLS rendition as pure state: FLV tags in, fMP4 files and LL playlists out.

The sans-I/O half of the LL-HLS packager (``ll_packager.py`` is its asyncio shell). FLV audio and
video tag bodies, as the ingest hands them over, go to :class:`formats.cmaf.CmafMuxer` without
re-encoding; each part it closes becomes a part file, each finished segment a segment file (the
concatenation of its parts) and a :class:`formats.m3u8.Segment` for the rest of the server, and the
live and DVR views are :class:`formats.m3u8.LlPlaylist` values. Nothing here writes files or
reads the clock: the caller passes the wall time a tag arrived and writes what :meth:`feed`
returns, in order, before it publishes the playlist snapshot that lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from formats.cmaf import AacConfig, AvcConfig, CmafError, CmafMuxer, Part, parse_aac_config, parse_avc_config
from formats.m3u8 import LlPart, LlPlaylist, LlSegment, Segment, target_duration_for

__all__ = ["LlFile", "LlRendition", "LlUnsupported", "LlUpdate", "part_name", "segment_name", "init_name"]

#: Media held at most (publisher time, ms) waiting for an announced stream's sequence header; after
#: it the muxer starts without that stream.
HOLD_MS = 2000
#: ... and at most this many tags (timestamps that do not advance must not hold media forever).
HOLD_TAGS = 1000
#: FLV codec ids (legacy headers) the muxer takes as they are.
_FLV_AVC = 7
_FLV_AAC = 10


class LlUnsupported(ValueError):
    """Media the in-process LL-HLS packager cannot carry without transcoding (not H.264/AAC)."""


def segment_name(msn: int) -> str:
    return f"seg_{msn:06d}.m4s"


def part_name(msn: int, index: int) -> str:
    return f"part_{msn:06d}_{index}.m4s"


def init_name(session: int) -> str:
    """One init segment per publish session: a reconnecting encoder may change its parameters, and
    files once served are cached as immutable."""
    return f"init_{session}.mp4"


@dataclass(frozen=True)
class LlFile:
    """A media file to write (atomically) under the rendition's folder."""

    name: str
    data: bytes


@dataclass
class LlUpdate:
    """What one input changed: files to write first, then what becomes visible with them."""

    files: list[LlFile] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)  # completed segments, in order
    removed: list[str] = field(default_factory=list)  # files no playlist lists any more
    changed: bool = False  # the playlists changed (a part, a segment, the end)
    dropped: int = 0  # tags this input dropped (counted in ``dropped_tags`` too)


@dataclass
class _Pending:
    """The segment in progress: its parts (as listed) and their bytes."""

    msn: int
    parts: list[LlPart] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    duration: float = 0.0
    program_date_time: datetime | None = None
    discontinuity: bool = False
    init: str | None = None  # the init section its parts are read with (the session's)


class LlRendition:
    """A rendition's LL-HLS state across the publish sessions of one live run.

    Each session gets a fresh muxer (publisher timestamps restart) and starts with a discontinuity;
    Media Sequence Numbers continue. The muxer is configured from the sequence headers of the
    streams :meth:`expect_streams` announced (both unless told otherwise): media arriving before the
    last of them is held, up to ``HOLD_MS`` of it, then replayed (a WHIP publisher's AAC, transcoded
    from Opus, comes after its first video frames). A header arriving after that is ignored. The first complete segment decides
    ``EXT-X-TARGETDURATION`` (with ``segment_seconds``), as in the plain packager; the playlists are
    not published before it (a player would otherwise be given a target it cannot keep).
    """

    def __init__(self, *, part_target: float, segment_seconds: float, window_segments: int,
                 keep_history: bool = True, first_msn: int = 0, cut_after: float | None = None) -> None:
        self.part_target = part_target
        self.segment_seconds = segment_seconds
        # A keyframe starts a new segment once the segment has lasted this long (the muxer's
        # segment target): ``segment_seconds`` for a publisher's GOP; less for a transcode whose
        # keyframes are forced every segment_seconds (so each forced one cuts, even 1 frame early);
        # "never" for a ladder's audio-only rendition, cut by :meth:`cut`.
        self.cut_after = segment_seconds if cut_after is None else cut_after
        self.window_segments = window_segments
        self.keep_history = keep_history  # DVR: remember every segment (else twice the window)
        self._segments: list[LlSegment] = []
        self._numbers: list[Segment] = []  # the same segments as the rest of the server sees them
        self._segments_version = 0  # counts changes to _segments
        #: per view (window): the _segments_version it was made at, its segments, its discontinuity sequence
        self._listed_cache: dict[int | None, tuple[int, tuple[LlSegment, ...], int]] = {}
        self._discontinuities_before = 0  # EXT-X-DISCONTINUITY of segments forgotten before _segments[0]
        self._next_msn = first_msn
        self._pending: _Pending | None = None
        self._muxer: CmafMuxer | None = None
        self._video: AvcConfig | None = None
        self._audio: AacConfig | None = None
        self._session = 0
        self._in_session = False
        self._discontinuity = False
        self._clock: float | None = None  # wall time (epoch s) of FLV time 0 in this session
        self._init: str | None = None
        self.target_duration: int | None = None
        self.ended = False
        self._expected = (True, True)  # (audio, video) the publisher announced
        self._held: list[tuple[str, int, bytes, float]] | None = []  # media before the muxer could be configured
        self.history_paused = False
        self._history_cut = False  # the DVR once shrank to the live window: no EVENT promise any more
        self.dropped_tags = 0
        self.overlong_segments = 0

    # ----------------------------------------------------------------- sessions

    def begin_session(self) -> None:
        """A publisher (re)started: a new muxer at its first frame, a discontinuity before its media."""
        self.ended = False
        self._in_session = True
        self._muxer = None
        self._video = self._audio = None
        self._clock = None
        self._held = []
        self._discontinuity = bool(self._segments) or self._pending is not None

    def expect_streams(self, audio: bool, video: bool) -> None:
        """The streams the publisher announced (onMetaData): the muxer waits for their headers."""
        self._expected = (audio, video) if audio or video else (True, True)

    def end_session(self) -> LlUpdate:
        """The publisher left: the muxer's last part, and the segment in progress completed."""
        update = LlUpdate()
        self._release_held(update)
        if self._muxer is not None:
            self._take(self._muxer.flush(), update)
        self._close_segment(update)
        self._in_session = False
        self._muxer = None
        return update

    def end(self) -> LlUpdate:
        """The run is over: the playlists get ``EXT-X-ENDLIST``."""
        update = self.end_session() if self._in_session else LlUpdate()
        self.ended = True
        update.changed = True
        return update

    def pause_history(self, paused: bool) -> list[str]:
        """Low media disk: keep only the live window (the DVR shrinks to it); files to delete."""
        self.history_paused = paused
        self._history_cut = self._history_cut or paused
        update = LlUpdate()
        self._trim(update)
        return update.removed

    # ----------------------------------------------------------------- input

    def feed(self, kind: str, timestamp_ms: int, payload: bytes, wall: float) -> LlUpdate:
        """One FLV audio or video tag body that arrived at ``wall`` (epoch seconds).

        Raises :class:`LlUnsupported` for a codec other than H.264 and AAC (legacy FLV headers).
        """
        update = LlUpdate()
        if not self._in_session or len(payload) < 2:
            return update
        self._feed(kind, timestamp_ms, payload, wall, update)
        return update

    def _feed(self, kind: str, timestamp_ms: int, payload: bytes, wall: float, update: LlUpdate) -> None:
        if (self._muxer is None and not self.is_header(kind, payload)
                and self._hold(kind, timestamp_ms, payload, wall, update)):
            return
        if kind == "video":
            if payload[0] & 0x80 or payload[0] & 0x0F != _FLV_AVC:
                raise LlUnsupported("LL-HLS packaging takes H.264 video (legacy FLV AVC) only")
            packet_type = payload[1]
            if packet_type == 0:
                self._configure_video(payload[5:])
                return
            if packet_type != 1 or len(payload) <= 5:
                return  # end of sequence, or an empty frame
            muxer = self._muxer_for_media(timestamp_ms, wall, update)
            if muxer is None or self._video is None:
                self.dropped_tags += 1
                update.dropped += 1
                return
            cts = int.from_bytes(payload[2:5], "big", signed=True)
            self._take(muxer.add_video(payload[5:], timestamp_ms, cts, keyframe=payload[0] >> 4 == 1), update)
        elif kind == "audio":
            if payload[0] >> 4 != _FLV_AAC:
                raise LlUnsupported("LL-HLS packaging takes AAC audio only")
            if payload[1] == 0:
                self._configure_audio(payload[2:])
                return
            muxer = self._muxer_for_media(timestamp_ms, wall, update)
            if muxer is None or self._audio is None:
                self.dropped_tags += 1
                update.dropped += 1
                return
            self._take(muxer.add_audio(payload[2:], timestamp_ms), update)

    @staticmethod
    def is_header(kind: str, payload: bytes) -> bool:
        return kind in ("audio", "video") and payload[1] == 0

    def _hold(self, kind: str, timestamp_ms: int, payload: bytes, wall: float, update: LlUpdate) -> bool:
        """Keep media back while an announced stream has no header yet (True: held); when the
        last header is in or the hold is full, replay what was held first (False: go on)."""
        if self._held is None:
            return False  # replaying what was held
        audio, video = self._expected
        missing = (audio and self._audio is None) or (video and self._video is None)
        full = bool(self._held) and (timestamp_ms - self._held[0][1] >= HOLD_MS or len(self._held) >= HOLD_TAGS)
        if missing and not full:
            self._held.append((kind, timestamp_ms, payload, wall))
            return True
        self._release_held(update)
        return False

    def _release_held(self, update: LlUpdate) -> None:
        """Feed what was held, in order, to the muxer it waited for (built by the first of it)."""
        held, self._held = self._held, None  # None: not holding while replaying
        for kind, timestamp_ms, payload, wall in held or ():
            self._feed(kind, timestamp_ms, payload, wall, update)
        self._held = []

    def _configure_video(self, record: bytes) -> None:
        if self._muxer is None:
            try:
                self._video = parse_avc_config(record)
            except CmafError as exc:
                raise LlUnsupported(f"H.264 configuration: {exc}") from None

    def _configure_audio(self, asc: bytes) -> None:
        if self._muxer is None:
            try:
                self._audio = parse_aac_config(asc)
            except CmafError as exc:
                raise LlUnsupported(f"AAC configuration: {exc}") from None

    def _muxer_for_media(self, timestamp_ms: int, wall: float, update: LlUpdate) -> CmafMuxer | None:
        if self._muxer is None:
            if self._video is None and self._audio is None:
                return None  # media before any sequence header: nothing to describe it with
            self._muxer = CmafMuxer(self._video, self._audio, part_target=self.part_target,
                                    segment_target=self.cut_after)
            self._session += 1
            self._init = init_name(self._session)
            self._clock = wall - timestamp_ms / 1000
            update.files.append(LlFile(self._init, self._muxer.init_segment()))
        return self._muxer

    def cut(self) -> LlUpdate:
        """Start a new segment at the next sample (an audio-only rendition following a ladder's
        video keyframes); nothing before the session's first sample."""
        update = LlUpdate()
        if self._muxer is not None:
            self._take(self._muxer.cut(), update)
            self._close_segment(update)
        return update

    def take_segment_starts(self) -> list[int]:
        """FLV times (ms) where a keyframe started a segment since last asked (the first excepted)."""
        if self._muxer is None or not self._muxer.segment_starts:
            return []
        starts = [round(t * 1000) for t in self._muxer.segment_starts]
        self._muxer.segment_starts.clear()
        return starts

    # ----------------------------------------------------------------- cutting

    def _take(self, parts: list[Part], update: LlUpdate) -> None:
        for part in parts:
            if part.segment_start:
                self._close_segment(update)
            pending = self._pending
            if pending is None:
                pending = self._pending = _Pending(self._next_msn, discontinuity=self._discontinuity, init=self._init)
                self._next_msn += 1
                self._discontinuity = False
                if self._clock is not None:
                    pending.program_date_time = datetime.fromtimestamp(self._clock + part.start, timezone.utc)
            name = part_name(pending.msn, len(pending.parts))
            pending.parts.append(LlPart(name, part.duration, part.independent))
            pending.data.append(part.data)
            pending.duration += part.duration
            update.files.append(LlFile(name, part.data))
            update.changed = True

    def _close_segment(self, update: LlUpdate) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not pending.parts:
            return
        name = segment_name(pending.msn)
        update.files.append(LlFile(name, b"".join(pending.data)))
        if self.target_duration is None:
            self.target_duration = target_duration_for(self.segment_seconds, pending.duration)
        elif target_duration_for(pending.duration) > self.target_duration:
            self.overlong_segments += 1
        self._segments_version += 1
        self._segments.append(LlSegment(name, pending.duration, tuple(pending.parts), pending.program_date_time,
                                        pending.discontinuity, pending.init))
        segment = Segment(name, pending.duration, pending.msn, pending.discontinuity, pending.program_date_time,
                          pending.init)
        self._numbers.append(segment)
        update.segments.append(segment)
        update.changed = True
        self._trim(update)

    def _trim(self, update: LlUpdate) -> None:
        """Parts go when their segment leaves the live window; segments (and their files) when
        no playlist lists them: past twice the window without DVR, past the window when paused."""
        window = self.window_segments
        if len(self._segments) > window:
            leaving = self._segments[-window - 1]
            update.removed.extend(p.uri for p in leaving.parts)
        keep = window if self.history_paused else None if self.keep_history else 2 * window
        if keep is not None and len(self._segments) > keep:
            gone = self._segments[: len(self._segments) - keep]
            del self._segments[: len(gone)]
            self._segments_version += 1
            del self._numbers[: len(gone)]
            self._discontinuities_before += sum(1 for s in gone if s.discontinuity)
            update.removed.extend(s.uri for s in gone)

    # ----------------------------------------------------------------- output

    @property
    def segments(self) -> list[Segment]:
        """Complete segments remembered (every one with DVR), as the rest of the server lists them."""
        return list(self._numbers)

    @property
    def init_uri(self) -> str | None:
        return self._init

    def _listed(self, window: int | None) -> tuple[tuple[LlSegment, ...], int]:
        """The complete segments a view lists and its discontinuity sequence. They change once per
        segment but are asked for once per part (and per view): kept until the segments change,
        rather than copying and scanning the whole DVR history each time."""
        key = self._segments_version
        cached = self._listed_cache.get(window)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        shown = self._segments if window is None else self._segments[-window:]
        hidden = self._segments[: len(self._segments) - len(shown)]
        discontinuity_sequence = self._discontinuities_before + sum(1 for s in hidden if s.discontinuity)
        listed = tuple(shown)
        self._listed_cache[window] = (key, listed, discontinuity_sequence)
        return listed, discontinuity_sequence

    def playlist(self, window: int | None) -> LlPlaylist | None:
        """The live view (``window`` segments) or the DVR view (None: every remembered segment);
        None until the first segment has decided the target duration."""
        if self.target_duration is None or self._init is None:
            return None
        shown, discontinuity_sequence = self._listed(window)
        pending = self._pending
        next_msn = pending.msn if pending is not None else self._next_msn
        first = self._numbers[len(self._segments) - len(shown)].sequence if shown else next_msn
        hint = None
        if pending is not None and (pending.discontinuity or self.ended):
            pending = None  # the renderer cannot mark a discontinuity before parts in progress: listed once complete
        elif self._in_session and not self.ended and not (pending is None and self._discontinuity):
            # (not across a reconnect: the next part starts a new session, with a new init section and a
            # discontinuity the playlist cannot announce before that part is listed)
            hint = part_name(next_msn, len(pending.parts) if pending is not None else 0)
        return LlPlaylist(
            target_duration=self.target_duration,
            part_target=self.part_target,
            map_uri=self._init,
            media_sequence=first,
            segments=shown,
            pending_parts=tuple(pending.parts) if pending is not None else (),
            preload_hint=hint,
            pending_program_date_time=pending.program_date_time if pending is not None else None,
            ended=self.ended,
            discontinuity_sequence=discontinuity_sequence,
            playlist_type="EVENT" if window is None and self.keep_history and not self._history_cut else None,
        )
