"""Every rendition of one LL-HLS event as pure state: FLV tags per rendition in, aligned segments,
parts and playlists with rendition reports out.

A passthrough event is a ladder of one (``source``, the publisher's tags as they are). An ABR event
is fed the transcoder's outputs (one FLV stream per rendition, ``transcoder.py``): its video
renditions have keyframes forced on the same frames, so each one's muxer starts a segment at each of
them (the same instants, hence the same Media Sequence Numbers); an audio-only rendition has no
keyframes, so it is cut where the first video rendition (the reference) started a segment: its AAC
frames are held until the reference's video has passed their time (at most ``FOLLOW_HOLD_MS``),
then fed, cut before the first frame at or after each of the reference's segment starts.

Each rendition's playlists carry ``EXT-X-RENDITION-REPORT`` for the others (RFC 8216bis 4.4.5.4:
their last Media Sequence Number and Part Index at the time this one is rendered), so a player that
switches knows which part to ask the other rendition for.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Sequence

from formats.m3u8 import LlPlaylist, rendition_report

from .ll_stream import LlRendition, LlUpdate

__all__ = ["LlLadder", "FOLLOW_HOLD_MS"]

#: An audio-only rendition's frames wait at most this long (media time) for the reference video to
#: pass them; a video that stalls longer cannot hold the audio rendition back further.
FOLLOW_HOLD_MS = 1000


class LlLadder:
    """The renditions of one event, in master-playlist order.

    ``followers``: audio-only renditions cut on the reference's segment starts (the first name that
    is not one). ``transcoded``: keyframes are forced every ``segment_seconds`` (the ladder), so a
    video rendition cuts at each of them even when two fall a frame short of ``segment_seconds``.
    """

    def __init__(self, names: Sequence[str], *, part_target: float, segment_seconds: float,
                 window_segments: int, keep_history: bool = True, followers: Sequence[str] = (),
                 transcoded: bool = False) -> None:
        if not names or len(set(names)) != len(names):
            raise ValueError("a ladder needs distinct rendition names")
        unknown = set(followers) - set(names)
        if unknown or len(followers) == len(names):
            raise ValueError("followers must be some, not all, of the renditions")
        self.names = tuple(names)
        self.followers = frozenset(followers)
        self.reference = next(n for n in names if n not in self.followers)
        leader_cut = segment_seconds / 2 if transcoded else segment_seconds
        self.renditions = {
            name: LlRendition(part_target=part_target, segment_seconds=segment_seconds,
                              window_segments=window_segments, keep_history=keep_history,
                              cut_after=1e9 if name in self.followers else leader_cut)
            for name in names
        }
        for name in self.followers:
            self.renditions[name].expect_streams(True, False)
        self._held: dict[str, deque[tuple[str, int, bytes, float]]] = {n: deque() for n in self.followers}
        self._cuts: dict[str, deque[int]] = {n: deque() for n in self.followers}
        self._clock: int | None = None  # FLV time of the reference's last video frame this session

    # ----------------------------------------------------------------- sessions

    def begin_session(self) -> None:
        """A new input timeline (a publisher's session, or a restarted transcoder): every rendition
        gets a discontinuity and a new init section."""
        for name, rendition in self.renditions.items():
            rendition.begin_session()
        for name in self.followers:
            self._held[name].clear()
            self._cuts[name].clear()
        self._clock = None

    def expect_streams(self, audio: bool, video: bool) -> None:
        for name, rendition in self.renditions.items():
            rendition.expect_streams(audio, False) if name in self.followers else rendition.expect_streams(audio, video)

    def end_session(self) -> list[tuple[str, LlUpdate]]:
        out = [(name, self._flush_follower(name)) for name in self.followers]
        return out + [(name, self.renditions[name].end_session()) for name in self.names]

    def end(self) -> list[tuple[str, LlUpdate]]:
        out = [(name, self._flush_follower(name)) for name in self.followers]
        return out + [(name, self.renditions[name].end()) for name in self.names]

    def pause_history(self, paused: bool) -> list[tuple[str, list[str]]]:
        return [(name, rendition.pause_history(paused)) for name, rendition in self.renditions.items()]

    # ----------------------------------------------------------------- input

    def feed(self, name: str, kind: str, timestamp_ms: int, payload: bytes, wall: float) -> list[tuple[str, LlUpdate]]:
        """One FLV tag body of rendition ``name``; what it changed, per rendition (in order).

        Raises :class:`ingest.packaging.ll_stream.LlUnsupported` as :meth:`LlRendition.feed` does."""
        rendition = self.renditions[name]
        if name in self.followers:
            if len(payload) >= 2 and LlRendition.is_header(kind, payload):
                return [(name, rendition.feed(kind, timestamp_ms, payload, wall))]
            self._held[name].append((kind, timestamp_ms, payload, wall))
            return [(name, self._release(name))]
        out = [(name, rendition.feed(kind, timestamp_ms, payload, wall))]
        if name == self.reference:
            starts = rendition.take_segment_starts()
            for follower in self.followers:
                self._cuts[follower].extend(starts)
            if kind == "video" and not LlRendition.is_header(kind, payload):
                self._clock = timestamp_ms
            out += [(follower, self._release(follower)) for follower in self.followers]
        return out

    def _release(self, name: str, everything: bool = False) -> LlUpdate:
        """Feed a follower's held frames that the reference has passed (or held too long)."""
        held, cuts, rendition = self._held[name], self._cuts[name], self.renditions[name]
        update = LlUpdate()
        while held:
            kind, timestamp_ms, payload, wall = held[0]
            passed = self._clock is not None and timestamp_ms <= self._clock
            if not (everything or passed or held[-1][1] - timestamp_ms > FOLLOW_HOLD_MS):
                break
            held.popleft()
            while cuts and cuts[0] <= timestamp_ms:
                cuts.popleft()
                _merge(update, rendition.cut())
            _merge(update, rendition.feed(kind, timestamp_ms, payload, wall))
        return update

    def _flush_follower(self, name: str) -> LlUpdate:
        return self._release(name, everything=True)

    # ----------------------------------------------------------------- output

    def playlist(self, name: str, window: int | None, playlist_name: str) -> LlPlaylist | None:
        """Rendition ``name``'s live (``window`` segments) or DVR (None) view, reporting the others
        (their ``playlist_name`` playlists, relative URIs)."""
        playlist = self.renditions[name].playlist(window)
        if playlist is None or len(self.names) == 1:
            return playlist
        reports = []
        for other in self.names:
            if other == name:
                continue
            theirs = self.renditions[other].playlist(1)
            if theirs is not None and (theirs.segments or theirs.pending_parts):
                reports.append(rendition_report(theirs, f"../{other}/{playlist_name}"))
        return dataclasses.replace(playlist, rendition_reports=tuple(reports))


def _merge(into: LlUpdate, update: LlUpdate) -> None:
    into.files.extend(update.files)
    into.segments.extend(update.segments)
    into.removed.extend(update.removed)
    into.changed = into.changed or update.changed
