"""Decode times that only go forward, per track, whatever the publisher sends.

FLV timestamps are decode times. A publisher (or one of our converters: a VP8 transcode whose RTP
times round to the same millisecond) may repeat one or step back a little; ffmpeg then fails
("non monotonically increasing dts ... 23 >= 23") and fMP4 cannot carry it. Pure: the hub runs
every publisher's tags through one guard per publish before the packager and the taps see them.

- a timestamp equal to the track's last one, or at most ``max_adjust_ms`` behind it, becomes the
  last one plus 1 ms (counted in ``adjusted``);
- further behind, the tag is dropped (counted in ``dropped``): one stray frame from another clock
  must not drag the track back;
- when the track stays that far behind for ``rebase_after_ms`` of its own time (the publisher's
  clock restarted without reconnecting), the track is re-based to continue from its last time,
  at a video keyframe (counted in ``rebased``);
- sequence headers and AVC end-of-sequence markers pass as they are and do not move the clock
  (their time is the next frame's, or the last one's: ffmpeg ends every FLV publish with one).
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.flv import is_keyframe, is_sequence_header

__all__ = ["DtsGuard"]


@dataclass
class _Track:
    last: int
    offset: int = 0
    behind_since: int | None = None  # input time of the first far-behind tag of the current run


class DtsGuard:
    """Per-track monotonic decode times for one publish (audio and video judged separately)."""

    def __init__(self, max_adjust_ms: int = 1000, rebase_after_ms: int = 2000) -> None:
        self.max_adjust_ms = max_adjust_ms
        self.rebase_after_ms = rebase_after_ms
        self._tracks: dict[str, _Track] = {}
        self.adjusted = 0
        self.dropped = 0
        self.rebased = 0

    def check(self, kind: str, timestamp_ms: int, payload: bytes) -> int | None:
        """The timestamp to pass on for this tag, or None to drop it."""
        if is_sequence_header(kind, payload) or _end_of_sequence(kind, payload):
            track = self._tracks.get(kind)
            return timestamp_ms if track is None else max(0, timestamp_ms + track.offset)
        track = self._tracks.get(kind)
        if track is None:
            self._tracks[kind] = _Track(timestamp_ms)
            return timestamp_ms
        out = timestamp_ms + track.offset
        if out > track.last:
            track.last, track.behind_since = out, None
            return out
        if track.last - out <= self.max_adjust_ms:
            self.adjusted += 1
            track.last += 1
            track.behind_since = None
            return track.last
        if track.behind_since is None:
            track.behind_since = timestamp_ms
        if (timestamp_ms - track.behind_since >= self.rebase_after_ms
                and (kind != "video" or is_keyframe(payload))):
            track.offset += track.last + 1 - out
            track.last += 1
            track.behind_since = None
            self.rebased += 1
            return track.last
        self.dropped += 1
        return None

    @property
    def touched(self) -> int:
        """Tags whose time was changed or that were dropped."""
        return self.adjusted + self.dropped + self.rebased


def _end_of_sequence(kind: str, payload: bytes) -> bool:
    """A legacy AVC/HEVC end-of-sequence tag (AVCPacketType 2): a marker, not a frame."""
    return kind == "video" and len(payload) >= 2 and not payload[0] & 0x80 and payload[0] & 0x0F in (7, 12) \
        and payload[1] == 2
