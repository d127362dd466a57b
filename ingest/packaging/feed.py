"""The bounded FLV tag queue between a publisher and ffmpeg, with its drop and resume rules.

Pure (no asyncio): the packager pushes from the ingest callback and its
writer pops bytes for ffmpeg's stdin.  Rules:

- the queue is bounded in bytes; when full, video is dropped until the next
  keyframe (a P-frame without its reference is useless) and audio is
  dropped; every dropped tag is counted;
- metadata and sequence headers are cached; they bypass the bound (they are
  tiny) up to a hard cap of twice the bound;
- each ffmpeg process first gets the FLV header, the cached metadata and the
  cached AVC/AAC sequence headers; after a restart it resumes at the next
  video keyframe.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from formats.cmaf import CmafError, parse_avc_config
from formats.flv import flv_header, flv_tag, is_keyframe, is_sequence_header, script_tag_from_metadata

__all__ = ["FlvFeed", "QueuedTag", "TAG_TYPES", "announced_streams", "publisher_has_audio", "publisher_source_height"]

TAG_TYPES = {"audio": 8, "video": 9}
#: FLV tag header (11) + PreviousTagSize (4), counted with the payload.
TAG_OVERHEAD = 15


@dataclass(frozen=True)
class QueuedTag:
    """A media tag waiting for ffmpeg; ``received_at`` is the wall clock (s) at ingest."""

    kind: str
    timestamp_ms: int
    payload: bytes
    received_at: float
    keyframe: bool
    sequence_header: bool

    @property
    def size(self) -> int:
        return len(self.payload) + TAG_OVERHEAD


@dataclass(frozen=True)
class _MetadataMarker:
    metadata: Mapping[str, Any]
    size: int


@dataclass(frozen=True)
class FirstMedia:
    """Where the current process's timeline starts: output time 0 ~ this tag."""

    timestamp_ms: int
    received_at: float


def announced_streams(metadata: Mapping[str, Any] | None) -> tuple[bool, bool]:
    """(has_audio, has_video) as announced by onMetaData; both when unknown."""
    if not metadata:
        return True, True
    audio = any(k in metadata for k in ("audiocodecid", "audiosamplerate", "audiodatarate"))
    video = any(k in metadata for k in ("videocodecid", "width", "height", "videodatarate"))
    if not audio and not video:
        return True, True
    return audio, video


def publisher_has_audio(metadata: Mapping[str, Any] | None, sequence_headers: Mapping[str, bytes]) -> bool:
    """Whether a ladder must encode audio: an AAC sequence header seen, or onMetaData announcing audio.

    A publisher without audio (``ffmpeg -an``, a capture box) announces only video, and ffmpeg's
    ``-map 0:a`` would then fail at every start; unknown (no onMetaData, no header yet) counts as audio,
    as before."""
    return "audio" in sequence_headers or announced_streams(metadata)[0]


def publisher_source_height(metadata: Mapping[str, Any] | None, sequence_headers: Mapping[str, bytes]) -> int | None:
    """The publisher's picture height: its AVC sequence header's (what the encoder really sends), else
    onMetaData's ``height``; None when neither tells (the ABR ladder is then encoded whole)."""
    header = sequence_headers.get("video")
    if header is not None and len(header) > 5 and header[0] & 0x0F == 7:
        try:
            return parse_avc_config(header[5:]).height
        except CmafError:
            pass
    height = (metadata or {}).get("height")
    if isinstance(height, (int, float)) and not isinstance(height, bool) and 0 < height < 100_000:
        return int(height)
    return None


def _is_end_of_sequence(payload: bytes) -> bool:
    """Legacy AVC/HEVC end-of-sequence: flagged key frame, but nothing to resume from."""
    return len(payload) >= 2 and not payload[0] & 0x80 and payload[0] & 0x0F in (7, 12) and payload[1] == 2


class FlvFeed:
    """FIFO of FLV tags for one ffmpeg stdin at a time."""

    def __init__(self, max_bytes: int, on_drop: Callable[[], None] = lambda: None) -> None:
        self.max_bytes = max_bytes
        self._on_drop = on_drop
        self._queue: deque[QueuedTag | _MetadataMarker] = deque()
        self.queued_bytes = 0
        self.dropped_tags = 0
        self.metadata: Mapping[str, Any] | None = None
        self.sequence_headers: dict[str, bytes] = {}
        #: The tallest picture this session's publisher has announced (:attr:`source_height` at its highest).
        self.tallest_height: int | None = None
        self._drop_video_until_keyframe = False
        # Per-process state, reset by new_process().
        self._header_sent = False
        self._resync = False
        self._sent_metadata: Mapping[str, Any] | None = None
        self._sent_headers: dict[str, bytes] = {}
        self.first_media: FirstMedia | None = None

    def __len__(self) -> int:
        return len(self._queue)

    # -- producer side -------------------------------------------------
    def reset(self) -> None:
        """Forget everything (a new broadcast session: new publisher, new headers)."""
        self._queue.clear()
        self.queued_bytes = 0
        self.metadata = None
        self.sequence_headers = {}
        self.tallest_height = None
        self._drop_video_until_keyframe = False

    def _note_height(self) -> None:
        height = self.source_height
        if height is not None and (self.tallest_height is None or height > self.tallest_height):
            self.tallest_height = height

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.metadata = dict(metadata)
        self._note_height()
        marker = _MetadataMarker(self.metadata, len(script_tag_from_metadata(dict(self.metadata))))
        if self.queued_bytes + marker.size <= 2 * self.max_bytes:
            self._queue.append(marker)
            self.queued_bytes += marker.size

    def push(self, kind: str, timestamp_ms: int, payload: bytes, received_at: float) -> bool:
        """Queue a media tag; False when it was dropped. Never blocks, never grows past the cap."""
        if kind not in TAG_TYPES:
            raise ValueError(f"unknown media kind {kind!r}")
        seq = is_sequence_header(kind, payload)
        key = kind == "video" and not seq and is_keyframe(payload) and not _is_end_of_sequence(payload)
        tag = QueuedTag(kind, timestamp_ms, payload, received_at, key, seq)
        if seq:
            self.sequence_headers[kind] = payload
            if kind == "video":
                self._note_height()
            if self.queued_bytes + tag.size <= 2 * self.max_bytes:
                self._append(tag)
                return True
            # Not queued, but cached: re-sent before the next keyframe.
            self._drop_video_until_keyframe = True
            self._dropped()
            return False
        if kind == "video" and self._drop_video_until_keyframe and not key:
            self._dropped()
            return False
        if self.queued_bytes + tag.size > self.max_bytes:
            self._dropped()
            if kind == "video":
                self._drop_video_until_keyframe = True
            return False
        if key:
            self._drop_video_until_keyframe = False
        self._append(tag)
        return True

    def _dropped(self) -> None:
        self.dropped_tags += 1
        self._on_drop()

    def _append(self, tag: QueuedTag) -> None:
        self._queue.append(tag)
        self.queued_bytes += tag.size

    def skip_to_latest_keyframe(self) -> int:
        """Forget the media queued before the latest video keyframe (ffmpeg's first start was held: it
        starts from there rather than a backlog it would have to catch up on); returns the tags forgotten.
        Metadata and sequence headers stay cached (the preamble sends them); not counted as drops."""
        last = max((i for i, item in enumerate(self._queue) if isinstance(item, QueuedTag) and item.keyframe),
                   default=0)
        for _ in range(last):
            self.queued_bytes -= self._queue.popleft().size
        return last

    # -- consumer side -------------------------------------------------
    def new_process(self, resync: bool) -> None:
        """The next bytes go to a fresh ffmpeg: send header and caches first.

        ``resync``: we are resuming mid-stream (restart), so skip to the next
        video keyframe when the stream has video.
        """
        self._header_sent = False
        self._sent_metadata = None
        self._sent_headers = {}
        self._resync = resync
        self.first_media = None

    @property
    def has_video(self) -> bool:
        if "video" in self.sequence_headers:
            return True
        return announced_streams(self.metadata)[1] and self.metadata is not None

    @property
    def has_audio(self) -> bool:
        """What :func:`publisher_has_audio` says of this session's publisher so far."""
        return publisher_has_audio(self.metadata, self.sequence_headers)

    @property
    def source_height(self) -> int | None:
        """What :func:`publisher_source_height` says of this session's publisher so far."""
        return publisher_source_height(self.metadata, self.sequence_headers)

    def pop(self) -> bytes | None:
        """Bytes for ffmpeg's stdin, or None when the queue is empty."""
        out = bytearray()
        while self._queue:
            item = self._queue.popleft()
            self.queued_bytes -= item.size
            if isinstance(item, _MetadataMarker):
                if self._header_sent and item.metadata != self._sent_metadata:
                    out += script_tag_from_metadata(dict(item.metadata))
                    self._sent_metadata = item.metadata
                continue
            if item.sequence_header:
                if self._header_sent and self._sent_headers.get(item.kind) != item.payload:
                    out += flv_tag(TAG_TYPES[item.kind], item.timestamp_ms, item.payload)
                    self._sent_headers[item.kind] = item.payload
                continue
            if self._resync and self.has_video and not item.keyframe:
                self._dropped()
                continue
            self._resync = False
            if not self._header_sent:
                out += self._preamble(item.timestamp_ms)
            out += self._resend_changed_headers(item)
            out += flv_tag(TAG_TYPES[item.kind], item.timestamp_ms, item.payload)
            if self.first_media is None:
                self.first_media = FirstMedia(item.timestamp_ms, item.received_at)
            return bytes(out)
        return bytes(out) if out else None

    def _preamble(self, timestamp_ms: int) -> bytes:
        has_audio, has_video = announced_streams(self.metadata)
        if "audio" in self.sequence_headers:
            has_audio = True
        if "video" in self.sequence_headers:
            has_video = True
        out = bytearray(flv_header(has_audio, has_video))
        if self.metadata is not None:
            out += script_tag_from_metadata(dict(self.metadata))
            self._sent_metadata = self.metadata
        for kind in ("video", "audio"):
            header = self.sequence_headers.get(kind)
            if header is not None:
                out += flv_tag(TAG_TYPES[kind], timestamp_ms, header)
                self._sent_headers[kind] = header
        self._header_sent = True
        return bytes(out)

    def _resend_changed_headers(self, item: QueuedTag) -> bytes:
        """A sequence header dropped on overflow must precede the keyframe that uses it."""
        if not item.keyframe and item.kind != "audio":
            return b""
        header = self.sequence_headers.get(item.kind)
        if header is None or self._sent_headers.get(item.kind) == header:
            return b""
        self._sent_headers[item.kind] = header
        return flv_tag(TAG_TYPES[item.kind], item.timestamp_ms, header)
