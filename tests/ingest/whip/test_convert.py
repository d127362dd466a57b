"""WebRTC media → FLV: H.264 framing without re-encoding, Opus → AAC, VP8 → H.264, checked by ffmpeg decoding it."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from formats import flv
from ingest.whip.convert import (
    AvcToFlv, RtpTimestampMapper, OpusToAac, Vp8ToH264, audio_specific_config, avc_decoder_configuration, sps_dimensions,
    split_annexb,
)
from tests.media import FFMPEG, decode_errors


def _h264_access_units(width: int, height: int, frames: int, gop: int = 10, profile: str = "baseline") -> list[bytes]:
    """Annex B access units from libx264, as a WebRTC sender produces them (SPS/PPS in band)."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.framerate = Fraction(15)
    encoder.gop_size = gop
    encoder.max_b_frames = 0
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": profile}
    units = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            plane.update(bytes([(i * 7 + n * 50) % 256]) * plane.buffer_size)
        frame.pts = i * 6000
        units += [bytes(p) for p in encoder.encode(frame)]
    units += [bytes(p) for p in encoder.encode(None)]
    return units


def _opus_packets(seconds: float) -> list[tuple[int, bytes]]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48000)
    packets = []
    for i in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.sample_rate = 48000
        samples = [int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + n // 2) / 48000)) for n in range(1920)]
        frame.planes[0].update(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))
        frame.pts = i * 960
        packets += [(p.pts, bytes(p)) for p in encoder.encode(frame)]
    return packets


def count_video_frames(path: Path) -> int:
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))


def _write_flv(path: Path, tags: list[tuple[int, int, bytes]], audio: bool, video: bool) -> Path:
    path.write_bytes(flv.flv_header(audio, video) + b"".join(flv.flv_tag(t, ts, body) for t, ts, body in tags))
    return path


@pytest.mark.parametrize(("size", "profile"), [((1920, 1080), "high"), ((320, 240), "baseline"), ((636, 358), "main")])
def test_sps_dimensions_including_cropping(size: tuple[int, int], profile: str) -> None:
    (first,) = _h264_access_units(*size, frames=1, profile=profile)[:1]
    sps = next(u for u in split_annexb(first) if u[0] & 0x1F == 7)
    assert sps_dimensions(sps) == size
    assert sps_dimensions(sps[:3]) is None  # truncated: no answer, no exception


def test_h264_passthrough_makes_decodable_flv(tmp_path: Path) -> None:
    units = _h264_access_units(320, 240, frames=30)
    muxer = AvcToFlv()
    assert muxer.push(units[1], 0) == []  # a P-frame before any keyframe is useless: dropped
    tags = [(flv.TAG_VIDEO, i * 67, body) for i, unit in enumerate(units) for _, body in muxer.push(unit, i * 67)]
    assert (muxer.dropped, muxer.keyframes, muxer.dimensions) == (1, 3, (320, 240))
    header = tags[0][2]
    assert flv.is_sequence_header("video", header) and sum(flv.is_sequence_header("video", t[2]) for t in tags) == 1
    first = split_annexb(units[0])
    sps, pps = (next(u for u in first if u[0] & 0x1F == t) for t in (7, 8))
    assert header[5:] == avc_decoder_configuration(sps, pps)
    assert [flv.is_keyframe(t[2]) for t in tags[1:4]] == [True, False, False]
    path = _write_flv(tmp_path / "video.flv", tags, audio=False, video=True)
    assert count_video_frames(path) == 30
    assert decode_errors(path) == ""


def test_opus_to_aac_keeps_time_across_a_lost_packet(tmp_path: Path) -> None:
    packets = _opus_packets(1.0)
    converter = OpusToAac()
    out = []
    for i, (pts, data) in enumerate(packets):
        if i != 20:  # one packet lost in the network
            out += converter.feed(data, pts)
    assert converter.sequence_header == b"\xaf\x00" + audio_specific_config(48000, 2) == b"\xaf\x00\x11\x90"
    start = packets[0][0]  # libopus starts at -312 (pre-skip); WebRTC RTP time starts wherever
    assert [pts - start for pts, _ in out] == [i * 1024 for i in range(len(out))]
    # All 48000 samples minus Opus pre-skip (312), in 1024-sample AAC frames, minus the one the encoder
    # still holds: the lost packet was replaced by silence, not skipped (that would give 44).
    assert len(out) == (len(packets) * 960 - 312) // 1024 - 1 == 45
    tags = [(flv.TAG_AUDIO, 0, converter.sequence_header)] + [(flv.TAG_AUDIO, round((p - start) / 48), b) for p, b in out]
    path = _write_flv(tmp_path / "audio.flv", tags, audio=True, video=False)
    probe = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert probe.returncode == 0 and "Audio: aac (LC)" in probe.stderr and "48000 Hz, stereo" in probe.stderr


def test_vp8_transcode_forces_keyframes_on_the_segment_clock(tmp_path: Path) -> None:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.framerate = Fraction(15)
    encoder.gop_size = 1000  # the VP8 sender's own keyframes are rare; ours must not depend on them
    transcoder = Vp8ToH264(bitrate=300_000, keyframe_seconds=1.0, preset="ultrafast")
    muxer = AvcToFlv()
    tags = []
    for i in range(45):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 5) % 256]) * plane.buffer_size)
        frame.pts = i * 6000
        for packet in encoder.encode(frame):
            for pts, unit in transcoder.feed(bytes(packet), packet.pts):
                tags += [(flv.TAG_VIDEO, ts, body) for ts, body in muxer.push(unit, pts // 90)]
    assert muxer.keyframes == 3 and muxer.dimensions == (320, 240)
    path = _write_flv(tmp_path / "vp8.flv", tags, audio=False, video=True)
    assert count_video_frames(path) == 45 and decode_errors(path) == ""


def test_media_clock_aligns_tracks_by_arrival_and_never_goes_back() -> None:
    clock = RtpTimestampMapper()
    assert clock.to_ms("video", 0, 90000, arrival=100.0) == 0
    assert clock.to_ms("audio", 0, 48000, arrival=100.040) == 40  # audio started 40 ms later
    assert clock.to_ms("video", 9000, 90000, arrival=100.5) == 100  # RTP time, not (jittery) arrival time
    assert clock.to_ms("audio", 4800, 48000, arrival=100.2) == 140
    assert clock.to_ms("video", 4500, 90000, arrival=100.6) == 100  # late reordered frame: clamped
