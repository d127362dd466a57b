"""What the master playlist advertises for each rendition.

Pure: from the options, the publisher's onMetaData, its sequence headers and
the sizes of segments seen so far.  BANDWIDTH must be a peak (RFC 8216
4.3.4.2), so for passthrough we start from an estimate and only ever raise
it when a measured segment exceeds it.
"""

from __future__ import annotations

from typing import Any, Mapping

from formats.m3u8 import VariantStream

from .ffmpeg_args import AAC_LC, h264_codecs
from .options import PASSTHROUGH_RENDITION, PackagerOptions, Rendition

__all__ = ["codecs_from_sequence_headers", "build_variants", "MEDIA_PLAYLIST"]

#: Name of each rendition's sliding-window playlist, relative to its folder.
MEDIA_PLAYLIST = "live.m3u8"
#: Mux overhead of MPEG-TS over the elementary streams' bitrates.
TS_OVERHEAD = 1.1


def _avc_codec(payload: bytes) -> str | None:
    # FLV VideoTagHeader(1) + AVCPacketType(1) + CompositionTime(3) + avcC
    if len(payload) < 9 or payload[0] & 0x0F != 7 or payload[1] != 0 or payload[5] != 1:
        return None
    return f"avc1.{payload[6]:02x}{payload[7]:02x}{payload[8]:02x}"


def _aac_codec(payload: bytes) -> str | None:
    # AudioTagHeader(1) + AACPacketType(1) + AudioSpecificConfig
    if len(payload) < 3 or payload[0] >> 4 != 10 or payload[1] != 0:
        return None
    object_type = payload[2] >> 3
    if object_type == 31 and len(payload) >= 4:
        object_type = 32 + (((payload[2] & 0x07) << 3) | (payload[3] >> 5))
    return f"mp4a.40.{object_type}"


def codecs_from_sequence_headers(headers: Mapping[str, bytes]) -> str | None:
    """RFC 6381 CODECS for passthrough, from the AVC/AAC sequence headers (None if unknown)."""
    parts = []
    if "video" in headers:
        video = _avc_codec(headers["video"])
        if video is None:
            return None  # HEVC/AV1 or malformed: better no CODECS than a wrong one
        parts.append(video)
    if "audio" in headers:
        audio = _aac_codec(headers["audio"])
        if audio is None:
            return None
        parts.append(audio)
    return ",".join(parts) or None


def _number(metadata: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _scaled_resolution(rendition: Rendition, metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    if rendition.height is None:
        return None
    width = _number(metadata, "width")
    height = _number(metadata, "height")
    if width and height:
        # ffmpeg's scale=-2:H keeps the aspect and rounds the width to even.
        return int(round(rendition.height * width / height / 2)) * 2, rendition.height
    nominal = rendition.nominal_width
    assert nominal is not None
    return nominal, rendition.height


def build_variants(
    options: PackagerOptions,
    metadata: Mapping[str, Any] | None,
    sequence_headers: Mapping[str, bytes],
    measured_peak_bps: int = 0,
    has_audio: bool = True,
) -> list[VariantStream]:
    """Variants in ladder order (passthrough: one), URIs ``<rendition>/live.m3u8``.

    ``has_audio`` False (a publisher without audio): no audio-only variant, no AAC in CODECS."""
    meta = metadata or {}
    frame_rate = _number(meta, "framerate", "fps")
    if options.passthrough:
        datarate = (_number(meta, "videodatarate") or 0) + (_number(meta, "audiodatarate") or 0)
        estimate = int(datarate * 1000 * TS_OVERHEAD) if datarate else options.passthrough_bandwidth
        width, height = _number(meta, "width"), _number(meta, "height")
        resolution = (int(width), int(height)) if width and height else None
        return [
            VariantStream(
                uri=f"{PASSTHROUGH_RENDITION}/{MEDIA_PLAYLIST}",
                bandwidth=max(estimate, measured_peak_bps),
                resolution=resolution,
                codecs=codecs_from_sequence_headers(sequence_headers),
                frame_rate=frame_rate if resolution else None,
            )
        ]
    variants = []
    for rendition in options.ladder:
        if rendition.is_audio_only and not has_audio:
            continue
        average = (rendition.video_kbps + (rendition.audio_kbps if has_audio else 0)) * 1000
        if rendition.is_audio_only:
            codecs = AAC_LC
        else:
            codecs = f"{h264_codecs(rendition.h264_level)},{AAC_LC}" if has_audio else h264_codecs(rendition.h264_level)
        variants.append(
            VariantStream(
                uri=f"{rendition.name}/{MEDIA_PLAYLIST}",
                bandwidth=int(average * TS_OVERHEAD),
                average_bandwidth=average,
                resolution=_scaled_resolution(rendition, meta),
                codecs=codecs,
                frame_rate=None if rendition.is_audio_only else frame_rate,
            )
        )
    return variants
