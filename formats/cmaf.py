"""Fragmented MP4 (ISO/IEC 14496-12, CMAF-style fragments) for LL-HLS: FLV codec data in, boxes out.

A sans-I/O muxer fed what an RTMP/FLV publisher already sends, without re-encoding: H.264 as an
AVCDecoderConfigurationRecord (the FLV sequence header) then length-prefixed NAL units (AVCC) with
FLV's dts and composition offset in milliseconds, and AAC as an AudioSpecificConfig then raw
frames. It returns an init segment (``ftyp`` + ``moov`` with ``mvex``/``trex``, one ``trak`` per
stream, ``avcC`` / ``esds``) and LL-HLS parts, each one ``moof`` (``mfhd``; per track a ``traf``
with ``tfhd`` default-base-is-moof, ``tfdt`` and ``trun``) + ``mdat``. A media segment is the
concatenation of its parts, so segment files and part files are the same bytes.

Cutting: parts are cut on time (never longer than ``part_target``, so latency does not depend on
the encoder's GOP); a new segment starts at the first keyframe once the segment has reached
``segment_target``. A sample's duration is only known when the next one arrives (FLV carries no
durations), so the newest video sample is held back until then.

Timescales: 90 kHz for video, the sample rate for audio. FLV millisecond times are exact in 90 kHz
(x90), and 90 kHz is the MPEG-TS clock that WebVTT's ``X-TIMESTAMP-MAP`` speaks, so captions align
without rounding; AAC frames are exactly 1024 samples, so an audio timescale of the sample rate
keeps every duration exact and the audio timeline never drifts by rounding, as a common clock
(1 kHz FLV time, or 90 kHz with 1024 x 90000 / 44100) would.

Audio and video are muxed into one file (one ``traf`` each per part), which HLS allows and which
halves a viewer's part requests compared with a separate audio rendition; such a file is fMP4 as
HLS means it rather than a single-track CMAF track file, so the brands do not claim ``cmfc``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from formats.h264 import BitReader, H264Error, sps_size

__all__ = [
    "AacConfig",
    "AAC_FRAME_SAMPLES",
    "AudioFormat",
    "AvcConfig",
    "CmafError",
    "CmafMuxer",
    "Part",
    "VIDEO_TIMESCALE",
    "audio_format",
    "audio_fragment",
    "audio_init_segment",
    "fragment_start_90khz",
    "parse_adts",
    "single_track_fragment",
    "single_track_init",
    "track_starts",
    "parse_aac_config",
    "parse_avc_config",
]

VIDEO_TIMESCALE: Final = 90_000
AAC_FRAME_SAMPLES: Final = 1024
# Sample flags (ISO/IEC 14496-12 8.8.3.1): a keyframe depends on no other sample (sample_depends_on
# = 2); any other frame depends on others (1) and is a non-sync sample (sample_is_non_sync_sample).
SYNC_SAMPLE_FLAGS: Final = 0x02000000
NON_SYNC_SAMPLE_FLAGS: Final = 0x01010000
# An audio jump forward larger than this (a publisher's gap) re-anchors the audio timeline on the
# frame's own timestamp; FLV's millisecond rounding alone never comes near it.
AUDIO_RESYNC_SECONDS: Final = 0.1

_AAC_SAMPLE_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_TFHD_DEFAULT_BASE_IS_MOOF: Final = 0x020000
_TRUN_DATA_OFFSET: Final = 0x000001
_TRUN_DURATION: Final = 0x000100
_TRUN_SIZE: Final = 0x000200
_TRUN_FLAGS: Final = 0x000400
_TRUN_CTO: Final = 0x000800
_UNITY_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


class CmafError(ValueError):
    """Codec configuration we cannot put into an MP4 sample entry."""


# --------------------------------------------------------------------------- codec configuration


@dataclass(frozen=True)
class AvcConfig:
    """An H.264 stream's configuration: the avcC record as sent, and what the sample entry needs."""

    record: bytes
    width: int
    height: int
    profile: int
    compatibility: int
    level: int

    @property
    def codec(self) -> str:
        """RFC 6381 codec string for ``CODECS`` in a multivariant playlist (``avc1.64001f``)."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


@dataclass(frozen=True)
class AacConfig:
    """An AAC stream's AudioSpecificConfig and the sample rate and channels it declares."""

    asc: bytes
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codec(self) -> str:
        """RFC 6381 codec string (``mp4a.40.2`` for AAC-LC)."""
        return f"mp4a.40.{self.object_type}"


def parse_avc_config(record: bytes) -> AvcConfig:
    """Read an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), as in FLV's AVC sequence header."""
    record = bytes(record)
    if len(record) < 7 or record[0] != 1:
        raise CmafError("not an AVCDecoderConfigurationRecord (version 1)")
    count = record[5] & 0x1F
    pos = 6
    sps: list[bytes] = []
    for _ in range(count):
        if pos + 2 > len(record):
            raise CmafError("truncated AVCDecoderConfigurationRecord")
        size = int.from_bytes(record[pos : pos + 2], "big")
        if pos + 2 + size > len(record):
            raise CmafError("truncated AVCDecoderConfigurationRecord")
        sps.append(record[pos + 2 : pos + 2 + size])
        pos += 2 + size
    if not sps:
        raise CmafError("AVCDecoderConfigurationRecord without SPS")
    try:
        width, height = sps_size(sps[0])
    except H264Error as error:
        raise CmafError(str(error)) from None
    return AvcConfig(record, width, height, record[1], record[2], record[3])


def parse_aac_config(asc: bytes) -> AacConfig:
    """Read an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), as in FLV's AAC sequence header."""
    asc = bytes(asc)
    r = BitReader(asc)
    try:
        object_type = r.bits(5)
        if object_type == 31:
            object_type = 32 + r.bits(6)
        index = r.bits(4)
        rate = r.bits(24) if index == 15 else (_AAC_SAMPLE_RATES[index] if index < len(_AAC_SAMPLE_RATES) else 0)
        channels = r.bits(4)
    except H264Error:
        raise CmafError("truncated AudioSpecificConfig") from None
    if object_type == 0 or rate == 0:
        raise CmafError("AudioSpecificConfig without object type or sample rate")
    return AacConfig(asc, object_type, rate, channels)


# --------------------------------------------------------------------------- boxes


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3): tag, size in 7-bit groups, body."""
    size = len(body)
    groups = [size & 0x7F]
    size >>= 7
    while size:
        groups.append(0x80 | (size & 0x7F))
        size >>= 7
    return bytes((tag, *reversed(groups))) + body


def _esds(track_id: int, config: AacConfig) -> bytes:
    decoder_config = _descriptor(
        0x04,
        # objectTypeIndication 0x40 (MPEG-4 Audio), streamType 5 (audio) << 2 | reserved 1,
        # bufferSizeDB, maxBitrate, avgBitrate (0: not known when the stream starts).
        struct.pack(">BB3sII", 0x40, 0x15, b"\0\0\0", 0, 0) + _descriptor(0x05, config.asc),
    )
    es = _descriptor(0x03, struct.pack(">HB", track_id, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return _full(b"esds", 0, 0, es)


def _sample_entry_video(config: AvcConfig) -> bytes:
    return _box(
        b"avc1",
        b"\0" * 6 + struct.pack(">H", 1),  # reserved, data_reference_index
        b"\0" * 16,  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HHIIIH", config.width, config.height, 0x00480000, 0x00480000, 0, 1),
        b"\0" * 32,  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        _box(b"avcC", config.record),
    )


def _sample_entry_audio(track_id: int, config: AacConfig) -> bytes:
    rate = config.sample_rate << 16 if config.sample_rate < 0x10000 else 0
    return _box(
        b"mp4a",
        b"\0" * 6 + struct.pack(">H", 1),
        b"\0" * 8,  # reserved
        struct.pack(">HHHHI", config.channels or 2, 16, 0, 0, rate),
        _esds(track_id, config),
    )


@dataclass
class _Track:
    """One stream of the file: its id, clock and sample entry."""

    track_id: int
    timescale: int
    handler: bytes
    sample_entry: bytes
    width: int = 0
    height: int = 0

    def trak(self) -> bytes:
        video = self.handler == b"vide"
        tkhd = _full(
            b"tkhd", 0, 0x3,  # track_enabled | track_in_movie
            struct.pack(">IIIII", 0, 0, self.track_id, 0, 0),
            b"\0" * 8,
            struct.pack(">hhhH", 0, 0, 0 if video else 0x0100, 0),
            _UNITY_MATRIX,
            struct.pack(">II", self.width << 16, self.height << 16),
        )
        mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, self.timescale, 0, 0x55C4, 0))  # 'und'
        name = b"VideoHandler\0" if video else b"SoundHandler\0"
        hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, self.handler), name)
        media_header = _full(b"vmhd", 0, 1, b"\0" * 8) if video else _full(b"smhd", 0, 0, b"\0" * 4)
        dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
        stbl = _box(
            b"stbl",
            _full(b"stsd", 0, 0, struct.pack(">I", 1), self.sample_entry),
            _full(b"stts", 0, 0, struct.pack(">I", 0)),
            _full(b"stsc", 0, 0, struct.pack(">I", 0)),
            _full(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
            _full(b"stco", 0, 0, struct.pack(">I", 0)),
        )
        return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", media_header, dinf, stbl)))

    def trex(self) -> bytes:
        return _full(b"trex", 0, 0, struct.pack(">IIIII", self.track_id, 1, 0, 0, 0))


# --------------------------------------------------------------------------- muxer


@dataclass(frozen=True)
class Part:
    """One LL-HLS part: a ``moof`` + ``mdat`` to serve as is, and what the playlist says of it.

    ``independent`` means the part starts with a keyframe (or has no video), so a player may start
    there (``INDEPENDENT=YES``); ``segment_start`` means it is the first part of media segment
    ``msn``; ``index`` is its Part Index within that segment; ``start`` (decode time) and
    ``duration``, in seconds, are on the timeline of the leading track (video when there is video).
    A part closes when the sample after it arrives (FLV gives no durations), so a stalled
    publisher stalls parts: there is no time-based flush, only :meth:`CmafMuxer.flush` at the end.
    """

    data: bytes
    msn: int
    index: int
    start: float
    duration: float
    independent: bool
    segment_start: bool


@dataclass(slots=True)
class _Sample:
    data: bytes
    dts: int  # in the track's timescale
    cto: int = 0  # composition time offset, same units
    sync: bool = True
    duration: int = 0


@dataclass
class _Lead:
    """Samples of the leading track waiting to become the current part."""

    samples: list[_Sample] = field(default_factory=list)
    duration: int = 0


class CmafMuxer:
    """FLV-fed fMP4 muxer: ``add_video``/``add_audio`` return the parts they closed; ``flush`` ends.

    Video leads when there is video: parts and segments are cut on its samples and each part
    carries the audio frames that start before the part's end. Video before the first keyframe is
    dropped (a fragment cannot start there); audio waiting for video is bounded by
    ``max_audio_wait`` seconds (older frames are dropped and counted in ``dropped_audio``).
    The default part target is 0.334 s rather than 1/3: FLV times are whole milliseconds, so ten
    frames at 30 fps last 333 or 334 ms, and a 1/3 s budget would cut every part at nine.
    """

    def __init__(self, video: AvcConfig | None = None, audio: AacConfig | None = None, *,
                 part_target: float = 0.334, segment_target: float = 2.0, max_audio_wait: float = 10.0) -> None:
        if video is None and audio is None:
            raise ValueError("a muxer needs a video or an audio stream")
        if not 0 < part_target <= segment_target:
            raise ValueError("part_target must be positive and at most segment_target")
        self._video: _Track | None = None
        self._audio: _Track | None = None
        self._audio_rate = 0
        if video is not None:
            self._video = _Track(1, VIDEO_TIMESCALE, b"vide", _sample_entry_video(video), video.width, video.height)
        if audio is not None:
            track_id = 2 if video is not None else 1
            self._audio = _Track(track_id, audio.sample_rate, b"soun", _sample_entry_audio(track_id, audio))
            self._audio_rate = audio.sample_rate
        lead_scale = VIDEO_TIMESCALE if video is not None else self._audio_rate
        self._lead_scale = lead_scale
        self._part_target = round(part_target * lead_scale)
        self._segment_target = round(segment_target * lead_scale)
        self._max_audio_wait = round(max_audio_wait * self._audio_rate)
        self._lead = _Lead()
        self._held: _Sample | None = None  # newest video sample, waiting for its duration
        self._last_video_duration = round(VIDEO_TIMESCALE / 30)
        self._audio_queue: list[_Sample] = []
        self._audio_next: int | None = None
        self._segment_duration = 0
        self._sequence = 0  # mfhd sequence_number of the last fragment
        self._msn = -1
        self._part_index = 0
        self._new_segment = True
        self.dropped_video = 0
        self.dropped_audio = 0
        #: Decode times (s) at which a keyframe started a segment after the first: what the renditions
        #: of a ladder that have no video of their own cut at (the caller reads and clears it).
        self.segment_starts: list[float] = []

    # ----------------------------------------------------------------- init segment

    def init_segment(self) -> bytes:
        """``ftyp`` + ``moov``: the ``EXT-X-MAP`` every part and segment of the stream is read with."""
        tracks = [t for t in (self._video, self._audio) if t is not None]
        # The brands ffmpeg's HLS muxer writes for fMP4 segments, which every HLS player reads.
        ftyp = _box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5", b"iso6", b"mp41")
        mvhd = _full(
            b"mvhd", 0, 0,
            struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x00010000, 0x0100),
            b"\0" * 10,
            _UNITY_MATRIX,
            b"\0" * 24,
            struct.pack(">I", len(tracks) + 1),  # next_track_ID
        )
        mvex = _box(b"mvex", *(t.trex() for t in tracks))
        return ftyp + _box(b"moov", mvhd, *(t.trak() for t in tracks), mvex)

    # ----------------------------------------------------------------- input

    def add_video(self, data: bytes, dts_ms: int, cts_ms: int = 0, keyframe: bool = False) -> list[Part]:
        """One access unit (AVCC NAL units as in the FLV tag after its 5-byte header); the parts it closed."""
        if self._video is None:
            raise ValueError("this muxer has no video stream")
        dts = dts_ms * 90
        pts = dts + cts_ms * 90
        held = self._held
        if held is None and not self._lead.samples and not keyframe:
            self.dropped_video += 1
            return []
        out: list[Part] = []
        if held is not None:
            dts = max(dts, held.dts + 1)  # decode times must increase
            held.duration = dts - held.dts
            self._last_video_duration = held.duration
            self._take_lead(held, out)
        if keyframe and self._segment_duration + self._lead.duration >= self._segment_target:
            self._end_segment(out, end=dts)
            self.segment_starts.append(dts / VIDEO_TIMESCALE)
        self._held = _Sample(bytes(data), dts, pts - dts, keyframe)
        return out

    def add_audio(self, data: bytes, ts_ms: int) -> list[Part]:
        """One raw AAC frame (FLV AAC tag after its 2-byte header); the parts it closed (audio-only streams)."""
        if self._audio is None:
            raise ValueError("this muxer has no audio stream")
        stamp = ts_ms * self._audio_rate // 1000
        expected = self._audio_next
        gap = 0 if expected is None else stamp - expected
        if gap <= AUDIO_RESYNC_SECONDS * self._audio_rate:
            gap = 0
        start = stamp if expected is None or gap else expected
        sample = _Sample(bytes(data), start, duration=AAC_FRAME_SAMPLES)
        self._audio_next = start + AAC_FRAME_SAMPLES
        out: list[Part] = []
        if self._video is not None:
            # A gap: the frame before it lasts until this one (trun has durations, not times).
            if gap and self._audio_queue:
                self._audio_queue[-1].duration += gap
            self._audio_queue.append(sample)
            while self._audio_queue and self._audio_next - self._audio_queue[0].dts > self._max_audio_wait:
                self._audio_queue.pop(0)
                self.dropped_audio += 1
            return out
        if gap and self._lead.samples:
            self._emit(out, end=start)  # the next part's tfdt carries the jump
        if self._segment_duration + self._lead.duration >= self._segment_target:
            self._end_segment(out, end=sample.dts)
        self._take_lead(sample, out)
        return out

    def cut(self) -> list[Part]:
        """End the segment here, whatever its length: the next sample starts a new one. For an
        audio-only rendition of a ladder, whose segments must start where the video renditions'
        keyframes start theirs (same numbers, same instants); video cuts only at its keyframes."""
        if self._video is not None:
            raise ValueError("a muxer with video cuts segments at its keyframes only")
        out: list[Part] = []
        if self._lead.samples or self._msn >= 0:
            self._end_segment(out, end=0)
        return out

    def flush(self) -> list[Part]:
        """End of stream: the held sample (given the previous duration) and the last part."""
        out: list[Part] = []
        if self._held is not None:
            self._held.duration = self._last_video_duration
            held, self._held = self._held, None
            self._take_lead(held, out)
        if self._lead.samples:
            self._end_segment(out, end=1 << 62)  # the last part takes every frame still waiting
        return out

    # ----------------------------------------------------------------- cutting

    def _take_lead(self, sample: _Sample, out: list[Part]) -> None:
        """Add a sample whose duration is known; close the part before it would exceed the target,
        or with it when nothing more fits."""
        if self._lead.samples and self._lead.duration + sample.duration > self._part_target:
            self._emit(out, end=sample.dts)
        lead = self._lead
        lead.samples.append(sample)
        lead.duration += sample.duration
        if lead.duration >= self._part_target:
            self._emit(out, end=sample.dts + sample.duration)

    def _end_segment(self, out: list[Part], end: int) -> None:
        """Close the current part and with it the segment: the next sample starts segment msn + 1."""
        if self._lead.samples:
            self._emit(out, end)
        self._new_segment = True
        self._segment_duration = 0

    def _emit(self, out: list[Part], end: int) -> None:
        """Close the current part (lead samples, plus audio frames starting before ``end``)."""
        samples = self._lead.samples
        if self._new_segment:
            self._msn += 1
            self._part_index = 0
            self._new_segment = False
        tracks: list[tuple[_Track, list[_Sample]]] = []
        if self._video is not None:
            tracks.append((self._video, samples))
            if self._audio is not None:
                # Audio frames that start before the part's end (in seconds: end/90000 > dts/rate).
                cut = 0
                queue = self._audio_queue
                while cut < len(queue) and queue[cut].dts * VIDEO_TIMESCALE < end * self._audio_rate:
                    cut += 1
                if cut:
                    tracks.append((self._audio, queue[:cut]))
                    del queue[:cut]
        else:
            assert self._audio is not None
            tracks.append((self._audio, samples))
        self._sequence += 1
        duration = self._lead.duration
        out.append(Part(
            data=_fragment(self._sequence, tracks),
            msn=self._msn,
            index=self._part_index,
            start=samples[0].dts / self._lead_scale,
            duration=duration / self._lead_scale,
            independent=samples[0].sync,
            segment_start=self._part_index == 0,
        ))
        self._part_index += 1
        self._segment_duration += duration
        self._lead = _Lead()


def _fragment(sequence: int, tracks: list[tuple[_Track, list[_Sample]]]) -> bytes:
    """``moof`` + ``mdat`` holding the given samples of each track, in track order."""
    # trun version 1 has signed composition offsets; version 0 (unsigned) unless one is negative.
    trafs = [(track, samples, track.handler == b"vide" and any(s.cto < 0 for s in samples))
             for track, samples in tracks]

    def build(offsets: list[int]) -> bytes:
        boxes = []
        for (track, samples, negative), offset in zip(trafs, offsets):
            video = track.handler == b"vide"
            flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE
            if video:
                flags |= _TRUN_FLAGS | _TRUN_CTO
                rows = b"".join(
                    struct.pack(">IIIi" if negative else ">IIII", s.duration, len(s.data),
                                SYNC_SAMPLE_FLAGS if s.sync else NON_SYNC_SAMPLE_FLAGS, s.cto)
                    for s in samples
                )
            else:
                rows = b"".join(struct.pack(">II", s.duration, len(s.data)) for s in samples)
            trun = _full(b"trun", 1 if negative else 0, flags, struct.pack(">Ii", len(samples), offset), rows)
            boxes.append(_box(
                b"traf",
                _full(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track.track_id)),
                _full(b"tfdt", 1, 0, struct.pack(">Q", samples[0].dts)),
                trun,
            ))
        return _box(b"moof", _full(b"mfhd", 0, 0, struct.pack(">I", sequence)), *boxes)

    # Data offsets count from the start of moof (default-base-is-moof); moof's size does not depend
    # on their values, so build once with zeros to learn it.
    moof_size = len(build([0] * len(trafs)))
    offsets = []
    position = moof_size + 8
    for _, samples, _ in trafs:
        offsets.append(position)
        position += sum(len(s.data) for s in samples)
    payload = b"".join(s.data for _, samples, _ in trafs for s in samples)
    return build(offsets) + struct.pack(">I4s", 8 + len(payload), b"mdat") + payload


# --------------------------------------------------------------------------- reading fragments back


def _children(data: bytes) -> dict[bytes, list[bytes]]:
    """The boxes at one level, by type (payloads after the 8-byte header); a truncated last box is
    cut where the data ends (a fragment read from a file's head)."""
    found: dict[bytes, list[bytes]] = {}
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= len(data):
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            break
        found.setdefault(kind, []).append(data[pos + header : pos + size])
        pos += size
    return found


def _full_box_time(payload: bytes, v0: int, v1: int) -> int:
    """A version-dependent field of a full box: a 32-bit value at ``v0`` (version 0), 64-bit at ``v1``."""
    if payload[0] == 1:
        return int(struct.unpack_from(">Q", payload, v1)[0])
    return int(struct.unpack_from(">I", payload, v0)[0])


def _tracks(init: bytes) -> dict[int, tuple[int, bytes]]:
    """Track id -> (timescale, handler type) declared by an init segment's ``moov``."""
    tracks: dict[int, tuple[int, bytes]] = {}
    for moov in _children(init).get(b"moov", []):
        for trak in _children(moov).get(b"trak", []):
            boxes = _children(trak)
            mdia = _children(boxes[b"mdia"][0]) if b"mdia" in boxes else {}
            if b"tkhd" not in boxes or b"mdhd" not in mdia or b"hdlr" not in mdia:
                continue
            tkhd, mdhd = boxes[b"tkhd"][0], mdia[b"mdhd"][0]
            track_id = int(struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0])
            timescale = int(struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0])
            tracks[track_id] = (timescale, mdia[b"hdlr"][0][8:12])
    return tracks


@dataclass(frozen=True)
class AudioFormat:
    """What an init segment's audio sample entry declares: what one MP4 track cannot change midway."""

    codec: str  # the sample entry type, e.g. "mp4a"
    sample_rate: int
    channels: int


def audio_format(init: bytes) -> AudioFormat | None:
    """The first audio track's sample entry in an init segment (``moov/trak/mdia/minf/stbl/stsd``), or
    None without one. The sample rate is the entry's own (16.16) field, else the track's timescale.

    Two recordings pieces whose formats differ cannot be stream-copied into one MP4 track: the file
    would declare the first piece's rate for every sample (``vod.tools.remux_mp4`` re-encodes then).
    """
    for moov in _children(init).get(b"moov", []):
        for trak in _children(moov).get(b"trak", []):
            mdia_boxes = _children(trak).get(b"mdia", [])
            mdia = _children(mdia_boxes[0]) if mdia_boxes else {}
            if b"hdlr" not in mdia or mdia[b"hdlr"][0][8:12] != b"soun" or b"minf" not in mdia:
                continue
            stbl = _children(mdia[b"minf"][0]).get(b"stbl", [])
            stsd = _children(stbl[0]).get(b"stsd", []) if stbl else []
            if not stsd or len(stsd[0]) < 8 + 8 + 28:
                continue
            entry = stsd[0][8:]  # version, flags, entry_count, then the first entry box
            size, kind = struct.unpack_from(">I4s", entry, 0)
            body = entry[8:max(size, 36)]
            channels = int(struct.unpack_from(">H", body, 16)[0])
            rate = int(struct.unpack_from(">I", body, 24)[0]) >> 16
            if rate == 0 and b"mdhd" in mdia:
                mdhd = mdia[b"mdhd"][0]
                rate = int(struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0])
            return AudioFormat(kind.decode("latin-1"), rate, channels)
    return None


def fragment_start_90khz(init: bytes, fragment: bytes) -> int | None:
    """Decode time of a fragment's first ``moof`` on the MPEG-TS clock (90 kHz): its video track's
    ``tfdt`` (the track segments are cut on and timed by), else its first track's. None when the
    bytes hold no ``moof`` with a ``tfdt`` of a track the init segment declares.

    What an fMP4 segment's WebVTT companion puts in ``X-TIMESTAMP-MAP=MPEGTS:`` (RFC 8216bis: the
    MPEGTS value is on a 90 kHz timescale even when the media segments use another), as
    ``captions.timeline.first_pts`` reads it from an MPEG-TS segment. Works on a file's head: boxes
    after the ``moof`` may be cut.
    """
    tracks = _tracks(init)
    moofs = _children(fragment).get(b"moof", [])
    if not moofs or not tracks:
        return None
    starts: list[tuple[bool, int]] = []
    for traf in _children(moofs[0]).get(b"traf", []):
        boxes = _children(traf)
        if b"tfhd" not in boxes or b"tfdt" not in boxes:
            continue
        track = tracks.get(int(struct.unpack_from(">I", boxes[b"tfhd"][0], 4)[0]))
        if track is None or track[0] <= 0:
            continue
        decode_time = _full_box_time(boxes[b"tfdt"][0], 4, 4)
        starts.append((track[1] != b"vide", decode_time * VIDEO_TIMESCALE // track[0]))
    return min(starts)[1] if starts else None


# --------------------------------------------------------------------------- audio-only track files


def parse_adts(data: bytes) -> tuple[AacConfig, list[bytes]]:
    """An ADTS stream (ISO/IEC 13818-7, what ``ffmpeg -f adts`` writes) as its AudioSpecificConfig and raw
    frames (headers and CRCs removed): what an fMP4 audio track stores. Refuses a stream whose frames change
    format, or that is cut short."""
    data = bytes(data)
    frames: list[bytes] = []
    header: tuple[int, int, int] | None = None
    pos = 0
    while pos < len(data):
        if pos + 7 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:
            raise CmafError(f"no ADTS frame at byte {pos}")
        protection_absent = data[pos + 1] & 1
        profile, index = data[pos + 2] >> 6, (data[pos + 2] >> 2) & 0xF
        channels = ((data[pos + 2] & 1) << 2) | (data[pos + 3] >> 6)
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        blocks = (data[pos + 6] & 3) + 1
        size = 7 if protection_absent else 9
        if blocks != 1 or length <= size or pos + length > len(data):
            raise CmafError(f"unsupported or truncated ADTS frame at byte {pos}")
        if header is None:
            header = (profile, index, channels)
        elif header != (profile, index, channels):
            raise CmafError(f"the ADTS frame at byte {pos} changes format")
        frames.append(data[pos + size : pos + length])
        pos += length
    if header is None:
        raise CmafError("no ADTS frame")
    profile, index, channels = header
    asc = (((profile + 1) << 11) | (index << 7) | (channels << 3)).to_bytes(2, "big")
    return parse_aac_config(asc), frames


def audio_init_segment(config: AacConfig) -> bytes:
    """The init segment (``EXT-X-MAP``) of an audio-only track: one ``soun`` track, timescale the sample rate."""
    return CmafMuxer(audio=config).init_segment()


def audio_fragment(sequence: int, config: AacConfig, decode_time: int, frames: list[bytes]) -> bytes:
    """One ``moof`` + ``mdat`` of AAC frames (1024 samples each) of :func:`audio_init_segment`'s track,
    the first decoded at ``decode_time`` (in samples: the ``tfdt`` that places it on the timeline)."""
    if not frames:
        raise CmafError("a fragment needs at least one frame")
    track = _Track(1, config.sample_rate, b"soun", _sample_entry_audio(1, config))
    samples = [_Sample(frame, decode_time + i * AAC_FRAME_SAMPLES, duration=AAC_FRAME_SAMPLES)
               for i, frame in enumerate(frames)]
    return _fragment(sequence, [(track, samples)])


def track_starts(init: bytes, fragment: bytes) -> dict[bytes, tuple[int, int]]:
    """Handler type (``vide``, ``soun``) -> (``tfdt``, timescale) of each track in a fragment's first ``moof``:
    where each stream of a segment starts on its own clock (a track missing from the first ``moof``: its first
    in a later one)."""
    tracks = _tracks(init)
    starts: dict[bytes, tuple[int, int]] = {}
    for moof in _children(fragment).get(b"moof", []):
        for traf in _children(moof).get(b"traf", []):
            boxes = _children(traf)
            if b"tfhd" not in boxes or b"tfdt" not in boxes:
                continue
            track = tracks.get(int(struct.unpack_from(">I", boxes[b"tfhd"][0], 4)[0]))
            if track is not None and track[0] > 0 and track[1] not in starts:
                starts[track[1]] = (_full_box_time(boxes[b"tfdt"][0], 4, 4), track[0])
    return starts


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of the boxes at one level, headers included, in order."""
    found, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1 and pos + 16 <= len(data):
            size = int(struct.unpack_from(">Q", data, pos + 8)[0])
        elif size == 0:
            size = len(data) - pos
        if size < 8 or pos + size > len(data):
            raise CmafError(f"truncated {kind!r} box at byte {pos}")
        found.append((kind, pos, pos + size))
        pos += size
    return found


def _handler_ids(init: bytes, handler: bytes) -> set[int]:
    return {track_id for track_id, (_, kind) in _tracks(init).items() if kind == handler}


def single_track_init(init: bytes, handler: bytes) -> bytes:
    """An init segment keeping only its tracks of one kind (``vide``, ``soun``): what a player that keeps audio
    and video in separate buffers (hls.js with an alternate audio rendition) needs for each."""
    keep = _handler_ids(init, handler)
    if not keep:
        raise CmafError(f"the init segment has no {handler!r} track")
    out = []
    for kind, start, end in _boxes(init):
        if kind != b"moov":
            out.append(init[start:end])
            continue
        moov = init[start + 8:end]
        body = []
        for child, s, e in _boxes(moov):
            if child == b"trak":
                tkhd = _children(moov[s + 8:e])[b"tkhd"][0]
                if int(struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]) not in keep:
                    continue
            elif child == b"mvex":
                mvex = moov[s + 8:e]
                body.append(_box(b"mvex", *(mvex[a:b] for k, a, b in _boxes(mvex)
                                            if k != b"trex" or struct.unpack_from(">I", mvex, a + 12)[0] in keep)))
                continue
            body.append(moov[s:e])
        out.append(_box(b"moov", *body))
    return b"".join(out)


def single_track_fragment(init: bytes, fragment: bytes, handler: bytes) -> bytes:
    """A media segment (``moof`` + ``mdat`` pairs, as this muxer writes them: default-base-is-moof, one
    ``trun`` per ``traf`` with sample sizes) keeping only its tracks of one kind: the same samples, times and
    sequence numbers, the data offsets recomputed. A fragment without such a track is dropped."""
    keep = _handler_ids(init, handler)
    out = []
    boxes = _boxes(fragment)
    for index, (kind, start, end) in enumerate(boxes):
        if kind != b"moof":
            continue
        moof = fragment[start:end]
        children, trafs, payload = [], [], []
        for child, s, e in _boxes(moof[8:]):
            box = moof[8 + s:8 + e]
            if child != b"traf":
                children.append(box)
                continue
            parts = _boxes(box[8:])
            tfhd = next(box[8 + a:8 + b] for k, a, b in parts if k == b"tfhd")
            if int(struct.unpack_from(">I", tfhd, 12)[0]) not in keep:
                continue
            if not struct.unpack_from(">I", tfhd, 8)[0] & _TFHD_DEFAULT_BASE_IS_MOOF:
                raise CmafError("only default-base-is-moof fragments can be split")
            [(_, a, b)] = [p for p in parts if p[0] == b"trun"]
            trun = box[8 + a:8 + b]
            flags = int(struct.unpack_from(">I", trun, 8)[0]) & 0xFFFFFF
            if not flags & _TRUN_DATA_OFFSET or not flags & _TRUN_SIZE:
                raise CmafError("a trun without data offset or sample sizes cannot be split")
            count, offset = struct.unpack_from(">Ii", trun, 12)
            row = 4 * sum(bool(flags & f) for f in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO))
            first = 20 + (4 if flags & 0x4 else 0)
            size_at = 4 if flags & _TRUN_DURATION else 0
            total = sum(int(struct.unpack_from(">I", trun, first + i * row + size_at)[0]) for i in range(count))
            payload.append(fragment[start + offset:start + offset + total])
            trafs.append((box, 8 + a + 16))  # where the trun's data_offset sits in the traf
        if not trafs:
            continue
        if index + 1 >= len(boxes) or boxes[index + 1][0] != b"mdat":
            raise CmafError("a moof not followed by its mdat")
        moof_size = 8 + sum(len(c) for c in children) + sum(len(t) for t, _ in trafs)
        position, patched = moof_size + 8, []
        for (traf, at), data in zip(trafs, payload):
            patched.append(traf[:at] + struct.pack(">i", position) + traf[at + 4:])
            position += len(data)
        out.append(_box(b"moof", *children, *patched) + _box(b"mdat", *payload))
    return b"".join(out)
