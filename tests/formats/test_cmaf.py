"""The fMP4 muxer: codec configuration tables, box layouts read back by a small test-local box
walker, cutting rules on synthetic samples, and real H.264/AAC made by ffmpeg, muxed by us and read
by independent readers (ffmpeg decoding with -xerror, packet checksums against the FLV, GStreamer's
qtdemux and decoders, ffmpeg and GStreamer playing an LL-HLS playlist of our parts)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from formats.cmaf import (NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, AacConfig, AudioFormat, AvcConfig, CmafError,
                          CmafMuxer, Part, audio_format, fragment_start_90khz, parse_aac_config, parse_avc_config)
from formats.m3u8 import LlPart, LlPlaylist, LlSegment, render_ll
from tests.formats.mp4_boxes import find, read_fragment, tree
from tests.media import FFMPEG

# --------------------------------------------------------------------------- test-local readers


def flv_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp ms, body) of an FLV file: a test-local reader, independent of ingest/."""
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        yield data[pos], stamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


@dataclass
class Muxed:
    video: AvcConfig | None
    audio: AacConfig | None
    init: bytes
    parts: list[Part]
    muxer: CmafMuxer

    def write(self, path: Path) -> Path:
        path.write_bytes(self.init + b"".join(p.data for p in self.parts))
        return path


def mux_flv(flv: bytes, part_target: float = 0.334, segment_target: float = 2.0) -> Muxed:
    """What the live path will do: sequence headers configure the muxer, then every tag goes in."""
    tags = list(flv_tags(flv))
    video = next((parse_avc_config(b[5:]) for t, _, b in tags if t == 9 and b[1] == 0), None)
    audio = next((parse_aac_config(b[2:]) for t, _, b in tags if t == 8 and b[1] == 0), None)
    muxer = CmafMuxer(video, audio, part_target=part_target, segment_target=segment_target)
    parts: list[Part] = []
    for kind, stamp, body in tags:
        if kind == 9 and body[1] == 1:
            cts = int.from_bytes(body[2:5], "big", signed=True)
            parts += muxer.add_video(body[5:], stamp, cts, keyframe=body[0] >> 4 == 1)
        elif kind == 8 and body[1] == 1:
            parts += muxer.add_audio(body[2:], stamp)
    parts += muxer.flush()
    return Muxed(video, audio, muxer.init_segment(), parts, muxer)


def make_flv(path: Path, *, seconds: float, size: str = "320x240", fps: int = 30, gop: int = 30,
             audio: bool = True, video: bool = True, rate: int = 44100, extra: tuple[str, ...] = ()) -> bytes:
    args = [FFMPEG, "-v", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}"]
    args += ["-t", str(seconds)]
    if video:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop),
                 "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "2", *extra]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    subprocess.run([*args, "-f", "flv", str(path)], check=True, timeout=120)
    return path.read_bytes()


def ffmpeg_packets(path: Path, stream: str) -> list[tuple[float, int, str]]:
    """(pts seconds, size, crc) of every packet ffmpeg demuxes from one stream, without decoding."""
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", f"0:{stream}", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    timebase = re.search(r"#tb 0: (\d+)/(\d+)", out)
    assert timebase is not None
    scale = int(timebase[1]) / int(timebase[2])
    rows = []
    for line in out.splitlines():
        if not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            rows.append((int(fields[2]) * scale, int(fields[4]), fields[5]))
    return rows


def decode(path: Path, *extra: str) -> tuple[int, float, str]:
    """Decode everything with -xerror: (video frames, last time, stderr)."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-xerror", *extra, "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    frames = re.findall(r"frame=\s*(\d+)", done.stderr)
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", done.stderr)
    h, m, s = times[-1]
    return int(frames[-1]) if frames else 0, int(h) * 3600 + int(m) * 60 + float(s), done.stderr


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, Muxed]:
    """4 s of 320x240 30 fps H.264 (B-frames, 1 s GOP) + 44.1 kHz AAC, made once, muxed once."""
    folder = tmp_path_factory.mktemp("cmaf")
    flv = make_flv(folder / "in.flv", seconds=4)
    return folder, flv, mux_flv(flv)


# --------------------------------------------------------------------------- codec configuration


@pytest.mark.parametrize(("size", "profile", "pix_fmt", "profile_idc"), [
    ("1920x1080", "high", "yuv420p", 100),
    ("640x360", "main", "yuv420p", 77),
    ("176x144", "baseline", "yuv420p", 66),
    ("320x180", "high444", "yuv444p", 244),  # chroma format and bit depths in the SPS
    ("320x180", "high422", "yuv422p", 122),
])
def test_sps_gives_the_displayed_size_after_cropping(tmp_path: Path, size: str, profile: str, pix_fmt: str,
                                                     profile_idc: int) -> None:
    """1080, 360 and 180 are not whole macroblocks: the SPS codes 1088 / 368 / 192 and crops."""
    flv = make_flv(tmp_path / "v.flv", seconds=0.1, size=size, audio=False,
                   extra=("-profile:v", profile, "-pix_fmt", pix_fmt))
    config = next(parse_avc_config(b[5:]) for t, _, b in flv_tags(flv) if t == 9 and b[1] == 0)
    assert f"{config.width}x{config.height}" == size
    assert config.profile == profile_idc and config.codec == f"avc1.{config.record[1:4].hex()}"


@pytest.mark.parametrize(("asc", "expected"), [
    (bytes.fromhex("1210"), AacConfig(bytes.fromhex("1210"), 2, 44100, 2)),
    (bytes.fromhex("1190"), AacConfig(bytes.fromhex("1190"), 2, 48000, 2)),
    (bytes.fromhex("1388"), AacConfig(bytes.fromhex("1388"), 2, 22050, 1)),
    (bytes.fromhex("2b8a08"), AacConfig(bytes.fromhex("2b8a08"), 5, 22050, 1)),  # HE-AAC, core rate
    (bytes.fromhex("f8f640"), AacConfig(bytes.fromhex("f8f640"), 39, 8000, 2)),  # escape: 32 + 7
    (bytes.fromhex("178003e800"), AacConfig(bytes.fromhex("178003e800"), 2, 2000, 0)),  # explicit rate
])
def test_audio_specific_config(asc: bytes, expected: AacConfig) -> None:
    assert parse_aac_config(asc) == expected


@pytest.mark.parametrize(("asc", "expected"), [
    (bytes.fromhex("1210"), AudioFormat("mp4a", 44100, 2)),
    (bytes.fromhex("1188"), AudioFormat("mp4a", 48000, 1)),
])
def test_audio_format_of_an_init_segment(asc: bytes, expected: AudioFormat) -> None:
    """What the MP4 download compares across a recording's publish sessions (vod.tools.remux_mp4)."""
    assert audio_format(CmafMuxer(None, parse_aac_config(asc)).init_segment()) == expected
    assert audio_format(b"") is None and audio_format(b"\0\0\0\x08moov") is None


@pytest.mark.parametrize(("asc", "message"), [
    (b"", "truncated AudioSpecificConfig"),
    (b"\x12", "truncated AudioSpecificConfig"),
    (bytes.fromhex("0010"), "AudioSpecificConfig without object type or sample rate"),
    (bytes.fromhex("16c0"), "AudioSpecificConfig without object type or sample rate"),  # index 13: reserved
])
def test_bad_audio_specific_config(asc: bytes, message: str) -> None:
    with pytest.raises(CmafError, match=f"^{message}$"):
        parse_aac_config(asc)


@pytest.mark.parametrize(("record", "message"), [
    (b"", "not an AVCDecoderConfigurationRecord (version 1)"),
    (bytes.fromhex("0264001fffe1"), "not an AVCDecoderConfigurationRecord (version 1)"),
    (bytes.fromhex("0164001fffe0000100"), "AVCDecoderConfigurationRecord without SPS"),
    (bytes.fromhex("0164001fffe10019"), "truncated AVCDecoderConfigurationRecord"),
    (bytes.fromhex("0164001fffe10002670001"), "truncated parameter set"),
])
def test_bad_avc_record(record: bytes, message: str) -> None:
    with pytest.raises(CmafError, match=f"^{re.escape(message)}$"):
        parse_avc_config(record)


# --------------------------------------------------------------------------- box layout


def test_init_segment_layout(lecture: tuple[Path, bytes, Muxed]) -> None:
    assert audio_format(lecture[2].init) == AudioFormat("mp4a", 44100, 1)
    muxed = lecture[2]
    assert muxed.video is not None and muxed.audio is not None
    stbl = [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]

    def trak(handler_box: bytes, entry: bytes, child: bytes) -> list[object]:
        return [b"trak", [b"tkhd", [b"mdia", [b"mdhd", b"hdlr", [b"minf", [
            handler_box, [b"dinf", [[b"dref", [b"url "]]]],
            [b"stbl", [[b"stsd", [[entry, [child]]]], *stbl[1:]]]]]]]]]

    assert tree(muxed.init) == [b"ftyp", [b"moov", [
        b"mvhd", trak(b"vmhd", b"avc1", b"avcC"), trak(b"smhd", b"mp4a", b"esds"), [b"mvex", [b"trex", b"trex"]]]]]
    assert find(muxed.init, b"ftyp")[0] == b"iso5\0\0\x02\0iso5iso6mp41"
    assert find(muxed.init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"avcC") == [
        muxed.video.record]
    esds = find(muxed.init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"mp4a", b"esds")[0]
    assert muxed.audio.asc in esds and esds[4] == 0x03
    mdhd = find(muxed.init, b"moov", b"trak", b"mdia", b"mdhd")
    assert [struct.unpack(">I", m[12:16])[0] for m in mdhd] == [90000, 44100]
    tkhd = find(muxed.init, b"moov", b"trak", b"tkhd")
    assert [struct.unpack(">I", t[12:16])[0] for t in tkhd] == [1, 2]
    assert struct.unpack(">II", tkhd[0][76:84]) == (320 << 16, 240 << 16)
    avc1 = find(muxed.init, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1")[0]
    assert struct.unpack(">HH", avc1[24:28]) == (320, 240)
    trex = find(muxed.init, b"moov", b"mvex", b"trex")
    assert [struct.unpack(">IIIII", t[4:24]) for t in trex] == [(1, 1, 0, 0, 0), (2, 1, 0, 0, 0)]


def test_fragments_point_at_their_samples(lecture: tuple[Path, bytes, Muxed]) -> None:
    """Every trun's data offset lands on its samples in mdat; decode times run on without gaps."""
    muxed = lecture[2]
    next_time: dict[int, int] = {}
    for number, part in enumerate(muxed.parts, start=1):
        sequence, runs, mdat_start = read_fragment(part.data)
        assert sequence == number
        position = mdat_start
        for run in runs:
            assert run.data_offset == position
            position += sum(size for _, size, _, _ in run.samples)
            if run.track_id in next_time:
                assert run.base == next_time[run.track_id]
            next_time[run.track_id] = run.base + sum(d for d, _, _, _ in run.samples)
            if run.track_id == 1:
                assert run.flags == 0xF01 and run.samples[0][2] in (SYNC_SAMPLE_FLAGS, NON_SYNC_SAMPLE_FLAGS)
                assert (run.samples[0][2] == SYNC_SAMPLE_FLAGS) == part.independent
            else:
                assert run.flags == 0x301 and {d for d, _, _, _ in run.samples} == {1024}
        assert position == len(part.data)


# --------------------------------------------------------------------------- cutting rules


def _synthetic(gop: int, seconds: float, fps: int = 30, part_target: float = 0.334,
               segment_target: float = 2.0, audio: bool = False) -> list[Part]:
    video = AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 320, 240, 0x64, 0, 0x1F)
    muxer = CmafMuxer(video, AacConfig(b"\x12\x10", 2, 44100, 2) if audio else None,
                      part_target=part_target, segment_target=segment_target)
    parts: list[Part] = []
    frames = int(seconds * fps)
    for i in range(frames):
        parts += muxer.add_video(bytes(10), i * 1000 // fps, 0, keyframe=i % gop == 0)
    return parts + muxer.flush()


@pytest.mark.parametrize(("fps", "gop", "segment_target", "segment_seconds"), [
    (30, 60, 2.0, 2.0),
    (30, 300, 2.0, 10.0),  # a 10 s GOP: segments wait for keyframes, parts do not
    (25, 50, 2.0, 2.0),
    (30, 30, 2.0, 2.0),  # keyframes every second: a segment takes two GOPs
    (30, 45, 2.0, 3.0),  # 1.5 s GOP: the first keyframe at or after 2 s
])
def test_parts_are_cut_on_time_and_segments_at_keyframes(fps: int, gop: int, segment_target: float,
                                                         segment_seconds: float) -> None:
    parts = _synthetic(gop, 20.0, fps, segment_target=segment_target)
    assert all(p.duration <= 0.334 for p in parts)
    segments: dict[int, list[Part]] = {}
    for p in parts:
        segments.setdefault(p.msn, []).append(p)
    assert list(segments) == list(range(len(segments)))
    for msn, members in list(segments.items())[:-1]:
        assert [p.index for p in members] == list(range(len(members)))
        assert members[0].segment_start and members[0].independent
        assert not any(p.segment_start for p in members[1:])
        assert sum(p.duration for p in members) == pytest.approx(segment_seconds, abs=0.002)
        # RFC 8216bis 4.4.4.9: every part but a segment's last lasts at least 85 % of the target.
        assert all(p.duration >= 0.85 * 0.334 for p in members[:-1])
    # A part is independent exactly when it starts on one of the GOP's keyframes.
    assert [p.independent for p in parts] == [round(p.start * fps) % gop == 0 for p in parts]


def test_video_before_the_first_keyframe_is_dropped_and_time_never_runs_back() -> None:
    muxer = CmafMuxer(AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 16, 16, 0x64, 0, 0x1F), part_target=0.1)
    assert muxer.add_video(b"a", 0) == [] and muxer.add_video(b"b", 33) == []
    assert muxer.dropped_video == 2
    parts = muxer.add_video(b"K", 66, 0, keyframe=True) + muxer.add_video(b"x", 100, -10)
    parts += muxer.add_video(b"y", 90) + muxer.add_video(b"z", 200) + muxer.flush()  # 90 < 100: a publisher bug
    runs = [run for p in parts for run in read_fragment(p.data)[1]]
    times = []
    for run in runs:
        t = run.base
        for duration, _, _, _ in run.samples:
            times.append(t)
            t += duration
    assert times == [66 * 90, 100 * 90, 100 * 90 + 1, 200 * 90]
    assert any(run.version == 1 and any(s[3] == -900 for s in run.samples) for run in runs)  # negative offset: trun v1


def test_audio_only_stream_and_audio_follows_the_video_timeline() -> None:
    aac = AacConfig(b"\x12\x10", 2, 44100, 2)
    muxer = CmafMuxer(audio=aac, part_target=0.334, segment_target=1.0)
    parts = [p for i in range(200) for p in muxer.add_audio(bytes(5), i * 1024 * 1000 // 44100)] + muxer.flush()
    assert all(p.independent for p in parts) and {p.index for p in parts if p.segment_start} == {0}
    assert max(p.msn for p in parts) == 4  # 200 frames = 4.64 s in 1 s segments
    assert all(len(read_fragment(p.data)[1]) == 1 for p in parts)
    # Audio in an A/V stream: each part carries the frames that start before its video ends.
    mixed = CmafMuxer(AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 16, 16, 0x64, 0, 0x1F), aac)
    out: list[Part] = []
    audio_frames = iter(range(10_000))
    frame = next(audio_frames)
    for i in range(90):
        video_ms = i * 1000 // 30
        out += mixed.add_video(bytes(3), video_ms, 0, keyframe=i % 30 == 0)
        while frame * 1024 * 1000 // 44100 <= video_ms:  # FLV interleaves by timestamp
            out += mixed.add_audio(bytes(4), frame * 1024 * 1000 // 44100)
            frame = next(audio_frames)
    out += mixed.flush()
    for part in out[:-1]:
        runs = read_fragment(part.data)[1]
        audio_run = [r for r in runs if r.track_id == 2]
        if audio_run:
            last_start = audio_run[0].base + 1024 * (len(audio_run[0].samples) - 1)
            assert last_start / 44100 < part.start + part.duration


def _audio_times(parts: list[Part], track_id: int) -> list[int]:
    times = []
    for part in parts:
        for run in read_fragment(part.data)[1]:
            if run.track_id == track_id:
                t = run.base
                for duration, _, _, _ in run.samples:
                    times.append(t)
                    t += duration
    return times


@pytest.mark.parametrize("with_video", [False, True])
def test_audio_counts_frames_and_follows_a_publisher_gap(with_video: bool) -> None:
    """AAC frames are 1024 samples apart whatever FLV's millisecond stamps say; a jump forward of
    more than 0.1 s (a publisher's gap) moves the timeline to the frame's own stamp."""
    aac = AacConfig(b"\x12\x10", 2, 44100, 2)
    video = AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 16, 16, 0x64, 0, 0x1F) if with_video else None
    muxer = CmafMuxer(video, aac)
    stamps = [0, 23, 46, 70, 93, 1000, 1023, 1047]  # ms, as FLV rounds them
    parts: list[Part] = []
    for i, ms in enumerate(stamps):
        if with_video and i == 0:
            parts += muxer.add_video(b"K", 0, 0, keyframe=True)
        parts += muxer.add_audio(b"a", ms)
    if with_video:
        parts += muxer.add_video(b"x", 1100)
    parts += muxer.flush()
    assert _audio_times(parts, 2 if with_video else 1) == [0, 1024, 2048, 3072, 4096, 44100, 45124, 46148]


def test_a_muxer_needs_a_stream_and_a_sane_target() -> None:
    with pytest.raises(ValueError, match="a muxer needs a video or an audio stream"):
        CmafMuxer()
    with pytest.raises(ValueError, match="part_target must be positive and at most segment_target"):
        CmafMuxer(audio=AacConfig(b"\x12\x10", 2, 44100, 2), part_target=3, segment_target=2)


# --------------------------------------------------------------------------- independent readers


def test_ffmpeg_decodes_every_frame_and_reads_the_same_packets(lecture: tuple[Path, bytes, Muxed]) -> None:
    folder, _, muxed = lecture
    mp4 = muxed.write(folder / "all.mp4")
    frames, seconds, _ = decode(mp4)
    assert frames == 120 and seconds == pytest.approx(4.0, abs=0.1)
    for stream in ("v", "a"):
        ours, theirs = ffmpeg_packets(mp4, stream), ffmpeg_packets(folder / "in.flv", stream)
        assert [(size, crc) for _, size, crc in ours] == [(size, crc) for _, size, crc in theirs]
        offset = ours[0][0] - theirs[0][0]  # each demuxer shifts its start its own way
        assert all(abs(a - b - offset) < 0.0015 for (a, _, _), (b, _, _) in zip(ours, theirs))


def test_every_segment_decodes_on_its_own_after_the_init_segment(lecture: tuple[Path, bytes, Muxed]) -> None:
    folder, _, muxed = lecture
    total = 0
    for msn in sorted({p.msn for p in muxed.parts}):
        path = folder / f"seg{msn}.mp4"
        path.write_bytes(muxed.init + b"".join(p.data for p in muxed.parts if p.msn == msn))
        frames, _, _ = decode(path)
        total += frames
    assert total == 120


FRAME_I420 = 320 * 240 * 3 // 2


def gst_decode(args: list[str], folder: Path) -> tuple[int, int]:
    """Run a gst-launch pipeline whose branches end in ``{v}`` / ``{a}`` (raw I420 and S16 mono files):
    decoded video frames and audio samples, read from the sizes of what GStreamer wrote."""
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        pytest.fail("gst-launch-1.0 is a test peer (gstreamer1.0-tools, make install-test)")
    video, audio = folder / "v.raw", folder / "a.raw"
    sinks = {"{v}": ["videoconvert", "!", "video/x-raw,format=I420", "!", "filesink", f"location={video}"],
             "{a}": ["audioconvert", "!", "audio/x-raw,format=S16LE,channels=1", "!", "filesink",
                     f"location={audio}"]}
    argv = [gst, "-q"] + [w for arg in args for w in sinks.get(arg, [arg])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-2000:] + done.stdout[-2000:]
    size = video.stat().st_size
    assert size % FRAME_I420 == 0
    return size // FRAME_I420, audio.stat().st_size // 2


def test_gstreamer_demuxes_and_decodes_it(lecture: tuple[Path, bytes, Muxed], tmp_path: Path) -> None:
    mp4 = lecture[2].write(tmp_path / "gst.mp4")
    frames, samples = gst_decode(
        ["filesrc", f"location={mp4}", "!", "qtdemux", "name=d",
         "d.video_0", "!", "queue", "!", "h264parse", "!", "openh264dec", "!", "{v}",
         "d.audio_0", "!", "queue", "!", "aacparse", "!", "faad", "!", "{a}"], tmp_path)
    assert frames == 120
    assert samples == pytest.approx(4 * 44100, abs=2048)


def _write_ll_hls(folder: Path, muxed: Muxed, ended: bool) -> Path:
    """Files and an LL-HLS playlist as the live path will serve them: parts, segments, init."""
    (folder / "init.mp4").write_bytes(muxed.init)
    segments = []
    msns = sorted({p.msn for p in muxed.parts})
    for msn in msns:
        members = [p for p in muxed.parts if p.msn == msn]
        for p in members:
            (folder / f"p{msn}.{p.index}.m4s").write_bytes(p.data)
        (folder / f"s{msn}.m4s").write_bytes(b"".join(p.data for p in members))
        segments.append(LlSegment(f"s{msn}.m4s", sum(p.duration for p in members),
                                  tuple(LlPart(f"p{msn}.{p.index}.m4s", p.duration, p.independent) for p in members)))
    if not ended:  # the last segment still in progress: its parts only, and a hint for the next one
        last = segments.pop()
        playlist = LlPlaylist(2, 0.334, "init.mp4", segments=tuple(segments), pending_parts=last.parts,
                              preload_hint=f"p{msns[-1]}.{len(last.parts)}.m4s")
    else:
        playlist = LlPlaylist(2, 0.334, "init.mp4", segments=tuple(segments), ended=True)
    path = folder / "index.m3u8"
    path.write_text(render_ll(playlist))
    return path


def test_parts_obey_the_playlist_rules(lecture: tuple[Path, bytes, Muxed]) -> None:
    """RFC 8216bis 4.4.4.9 / 4.4.3.7 on real media: parts within PART-TARGET, a segment's first part
    independent, segments within TARGETDURATION, part durations adding up to the segment's."""
    parts = lecture[2].parts
    assert all(p.duration <= 0.334 for p in parts)
    assert all(p.independent for p in parts if p.segment_start)
    for msn in {p.msn for p in parts}:
        members = [p for p in parts if p.msn == msn]
        assert round(sum(p.duration for p in members)) <= 2
        assert members[0].start + sum(p.duration for p in members) == pytest.approx(
            members[-1].start + members[-1].duration)


def test_ffmpeg_plays_the_ll_playlist(lecture: tuple[Path, bytes, Muxed], tmp_path: Path) -> None:
    playlist = _write_ll_hls(tmp_path, lecture[2], ended=True)
    frames, seconds, _ = decode(playlist, "-allowed_extensions", "ALL", "-allowed_segment_extensions", "ALL")
    assert frames == 120 and seconds == pytest.approx(4.0, abs=0.1)


def test_gstreamer_plays_the_ll_playlist(lecture: tuple[Path, bytes, Muxed], tmp_path: Path) -> None:
    playlist = _write_ll_hls(tmp_path, lecture[2], ended=True)
    frames, samples = gst_decode(["uridecodebin", f"uri={playlist.as_uri()}", "name=d",
                                  "d.", "!", "queue", "!", "{v}", "d.", "!", "queue", "!", "{a}"], tmp_path)
    assert frames == 120
    assert samples == pytest.approx(4 * 44100, abs=2048)


def test_a_ten_second_gop_still_gives_short_parts_and_decodes(tmp_path: Path) -> None:
    flv = make_flv(tmp_path / "gop10.flv", seconds=12, size="160x120", gop=300, extra=("-preset", "ultrafast"))
    muxed = mux_flv(flv)
    assert [p.msn for p in muxed.parts if p.segment_start] == [0, 1]
    assert sum(p.duration for p in muxed.parts if p.msn == 0) == pytest.approx(10.0, abs=0.002)
    assert all(p.duration <= 0.334 for p in muxed.parts) and len(muxed.parts) >= 36
    frames, _, _ = decode(_write_ll_hls(tmp_path, muxed, ended=True), "-allowed_extensions", "ALL")
    assert frames == 360


def test_ffmpeg_reads_the_live_ll_playlist_ignoring_parts(lecture: tuple[Path, bytes, Muxed], tmp_path: Path) -> None:
    """A player that ignores LL tags, on the live playlist (segment in progress, preload hint): it
    reads every complete segment, then stops after two reloads without news (about 3 s: ffmpeg
    reloads a live playlist once per target duration)."""
    muxed = lecture[2]
    playlist = _write_ll_hls(tmp_path, muxed, ended=False)
    assert "#EXT-X-PRELOAD-HINT" in playlist.read_text()
    complete = sum(p.duration for p in muxed.parts if p.msn < muxed.parts[-1].msn)
    frames, seconds, _ = decode(playlist, "-live_start_index", "0", "-m3u8_hold_counters", "2")
    assert frames == round(complete * 30) and seconds == pytest.approx(complete, abs=0.1)


# --------------------------------------------------------------------------- fragment start (captions' X-TIMESTAMP-MAP)


def test_fragment_start_is_the_video_tfdt_on_the_90khz_clock() -> None:
    aac = AacConfig(b"\x12\x10", 2, 44100, 2)
    muxer = CmafMuxer(AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 16, 16, 0x64, 0, 0x1F), aac, part_target=0.334)
    init = muxer.init_segment()
    parts: list[Part] = []
    for i in range(60):  # from 5 s on, as a publisher whose timestamps do not start at 0; audio a little ahead
        parts += muxer.add_audio(bytes(4), 4990 + i * 23)
        parts += muxer.add_video(bytes(3), 5000 + i * 33, 0, keyframe=i % 30 == 0)
    parts += muxer.flush()
    assert [fragment_start_90khz(init, p.data) for p in parts] == [round(p.start * 90_000) for p in parts]
    assert fragment_start_90khz(init, parts[0].data) == 5000 * 90  # the video's, not the earlier audio's
    head = parts[1].data[:200]  # a file's head: the mdat is cut
    assert fragment_start_90khz(init, head) == round(parts[1].start * 90_000)
    assert fragment_start_90khz(init, b"") is None and fragment_start_90khz(b"junk", parts[0].data) is None
    audio_only = CmafMuxer(audio=aac, part_target=0.334)
    first = [p for i in range(40) for p in audio_only.add_audio(bytes(4), 10_000 + i * 1024 * 1000 // 44100)][0]
    assert fragment_start_90khz(audio_only.init_segment(), first.data) == 10_000 * 44100 // 1000 * 90_000 // 44100


def test_fragment_start_reads_ffmpegs_fragmented_mp4_too(tmp_path: Path) -> None:
    """An fMP4 we did not write (ffmpeg's, video at its own timescale): its fragment one second in starts at 90000."""
    out = tmp_path / "frag.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
                    "-t", "3", "-c:v", "libx264", "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(out)], check=True, timeout=60)
    data = out.read_bytes()
    first_moof = data.index(b"moof") - 4
    second_moof = data.index(b"moof", first_moof + 8) - 4
    init = data[:first_moof]
    assert fragment_start_90khz(init, data[first_moof:]) == 0
    assert fragment_start_90khz(init, data[second_moof:]) == 90_000  # the second GOP, 25 frames in


def test_an_audio_only_muxer_is_cut_where_it_is_told() -> None:
    """A ladder's audio rendition: no keyframes of its own, segments start where the video's do."""
    muxer = CmafMuxer(None, AacConfig(b"\x11\x90", 2, 48000, 2), part_target=0.334, segment_target=1e9)
    parts: list[Part] = []
    for n in range(40):  # 40 frames of 1024 samples: 0.85 s
        parts += muxer.add_audio(b"\x21" * 10, n * 1024 * 1000 // 48000)
        if n == 20:
            parts += muxer.cut()
            parts += muxer.cut()  # twice in a row: still one new segment
    parts += muxer.flush()
    assert [p.msn for p in parts if p.segment_start] == [0, 1]
    first_of_1 = next(p for p in parts if p.msn == 1)
    assert first_of_1.start == pytest.approx(21 * 1024 / 48000)  # the frame after the cut starts it
    assert sum(p.duration for p in parts if p.msn == 0) == pytest.approx(21 * 1024 / 48000)
    assert CmafMuxer(None, AacConfig(b"\x11\x90", 2, 48000, 2)).cut() == []  # nothing fed: nothing to cut


def test_a_muxer_with_video_is_not_cut_from_outside() -> None:
    video = AvcConfig(b"", 160, 120, 0x64, 0, 0x1f)
    with pytest.raises(ValueError, match="cuts segments at its keyframes only"):
        CmafMuxer(video, None).cut()


def test_an_adts_stream_becomes_an_audio_track_placed_by_its_decode_times(tmp_path: Path) -> None:
    """ffmpeg's AAC (ADTS) in, an init section and fragments out; ffmpeg reads them back with the times we gave."""
    from formats.cmaf import audio_fragment, audio_init_segment, parse_adts, track_starts

    adts = tmp_path / "tone.aac"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "1",
                    "-ac", "1", "-c:a", "aac", "-f", "adts", str(adts)], check=True)
    config, frames = parse_adts(adts.read_bytes())
    assert (config.sample_rate, config.channels, config.codec) == (48000, 1, "mp4a.40.2") and len(frames) > 40
    init = audio_init_segment(config)
    assert audio_format(init) == AudioFormat("mp4a", 48000, 1)
    start = 48000 * 100  # on a live timeline: 100 s in
    first = audio_fragment(1, config, start, frames[:20])
    second = audio_fragment(2, config, start + 20 * 1024, frames[20:])
    assert track_starts(init, second) == {b"soun": (start + 20 * 1024, 48000)}
    (tmp_path / "track.mp4").write_bytes(init + first + second)
    out = subprocess.run([FFMPEG, "-v", "error", "-xerror", "-copyts", "-i", str(tmp_path / "track.mp4"), "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    pts = [int(line.split(",")[2]) for line in out.stdout.splitlines() if line and not line.startswith("#")]
    assert pts == [start + i * 1024 for i in range(len(frames))], pts[:3]
    with pytest.raises(CmafError):
        parse_adts(adts.read_bytes()[:-3])


def test_a_muxed_segment_splits_into_a_video_only_and_an_audio_only_track_that_ffmpeg_reads(tmp_path: Path) -> None:
    """What hls.js needs to play an alternate audio rendition beside fMP4 video (it keeps one SourceBuffer per kind)."""
    from formats.cmaf import single_track_fragment, single_track_init, track_starts

    adts = tmp_path / "tone.aac"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "2",
                    "-c:a", "aac", "-f", "adts", str(adts)], check=True)
    from formats.cmaf import parse_adts
    config, frames = parse_adts(adts.read_bytes())
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "2",
                    "-c:v", "libx264", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp_path / "v.mp4")], check=True)
    import av
    parts: list[Part] = []
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        muxer = CmafMuxer(parse_avc_config(stream.codec_context.extradata), config)
        packets = [(bytes(p), int(p.dts * p.time_base * 1000), p.is_keyframe) for p in container.demux(stream) if p.size]
    audio = [(frame, i * 1024 * 1000 // 44100) for i, frame in enumerate(frames)]
    events = sorted([(t, 0, d, k) for d, t, k in packets] + [(t, 1, d, False) for d, t in audio], key=lambda e: (e[0], e[1]))
    for t, kind, data, key in events:
        parts += muxer.add_video(data, t, 0, key) if kind == 0 else muxer.add_audio(data, t)
    parts += muxer.flush()
    init, segment = muxer.init_segment(), b"".join(p.data for p in parts)
    for handler, kind in ((b"vide", "video"), (b"soun", "audio")):
        only_init, only = single_track_init(init, handler), single_track_fragment(init, segment, handler)
        assert set(track_starts(only_init, only)) == {handler}
        assert track_starts(only_init, only)[handler] == track_starts(init, segment)[handler]
        (tmp_path / f"{kind}.mp4").write_bytes(only_init + only)
        out = subprocess.run([FFMPEG, "-v", "error", "-xerror", "-i", str(tmp_path / f"{kind}.mp4"), "-f", "null", "-"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        with av.open(str(tmp_path / f"{kind}.mp4")) as container:
            assert [s.type for s in container.streams] == [kind]
            assert sum(1 for _ in container.demux(container.streams[0])) > 15
