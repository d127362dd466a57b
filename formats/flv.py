"""FLV (the tag format RTMP media travels in): tag framing and codec inspection, bytes in and out.

RTMP audio/video message bodies are FLV tag bodies, so ingest, the packager's feed and the caption decoder share it.
Inspection never raises: publishers send short, odd and Enhanced-RTMP payloads (FourCC
ex-headers, ModEx preludes, multitrack) and a parser crash must never drop a stream.
"""

from __future__ import annotations

from typing import Any, Final, Iterator

from formats import amf0

__all__ = [
    "TAG_AUDIO",
    "TAG_VIDEO",
    "TAG_SCRIPT",
    "FlvTagReader",
    "flv_header",
    "flv_tag",
    "script_tag_from_metadata",
    "video_codec",
    "audio_codec",
    "is_keyframe",
    "is_sequence_header",
]

TAG_AUDIO: Final = 8
TAG_VIDEO: Final = 9
TAG_SCRIPT: Final = 18

_LEGACY_VIDEO_CODECS: Final = {
    2: "flv1",  # Sorenson H.263
    3: "flashsv",
    4: "vp6f",
    5: "vp6a",
    6: "flashsv2",
    7: "h264",
    12: "hevc",  # pre-standard extension used by some Chinese CDNs/encoders
    13: "av1",  # same
}
_VIDEO_FOURCCS: Final = {
    b"avc1": "h264",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"vp08": "vp8",
}
_LEGACY_AUDIO_CODECS: Final = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm_s16le",
    4: "nellymoser",
    5: "nellymoser",
    6: "nellymoser",
    7: "pcm_alaw",
    8: "pcm_mulaw",
    10: "aac",
    11: "speex",
    14: "mp3",
    15: "native",
}
_AUDIO_FOURCCS: Final = {
    b"mp4a": "aac",
    b".mp3": "mp3",
    b"Opus": "opus",
    b"fLaC": "flac",
    b"ac-3": "ac3",
    b"ec-3": "eac3",
}

_VIDEO_FRAME_KEY: Final = 1
_VIDEO_FRAME_COMMAND: Final = 5
_EX_SEQUENCE_START: Final = 0
_EX_VIDEO_METADATA: Final = 4
_EX_VIDEO_MPEG2TS_SEQUENCE_START: Final = 5
_EX_VIDEO_MULTITRACK: Final = 6
_EX_AUDIO_MULTITRACK: Final = 5
_EX_MODEX: Final = 7
_SOUND_FORMAT_EX_HEADER: Final = 9


# --------------------------------------------------------------------------- framing


def flv_header(has_audio: bool, has_video: bool) -> bytes:
    """FLV file header followed by PreviousTagSize0, ready for the first tag."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + (9).to_bytes(4, "big") + b"\0\0\0\0"


def flv_tag(tag_type: int, timestamp_ms: int, payload: bytes) -> bytes:
    """One FLV tag plus its trailing PreviousTagSize. Timestamps wrap at 32 bits."""
    size = len(payload)
    if size > 0xFFFFFF:
        raise ValueError(f"FLV tag payload of {size} bytes exceeds 16 MiB")
    ts = timestamp_ms & 0xFFFFFFFF
    header = (
        bytes((tag_type & 0x1F,))
        + size.to_bytes(3, "big")
        + (ts & 0xFFFFFF).to_bytes(3, "big")
        + bytes((ts >> 24,))
        + b"\0\0\0"
    )
    return header + payload + (11 + size).to_bytes(4, "big")


def read_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp ms, payload) of every whole tag of an FLV file: the reverse of
    ``flv_header`` + ``flv_tag``. A truncated last tag is left out; a missing signature is an error."""
    if data[:3] != b"FLV" or len(data) < 9:
        raise ValueError("not an FLV file: no FLV signature")
    pos = int.from_bytes(data[5:9], "big") + 4
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 11 + size > len(data):
            return
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        yield data[pos] & 0x1F, stamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


class FlvTagReader:
    """The incremental form of :func:`read_tags`: an FLV byte stream (a pipe) fed in chunks of any
    size, whole tags out as they complete. Raises ``ValueError`` when the stream does not start
    with the FLV signature; nothing else in the stream is judged here (the caller inspects tags)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header_done = False
        self.tags = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """(tag type, timestamp ms, payload) of every tag completed by ``data``."""
        buffer = self._buffer
        buffer += data
        pos = 0
        if not self._header_done:
            if len(buffer) < 9:
                if buffer[:3] and bytes(buffer[:3]) != b"FLV"[: len(buffer[:3])]:
                    raise ValueError("not an FLV stream: no FLV signature")
                return []
            if buffer[:3] != b"FLV":
                raise ValueError("not an FLV stream: no FLV signature")
            offset = int.from_bytes(buffer[5:9], "big")
            if len(buffer) < offset + 4:
                return []
            pos = offset + 4
            self._header_done = True
        out: list[tuple[int, int, bytes]] = []
        while pos + 11 <= len(buffer):
            size = int.from_bytes(buffer[pos + 1 : pos + 4], "big")
            if pos + 15 + size > len(buffer):
                break
            stamp = int.from_bytes(buffer[pos + 4 : pos + 7], "big") | buffer[pos + 7] << 24
            out.append((buffer[pos] & 0x1F, stamp, bytes(buffer[pos + 11 : pos + 11 + size])))
            pos += 15 + size
        del buffer[:pos]
        self.tags += len(out)
        return out


def script_tag_from_metadata(metadata: dict[str, Any]) -> bytes:
    """An ``onMetaData`` script tag at timestamp 0, as players expect it first."""
    body = amf0.encode("onMetaData", amf0.ECMAArray(metadata))
    return flv_tag(TAG_SCRIPT, 0, body)


# --------------------------------------------------------------------------- inspection


def _skip_modex(payload: bytes, pos: int, packet_type: int) -> tuple[int, int] | None:
    """Skip Enhanced-RTMP v2 ModEx preludes; return (position, real packet type)."""
    while packet_type == _EX_MODEX:
        if pos >= len(payload):
            return None
        size = payload[pos] + 1
        pos += 1
        if size == 256:
            if pos + 2 > len(payload):
                return None
            size = int.from_bytes(payload[pos : pos + 2], "big") + 1
            pos += 2
        pos += size
        if pos >= len(payload):
            return None
        packet_type = payload[pos] & 0x0F
        pos += 1
    return pos, packet_type


def _ex_video_header(payload: bytes) -> tuple[int, bytes | None] | None:
    """Parse an ExVideoTagHeader: (packet type, FourCC or None when not present)."""
    parsed = _skip_modex(payload, 1, payload[0] & 0x0F)
    if parsed is None:
        return None
    pos, packet_type = parsed
    frame_type = (payload[0] >> 4) & 0x07
    if packet_type != _EX_VIDEO_METADATA and frame_type == _VIDEO_FRAME_COMMAND:
        return packet_type, None
    if packet_type == _EX_VIDEO_MULTITRACK:
        if pos >= len(payload):
            return None
        packet_type = payload[pos] & 0x0F
        # Either the FourCC shared by all tracks or (ManyTracksManyCodecs) the first
        # track's FourCC follows, at the same offset.
        pos += 1
    fourcc = bytes(payload[pos : pos + 4])
    return packet_type, fourcc if len(fourcc) == 4 else None


def video_codec(payload: bytes) -> str | None:
    """Codec of an FLV video tag body: "h264", "hevc", "av1", "vp9", ... or "unknown".

    None when the body carries no codec information (empty, truncated, command frame).
    """
    if not payload:
        return None
    if payload[0] & 0x80:
        parsed = _ex_video_header(payload)
        if parsed is None or parsed[1] is None:
            return None
        return _VIDEO_FOURCCS.get(parsed[1], "unknown")
    return _LEGACY_VIDEO_CODECS.get(payload[0] & 0x0F, "unknown")


def is_keyframe(payload: bytes) -> bool:
    """Whether a video tag body is a key frame (sequence headers count, as in FLV)."""
    if not payload:
        return False
    if payload[0] & 0x80:
        parsed = _ex_video_header(payload)
        if parsed is None or parsed[0] == _EX_VIDEO_METADATA:
            return False
    return (payload[0] >> 4) & 0x07 == _VIDEO_FRAME_KEY


def is_sequence_header(kind: str, payload: bytes) -> bool:
    """Whether an audio/video tag body is a decoder configuration record (AVC/AAC/...)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if kind == "video":
        if first & 0x80:
            parsed = _ex_video_header(payload)
            return parsed is not None and parsed[0] in (
                _EX_SEQUENCE_START,
                _EX_VIDEO_MPEG2TS_SEQUENCE_START,
            )
        return (first & 0x0F) in (7, 12, 13) and payload[1] == 0
    if kind == "audio":
        sound_format = first >> 4
        if sound_format == _SOUND_FORMAT_EX_HEADER:
            skipped = _skip_modex(payload, 1, first & 0x0F)
            if skipped is None:
                return False
            pos, packet_type = skipped
            if packet_type == _EX_AUDIO_MULTITRACK and pos < len(payload):
                packet_type = payload[pos] & 0x0F
            return packet_type == _EX_SEQUENCE_START
        return sound_format == 10 and payload[1] == 0
    return False


def audio_codec(payload: bytes) -> str:
    """Codec of an FLV audio tag body: "aac", "mp3", "opus", ... or "unknown"."""
    if not payload:
        return "unknown"
    sound_format = payload[0] >> 4
    if sound_format != _SOUND_FORMAT_EX_HEADER:
        return _LEGACY_AUDIO_CODECS.get(sound_format, "unknown")
    parsed = _skip_modex(payload, 1, payload[0] & 0x0F)
    if parsed is None:
        return "unknown"
    pos, packet_type = parsed
    if packet_type == _EX_AUDIO_MULTITRACK:
        if pos >= len(payload):
            return "unknown"
        pos += 1  # either the shared FourCC or the first track's FourCC follows
    return _AUDIO_FOURCCS.get(bytes(payload[pos : pos + 4]), "unknown")
