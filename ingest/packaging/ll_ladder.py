"""Every rendition of one LL-HLS event as pure state: FLV tags per rendition in, aligned segments,
parts and playlists with rendition reports out.

A passthrough event is a ladder of one (``source``, the publisher's tags as they are). An ABR event
is fed the transcoder's outputs (one FLV stream per rendition, ``transcoder.py``): its video
renditions have keyframes forced on the same frames, so each one's muxer starts a segment at each of
them (the same instants, hence the same Media Sequence Numbers); an audio-only rendition has no
keyframes, so it is cut where the first video rendition (the reference) started a segment: its AAC
frames are held until the reference's video has passed their time (at most ``FOLLOW_HOLD_MS``),
then fed, cut before the first frame at or after each of the reference's segment starts.

The video renditions come down separate pipes, the larger encodes later than the smaller ones (under
load, by more than a segment). So that a transcoder killed at any instant leaves every rendition at the
same segment, a video rendition does not cross a keyframe (a segment start) before every other video
rendition has delivered media up to that time: its tags from that keyframe on wait (at most
``ALIGN_HOLD_SEGMENTS`` segments of media time). After a restart (:meth:`LlLadder.end_session` with
``aligned``) what waits is dropped: the others never got that media, and starting a segment with it
would number the next segments of that rendition one ahead of the others, for ever.

Each rendition's playlists carry ``EXT-X-RENDITION-REPORT`` for the others (RFC 8216bis 4.4.5.4:
their last Media Sequence Number and Part Index at the time this one is rendered), so a player that
switches knows which part to ask the other rendition for.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Sequence

from formats.flv import is_keyframe
from formats.m3u8 import LlPlaylist, rendition_report

from .ll_stream import LlRendition, LlUpdate

__all__ = ["LlLadder", "FOLLOW_HOLD_MS", "ALIGN_HOLD_SEGMENTS"]

#: An audio-only rendition's frames wait at most this long (media time) for the reference video to
#: pass them; a video that stalls longer cannot hold the audio rendition back further.
FOLLOW_HOLD_MS = 1000
#: A video rendition's keyframe waits at most this many segments (media time) for the other video
#: renditions to reach it: one that stalls longer cannot hold the others back further.
ALIGN_HOLD_SEGMENTS = 2


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
        # The video renditions' gates (transcoded only: their keyframes are on the same instants).
        video = [n for n in names if n not in self.followers]
        self._gated = frozenset(video) if transcoded and len(video) > 1 else frozenset()
        self._gate: dict[str, deque[tuple[str, int, bytes, float]]] = {n: deque() for n in self._gated}
        self._arrived: dict[str, int] = {}  # per gated rendition: its latest video frame's time this session
        self._gate_ms = int(ALIGN_HOLD_SEGMENTS * segment_seconds * 1000)
        self.gate_dropped = 0  # tags dropped at a restart because the other renditions never got that far

    def select(self, names: Sequence[str]) -> None:
        """Keep only ``names`` (in ladder order): the rungs chosen for the source at the transcoder's
        first start, before any of their media. The gates and the reference follow: a rung that is never
        encoded must not hold the others back, nor be the one the followers are cut on."""
        kept = [n for n in self.names if n in names]
        if not kept or set(names) - set(self.names) or all(n in self.followers for n in kept):
            raise ValueError(f"cannot keep {tuple(names)} of {self.names}")
        self.names = tuple(kept)
        self.renditions = {n: self.renditions[n] for n in kept}
        self.followers = frozenset(n for n in self.followers if n in kept)
        self.reference = next(n for n in kept if n not in self.followers)
        self._held = {n: self._held[n] for n in self.followers}
        self._cuts = {n: self._cuts[n] for n in self.followers}
        video = [n for n in kept if n not in self.followers]
        self._gated = self._gated & frozenset(video) if len(video) > 1 else frozenset()
        self._gate = {n: self._gate[n] for n in self._gated}
        self._arrived = {n: t for n, t in self._arrived.items() if n in self._gated}

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
        for gate in self._gate.values():
            gate.clear()
        self._arrived.clear()

    def expect_streams(self, audio: bool, video: bool) -> None:
        for name, rendition in self.renditions.items():
            rendition.expect_streams(audio, False) if name in self.followers else rendition.expect_streams(audio, video)

    def end_session(self, aligned: bool = False) -> list[tuple[str, LlUpdate]]:
        """The session's input ended: every rendition completes its segment in progress.

        ``aligned`` (the transcoder died): what waits at a gate is dropped, so that every rendition
        ends at the same segment; otherwise (its outputs all came to their end) it is fed first."""
        out = self._open_gates(drop=aligned)
        out += [(name, self._flush_follower(name)) for name in self.followers]
        return out + [(name, self.renditions[name].end_session()) for name in self.names]

    def end(self) -> list[tuple[str, LlUpdate]]:
        out = self._open_gates(drop=False)
        out += [(name, self._flush_follower(name)) for name in self.followers]
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
        if name not in self._gated:
            return self._feed_video(name, kind, timestamp_ms, payload, wall)
        gate = self._gate[name]
        gate.append((kind, timestamp_ms, payload, wall))
        if kind == "video" and not LlRendition.is_header(kind, payload):
            self._arrived[name] = max(timestamp_ms, self._arrived.get(name, timestamp_ms))
        out: list[tuple[str, LlUpdate]] = []
        progress = True
        while progress:  # a rendition let through may be the one the others were waiting for
            progress = False
            for gated in self.names:
                if gated in self._gated and self._gate[gated]:
                    passed = self._pass_gate(gated)
                    progress = progress or bool(passed)
                    out += passed
        return out

    def _pass_gate(self, name: str) -> list[tuple[str, LlUpdate]]:
        """Feed ``name``'s waiting tags up to its next keyframe that another video rendition has not
        reached (media time), unless it has waited longer than the gate's limit."""
        gate, out = self._gate[name], []
        while gate:
            kind, timestamp_ms, payload, wall = gate[0]
            if kind == "video" and _starts_gop(payload) and gate[-1][1] - timestamp_ms <= self._gate_ms:
                if any(self._arrived.get(other, -1) < timestamp_ms for other in self._gated if other != name):
                    break
            gate.popleft()
            out += self._feed_video(name, kind, timestamp_ms, payload, wall)
        return out

    def _open_gates(self, drop: bool) -> list[tuple[str, LlUpdate]]:
        out = []
        for name in self.names:
            gate = self._gate.get(name)
            while gate:
                item = gate.popleft()
                if drop:
                    self.gate_dropped += 1
                else:
                    out += self._feed_video(name, *item)
        return out

    def _feed_video(self, name: str, kind: str, timestamp_ms: int, payload: bytes,
                    wall: float) -> list[tuple[str, LlUpdate]]:
        """One tag of a video rendition into its muxer; the reference's segment starts cut the followers."""
        rendition = self.renditions[name]
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


def _starts_gop(payload: bytes) -> bool:
    """A video keyframe (not a sequence header): where a transcoded rendition may start a segment."""
    return len(payload) >= 2 and not LlRendition.is_header("video", payload) and is_keyframe(payload)


def _merge(into: LlUpdate, update: LlUpdate) -> None:
    into.files.extend(update.files)
    into.segments.extend(update.segments)
    into.removed.extend(update.removed)
    into.changed = into.changed or update.changed
    into.dropped += update.dropped
