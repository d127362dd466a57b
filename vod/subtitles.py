"""A recording's text tracks as HLS subtitle renditions (RFC 8216): what ``/vod/{id}/master.m3u8`` lists
besides the video, and the playlists and WebVTT segments of each track.

Each track is one ``EXT-X-MEDIA:TYPE=SUBTITLES`` rendition (``vod.tracks.renditions``: NAME, LANGUAGE,
DEFAULT/AUTOSELECT/FORCED) in the group the variant names with ``SUBTITLES=``. Its media playlist
mirrors the playable view (``vod.m3u8``) segment for segment: same durations, discontinuities and
wall clocks, one ``subtitles/<track>/<n>.vtt`` per video segment holding the cues that overlap it. Each
WebVTT segment's ``X-TIMESTAMP-MAP`` ties cue time to the video's MPEG-TS clock through the first PTS of
its run of segments (the time stamps run on between discontinuities), read from the run's first segment
(``formats.mpegts.first_pts``; ``formats.cmaf.fragment_start_90khz`` for fMP4): so hls.js and Safari place
cues on the video as the live captions do. Everything is generated from the catalog when asked: a new or
deleted track shows at the next load of the master, nothing is written into the recording's folder.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Sequence

from sqlalchemy.orm import Session

from formats import webvtt
from formats.cmaf import fragment_start_90khz
from formats.m3u8 import (
    PlaylistParseError, Segment, SubtitleRendition, carry_audio_group, parse_master, parse_media_playlist, render_master,
    render_vod,
)
from formats.mpegts import first_pts
from live_server.db import Database
from live_server.languages import own_name
from live_server.models import Recording

from . import tracks as tr

__all__ = ["with_subtitles", "subtitle_playlist", "segment_vtt", "SubtitleMedia", "RunStarts", "PLAYLIST"]

PTS_WRAP = 1 << 33
PLAYLIST = "index.m3u8"
_HEAD_BYTES = 64 * 1024


def with_subtitles(master: str, renditions: Sequence[tr.Rendition]) -> str:
    """The recording's master playlist with one SUBTITLES rendition per track (the variants as written on disk).

    The one place the replay's master gets its text renditions; unchanged when there is no track.
    """
    if not renditions:
        return master
    subtitles = [SubtitleRendition(name=r.name, language=r.language, uri=f"subtitles/{r.track_id}/{PLAYLIST}",
                                   default=r.default, autoselect=r.autoselect, characteristics=r.characteristics,
                                   forced=r.forced) for r in renditions]
    return carry_audio_group(master, render_master(parse_master(master), subtitles))  # audio descriptions stay


def subtitle_playlist(view: Sequence[Segment]) -> str:
    """A track's media playlist: the view's segments, the n-th as ``n.vtt`` (no init section: WebVTT)."""
    return render_vod([replace(s, uri=f"{i}.vtt", map_uri=None) for i, s in enumerate(view)])


@dataclass(frozen=True)
class Window:
    """Where the n-th view segment sits on the view's timeline and which segment starts its run."""

    start: float
    end: float
    run_first: int  # index of the first segment of its run (a discontinuity starts a run)
    run_start: float


def windows(view: Sequence[Segment]) -> list[Window]:
    out: list[Window] = []
    t = 0.0
    run_first, run_start = 0, 0.0
    for i, segment in enumerate(view):
        if i > 0 and segment.discontinuity:
            run_first, run_start = i, t
        out.append(Window(t, t + segment.duration, run_first, run_start))
        t += segment.duration
    return out


def segment_vtt(cues: Sequence[webvtt.Cue], window: Window, run_pts: int | None) -> str:
    """The WebVTT segment of one view segment: the cues that overlap it, on the view's timeline.

    ``X-TIMESTAMP-MAP`` maps LOCAL = the segment's start + 1 s to the PTS the video has there (the run's
    first PTS plus the time since the run started, in whole milliseconds as WebVTT writes LOCAL, so every
    segment of a run states the very same mapping): a point that is never a run's first PTS, which hls.js
    would read as "no offset" and place by the first subtitle segment it happened to load. Each cue keeps
    one identifier (its place in the track) in every segment it overlaps, so players show it once.
    """
    shown = [replace(c, identifier=c.identifier or f"cue-{i + 1}") for i, c in enumerate(cues)
             if c.end > window.start and c.start < window.end]
    if run_pts is None:
        return webvtt.render(shown)
    local_ms = round((window.start + 1.0) * 1000)
    mpegts = (run_pts + (local_ms - round(window.run_start * 1000)) * 90) % PTS_WRAP
    return webvtt.render(shown, webvtt.TimestampMap(mpegts, local_ms / 1000))


ReadFile = Callable[[str], Awaitable[bytes | None]]


class SubtitleMedia:
    """The recording's master with its text renditions, and each rendition's playlist and segments.

    Cached a few seconds per recording (players fetch a track's segments one after the other); the
    first PTS of each run of segments is kept per recording while its view stays the same (``RunStarts``).
    """

    def __init__(self, db: Database, ttl_seconds: float = 3.0) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._tracks: dict[int, tuple[float, list[tr.Rendition], dict[int, list[webvtt.Cue]]]] = {}
        self._run_starts = RunStarts()

    def invalidate(self, recording_id: int) -> None:
        self._tracks.pop(recording_id, None)

    async def _load(self, recording_id: int) -> tuple[list[tr.Rendition], dict[int, list[webvtt.Cue]]]:
        cached = self._tracks.get(recording_id)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1], cached[2]

        def work(session: Session) -> tuple[list[tr.Rendition], dict[int, list[webvtt.Cue]]]:
            row = session.get(Recording, recording_id)
            if row is None:
                return [], {}
            rows = tr.tracks_of(session, row)
            cues = {t.id: tr.track_cues(session, row, t, row.trim_start) for t in rows}
            return tr.renditions(tr.facts(rows), own_name), cues

        renditions, cues = await self.db.run(work)
        if len(self._tracks) > 1000:
            self._tracks.clear()
        self._tracks[recording_id] = (time.monotonic(), renditions, cues)
        return renditions, cues

    async def master(self, recording_id: int, master: bytes) -> bytes:
        renditions, _ = await self._load(recording_id)
        try:
            return with_subtitles(master.decode("utf-8"), renditions).encode("utf-8")
        except (PlaylistParseError, UnicodeDecodeError, ValueError):
            return master  # a master we cannot read is served as it is, without text renditions

    async def track_file(self, recording_id: int, tail: str, read: ReadFile) -> bytes | None:
        """``subtitles/<track>/index.m3u8`` or ``subtitles/<track>/<n>.vtt``; None: no such file."""
        parts = tail.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 11:
            return None
        track_id, name = int(parts[1]), parts[2]
        renditions, cues = await self._load(recording_id)
        if track_id not in cues:
            return None
        view_bytes = await read("vod.m3u8")
        if view_bytes is None:
            return None
        try:
            view = list(parse_media_playlist(view_bytes.decode("utf-8")).playlist.segments)
        except (PlaylistParseError, UnicodeDecodeError):
            return None
        if not view:
            return None
        if name == PLAYLIST:
            return subtitle_playlist(view).encode("utf-8")
        stem, _, suffix = name.partition(".")
        if suffix != "vtt" or not stem.isdigit() or int(stem) >= len(view):
            return None
        window = windows(view)[int(stem)]
        run_pts = await self._run_starts.pts(recording_id, view_bytes, view[window.run_first], read)
        return segment_vtt(cues[track_id], window, run_pts).encode("utf-8")


class RunStarts:
    """The first PTS of each run of a recording's segments (what ``X-TIMESTAMP-MAP`` maps cues to), read once
    per recording and view: kept while the view (``vod.m3u8``) stays the same, read again once a trim, an
    import or a move to object storage rewrote it. A listed segment's bytes never change under the same view
    (the media cache serves them as immutable too)."""

    MAX_RECORDINGS = 10_000

    def __init__(self) -> None:
        # recording id -> (digest of the view the PTS were read under, segment URI -> its first PTS)
        self._known: dict[int, tuple[bytes, dict[str, int | None]]] = {}
        self.reads = 0  # segments read (the cache's misses)

    async def pts(self, recording_id: int, view: bytes, segment: Segment, read: ReadFile) -> int | None:
        """The first PTS of ``segment`` (a run's first, listed in ``view``), None when it cannot be read."""
        digest = hashlib.blake2b(view, digest_size=16).digest()
        cached = self._known.get(recording_id)
        if cached is None or cached[0] != digest:
            if len(self._known) >= self.MAX_RECORDINGS:
                self._known.clear()
            cached = self._known[recording_id] = (digest, {})
        known = cached[1]
        if segment.uri in known:
            return known[segment.uri]
        self.reads += 1
        data = await read(segment.uri)
        pts: int | None = None
        if data is not None:
            if segment.map_uri is None:
                pts = first_pts(data[:_HEAD_BYTES])
            else:
                init = await read(segment.map_uri)
                pts = fragment_start_90khz(init, data[:_HEAD_BYTES]) if init is not None else None
        known[segment.uri] = pts
        return pts
