"""WebRTC media → FLV tag bodies, the form every ingest protocol hands to ``LiveStreams``.

H.264 arrives as Annex B access units (aiortc's depayloader output) and is kept as is: it only
changes framing (length-prefixed NAL units, an AVCDecoderConfigurationRecord built from SPS/PPS,
composition time 0 since WebRTC H.264 has no B-frames). Opus has no place in FLV/MPEG-TS HLS, so it
is decoded and encoded to AAC with PyAV; VP8 (browsers that will not send H.264) is transcoded to
H.264 the same way. The PyAV converters are synchronous and meant for a worker thread; the framing
code is pure and cheap enough for the event loop.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av
from av.audio.fifo import AudioFifo
from av.video.frame import PictureType

from formats.h264 import H264Error, sps_size

__all__ = [
    "AvcToFlv",
    "RtpTimestampMapper",
    "OpusToAac",
    "Vp8ToH264",
    "aac_sequence_header",
    "audio_specific_config",
    "avc_decoder_configuration",
    "is_vp8_keyframe",
    "sps_dimensions",
    "split_annexb",
]

NAL_IDR: Final = 5
NAL_SPS: Final = 7
NAL_PPS: Final = 8
#: Access unit delimiter, end of sequence/stream, filler: meaningless inside FLV.
_NAL_DROPPED: Final = frozenset({9, 10, 11, 12})

_FLV_AVC_KEY: Final = 0x17
_FLV_AVC_INTER: Final = 0x27
_FLV_AAC: Final = 0xAF  # AAC, "44 kHz", 16 bit, stereo: the fixed first byte of every FLV AAC tag
_AAC_SAMPLE_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

OPUS_CLOCK: Final = 48000
VIDEO_CLOCK: Final = 90000


# --------------------------------------------------------------------------- timing


class RtpTimestampMapper:
    """Puts each track's RTP time on one millisecond timeline for FLV.

    Each track's first frame is placed at its arrival time relative to the first frame of the
    session (RTP timestamps of different tracks share no origin); later frames follow their own RTP
    clock, so jitter does not leak into timestamps. Output never goes backwards per track.
    """

    def __init__(self) -> None:
        self._origin: float | None = None
        self._offsets: dict[str, float] = {}
        self._last: dict[str, int] = {}

    def to_ms(self, kind: str, rtp_ts: int, clock_rate: int, arrival: float) -> int:
        if self._origin is None:
            self._origin = arrival
        media_ms = rtp_ts * 1000 / clock_rate
        if kind not in self._offsets:
            self._offsets[kind] = (arrival - self._origin) * 1000 - media_ms
        value = max(0, round(self._offsets[kind] + media_ms), self._last.get(kind, 0))
        self._last[kind] = value
        return value

    def offset_ms(self, kind: str) -> float:
        """The track's offset once its first frame was seen (for converters running elsewhere)."""
        return self._offsets.get(kind, 0.0)


# --------------------------------------------------------------------------- H.264


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    if start < 0:
        return [data] if data else []
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        unit = data[begin : len(data) if nxt < 0 else nxt].rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = nxt
    return units


def sps_dimensions(sps: bytes) -> tuple[int, int] | None:
    """Display width and height from an SPS NAL unit (header byte included); None if unreadable."""
    try:
        return sps_size(sps)
    except H264Error:
        return None


def avc_decoder_configuration(sps: bytes, pps: bytes) -> bytes:
    """AVCDecoderConfigurationRecord (ISO 14496-15) for one SPS and one PPS, 4-byte NALU lengths."""
    return (
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1))
        + len(sps).to_bytes(2, "big") + sps
        + b"\x01" + len(pps).to_bytes(2, "big") + pps
    )


class AvcToFlv:
    """H.264 access units (Annex B) → FLV AVC tag bodies, without touching the picture data.

    Nothing is output before the first IDR frame that has SPS/PPS (a decoder could not start
    earlier); a new SPS/PPS pair is announced as a sequence header before the keyframe using it.
    """

    def __init__(self) -> None:
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._announced: tuple[bytes, bytes] | None = None
        self.started = False
        self.dropped = 0
        self.keyframes = 0
        self.dimensions: tuple[int, int] | None = None

    def push(self, access_unit: bytes, timestamp_ms: int) -> list[tuple[int, bytes]]:
        """FLV video tag bodies for one access unit: maybe a sequence header, then the frame."""
        units: list[bytes] = []
        key = False
        for unit in split_annexb(access_unit):
            nal_type = unit[0] & 0x1F
            if nal_type == NAL_SPS:
                self._sps = unit
                self.dimensions = sps_dimensions(unit) or self.dimensions
            elif nal_type == NAL_PPS:
                self._pps = unit
            elif nal_type not in _NAL_DROPPED:
                key = key or nal_type == NAL_IDR
                units.append(unit)
        out: list[tuple[int, bytes]] = []
        if not units:
            return out
        if key and self._sps and self._pps and (self._sps, self._pps) != self._announced:
            self._announced = (self._sps, self._pps)
            out.append((timestamp_ms, bytes((_FLV_AVC_KEY, 0, 0, 0, 0)) + avc_decoder_configuration(self._sps, self._pps)))
        if not self.started:
            if not (key and self._announced):
                self.dropped += 1
                return out
            self.started = True
        if key:
            self.keyframes += 1
        body = bytearray((_FLV_AVC_KEY if key else _FLV_AVC_INTER, 1, 0, 0, 0))
        for unit in units:
            body += len(unit).to_bytes(4, "big") + unit
        out.append((timestamp_ms, bytes(body)))
        return out


# --------------------------------------------------------------------------- AAC


def audio_specific_config(sample_rate: int, channels: int) -> bytes:
    """The 2-byte AudioSpecificConfig of AAC-LC (object type 2)."""
    index = _AAC_SAMPLE_RATES.index(sample_rate)
    return ((2 << 11) | (index << 7) | (channels << 3)).to_bytes(2, "big")


def aac_sequence_header(sample_rate: int, channels: int) -> bytes:
    """FLV AAC sequence header body (AACPacketType 0 + AudioSpecificConfig)."""
    return bytes((_FLV_AAC, 0)) + audio_specific_config(sample_rate, channels)


class OpusToAac:
    """Opus packets → FLV AAC tag bodies (48 kHz stereo AAC-LC), with timestamps in 1/48000 s.

    Lost packets leave gaps in RTP time; they are filled with silence (up to 2 s) so that audio
    keeps its place against the video instead of drifting early.
    """

    sample_rate: Final = OPUS_CLOCK
    channels: Final = 2

    def __init__(self, bitrate: int = 128_000) -> None:
        self._decoder = av.CodecContext.create("opus", "r")
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=self.sample_rate)
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = self.sample_rate
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = bitrate
        encoder.time_base = Fraction(1, self.sample_rate)
        encoder.open()
        self._encoder = encoder
        self._fifo = AudioFifo()
        self._next_in: int | None = None
        self._out_pts = 0
        self._packet_pts = 0
        self.decode_errors = 0

    @property
    def sequence_header(self) -> bytes:
        return aac_sequence_header(self.sample_rate, self.channels)

    def feed(self, packet: bytes, rtp_ts: int) -> list[tuple[int, bytes]]:
        """AAC tag bodies ready after this Opus packet, as (pts in 1/48000 s, body)."""
        if self._next_in is None:
            self._next_in = self._out_pts = self._packet_pts = rtp_ts
        gap = rtp_ts - self._next_in
        if 0 < gap <= 2 * self.sample_rate:
            self._write(self._silence(gap))
        elif gap > 2 * self.sample_rate or gap < -self.sample_rate:
            self._fifo = AudioFifo()  # a jump: start over at the new time
            self._out_pts = self._packet_pts = rtp_ts
        try:
            frames = self._decoder.decode(av.Packet(packet))
        except av.FFmpegError:
            self.decode_errors += 1
            frames = []
        samples = 0
        for frame in frames:
            samples += frame.samples
            frame.pts = None
            for converted in self._resampler.resample(frame):
                self._write(converted)
        self._next_in = rtp_ts + (samples or 960)
        return self._encode_ready()

    def _write(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        self._fifo.write(frame)

    def _silence(self, samples: int) -> av.AudioFrame:
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
        frame.sample_rate = self.sample_rate
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        return frame

    def _encode_ready(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        size = self._encoder.frame_size or 1024
        while self._fifo.samples >= size:
            chunk = self._fifo.read(size)
            assert chunk is not None
            chunk.pts = self._out_pts
            chunk.time_base = Fraction(1, self.sample_rate)
            self._out_pts += size
            for packet in self._encoder.encode(chunk):
                # One packet per 1024 input samples, in order; the encoder's own pts start one frame
                # early (priming), which would make the first two collide once clamped at 0.
                out.append((self._packet_pts, bytes((_FLV_AAC, 1)) + bytes(packet)))
                self._packet_pts += size
        return out


# --------------------------------------------------------------------------- VP8 → H.264


def is_vp8_keyframe(frame: bytes) -> bool:
    """VP8 frame tag: bit 0 of the first byte is 0 for a key frame (RFC 6386 section 9.1)."""
    return bool(frame) and not frame[0] & 0x01


class Vp8ToH264:
    """VP8 frames → H.264 Annex B access units (libx264, zero latency, a keyframe every ``keyframe_seconds``).

    Costs about a core at 720p30 (decode + encode): the path for browsers that will not send H.264.
    """

    def __init__(self, bitrate: int, keyframe_seconds: float, preset: str = "veryfast") -> None:
        self._decoder = av.CodecContext.create("vp8", "r")
        self._encoder: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._bitrate = bitrate
        self._preset = preset
        self._key_interval = int(keyframe_seconds * VIDEO_CLOCK)
        self._last_key: int | None = None
        self.needs_keyframe = True
        self.decode_errors = 0

    def feed(self, frame: bytes, rtp_ts: int) -> list[tuple[int, bytes]]:
        """Access units ready after this VP8 frame, as (RTP time in 1/90000 s, Annex B bytes)."""
        if self.needs_keyframe and not is_vp8_keyframe(frame):
            return []
        try:
            pictures = self._decoder.decode(av.Packet(frame))
        except av.FFmpegError:
            self.decode_errors += 1
            self.needs_keyframe = True
            return []
        self.needs_keyframe = False
        out: list[tuple[int, bytes]] = []
        for picture in pictures:
            width, height = picture.width & ~1, picture.height & ~1
            if (width, height) != self._size:
                self._open(width, height)
            if picture.format.name != "yuv420p" or (width, height) != (picture.width, picture.height):
                picture = picture.reformat(width=width, height=height, format="yuv420p")
            picture.pts = rtp_ts
            picture.time_base = Fraction(1, VIDEO_CLOCK)
            if self._last_key is None or rtp_ts - self._last_key >= self._key_interval:
                picture.pict_type = PictureType.I
                self._last_key = rtp_ts
            else:
                picture.pict_type = PictureType.NONE
            assert self._encoder is not None
            for packet in self._encoder.encode(picture):
                out.append((packet.pts if packet.pts is not None else rtp_ts, bytes(packet)))
        return out

    def _open(self, width: int, height: int) -> None:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, VIDEO_CLOCK)
        encoder.framerate = Fraction(30, 1)
        encoder.bit_rate = self._bitrate
        encoder.gop_size = 100_000  # keyframes are forced on our segment clock
        encoder.max_b_frames = 0
        encoder.options = {"preset": self._preset, "tune": "zerolatency", "forced-idr": "1"}
        encoder.open()
        self._encoder = encoder
        self._size = (width, height)
        self._last_key = None
