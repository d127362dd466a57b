"""Golden ffmpeg argument lists, the bundled ffmpeg running them, and the segment-list lines it writes back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from formats.flv import audio_codec, flv_header, flv_tag, is_keyframe, read_tags, video_codec
from ingest.packaging.ffmpeg_args import (
    SegmentListEntry,
    build_ffmpeg_args,
    build_transcoder_args,
    encoded_renditions,
    h264_codecs,
    parse_segment_list_line,
    segment_filename,
    segment_number,
)
from ingest.packaging.feed import publisher_source_height
from ingest.packaging.options import (
    DEFAULT_LADDER,
    PASSTHROUGH_RENDITION,
    PackagerOptions,
    Rendition,
    ladder_for_source,
)
from ingest.packaging.variants import build_variants

from .support import ffmpeg_exe, make_source

OUT = PurePosixPath("/srv/live/ev42")

INPUT = [
    "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
    "-f", "flv", "-probesize", "1000000", "-analyzeduration", "1000000", "-fpsprobesize", "0",
]


def segment_output(rendition: str, start: int = 42, fd: int = 7, seconds: str = "2") -> list[str]:
    return [
        "-max_interleave_delta", "1000000",
        "-f", "segment", "-segment_format", "mpegts",
        "-segment_time", seconds, "-segment_time_delta", "0.01",
        "-segment_start_number", str(start),
        "-segment_list", f"pipe:{fd}", "-segment_list_type", "csv",
        "-segment_list_entry_prefix", f"{rendition}/",
        "-individual_header_trailer", "0",
        f"/srv/live/ev42/{rendition}/seg_%06d.ts",
    ]


def test_passthrough_golden() -> None:
    args = build_ffmpeg_args("ffmpeg", PackagerOptions(), OUT, start_number=42, list_fd=7)
    assert args == [
        *INPUT, "-i", "pipe:0",
        "-map", "0:v?", "-map", "0:a?", "-c", "copy",
        *segment_output("source"),
    ]


def x264(label: str, level: str, kbps: int, audio_kbps: int | None, gop: str = "2") -> list[str]:
    """One video rendition's encode; ``audio_kbps`` None: the publisher has no audio."""
    audio = ["-c:a", "aac", "-b:a", f"{audio_kbps}k"] if audio_kbps is not None else ["-an"]
    return [
        "-map", f"[{label}]", *(["-map", "0:a?"] if audio_kbps is not None else []),
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-profile:v", "high", "-level:v", level, "-pix_fmt", "yuv420p",
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
        "-force_key_frames", f"expr:gte(t,n_forced*{gop})", "-sc_threshold", "0",
        "-fps_mode", "passthrough",
        *audio,
    ]


def test_default_ladder_golden() -> None:
    args = build_ffmpeg_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), OUT, 0, 5)
    assert args == [
        *INPUT, "-thread_type", "slice", "-i", "pipe:0",
        "-filter_complex",
        "[0:v]split=3[v0in][v1in][v2in];[v0in]scale=-2:720[v0];"
        "[v1in]scale=-2:480[v1];[v2in]scale=-2:240[v2]",
        *x264("v0", "3.1", 2800, 128), *segment_output("720p", 0, 5),
        *x264("v1", "3.0", 1400, 128), *segment_output("480p", 0, 5),
        *x264("v2", "2.1", 400, 64), *segment_output("240p", 0, 5),
        "-map", "0:a", "-vn", "-c:a", "aac", "-b:a", "96k", *segment_output("audio", 0, 5),
    ]


def test_ladder_without_audio_golden() -> None:
    """A publisher without audio: the video renditions only, none of them asking for audio (no
    audio-only rendition, whose ``-map 0:a`` would make ffmpeg exit at every start)."""
    args = build_ffmpeg_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), OUT, 0, 5, has_audio=False)
    assert args == [
        *INPUT, "-thread_type", "slice", "-i", "pipe:0",
        "-filter_complex",
        "[0:v]split=3[v0in][v1in][v2in];[v0in]scale=-2:720[v0];"
        "[v1in]scale=-2:480[v1];[v2in]scale=-2:240[v2]",
        *x264("v0", "3.1", 2800, None), *segment_output("720p", 0, 5),
        *x264("v1", "3.0", 1400, None), *segment_output("480p", 0, 5),
        *x264("v2", "2.1", 400, None), *segment_output("240p", 0, 5),
    ]
    assert [r.name for r in encoded_renditions(PackagerOptions(ladder=DEFAULT_LADDER), False)] == [
        r.name for r in DEFAULT_LADDER if not r.is_audio_only]
    # passthrough copies whatever there is: the same command with or without audio
    assert build_ffmpeg_args("ffmpeg", PackagerOptions(), OUT, 42, 7, has_audio=False) == build_ffmpeg_args(
        "ffmpeg", PackagerOptions(), OUT, 42, 7)


def test_options_shape_the_command() -> None:
    options = PackagerOptions(
        segment_seconds=1.5,
        ladder=(Rendition("360p", 360, video_kbps=800, audio_kbps=96, h264_level="3.0"),),
        x264_preset="ultrafast",
        probesize=500_000,
        analyzeduration_us=250_000,
    )
    args = build_ffmpeg_args("/opt/ffmpeg", options, OUT, 7, 9)
    assert args[0] == "/opt/ffmpeg"
    assert args[args.index("-probesize") + 1] == "500000"
    assert args[args.index("-analyzeduration") + 1] == "250000"
    assert args[args.index("-preset") + 1] == "ultrafast"
    assert args[args.index("-filter_complex") + 1] == "[0:v]split=1[v0in];[v0in]scale=-2:360[v0]"
    assert "expr:gte(t,n_forced*1.5)" in args
    assert args[-11:] == segment_output("360p", 7, 9, seconds="1.5")[-11:]


def test_negative_start_number_is_refused() -> None:
    with pytest.raises(ValueError, match="start_number must be >= 0"):
        build_ffmpeg_args("ffmpeg", PackagerOptions(), OUT, -1, 3)


@pytest.mark.parametrize("ladder", [(), DEFAULT_LADDER], ids=["passthrough", "default-ladder"])
def test_bundled_ffmpeg_runs_the_command(tmp_path: Path, ladder: tuple[Rendition, ...]) -> None:
    """One second of FLV on stdin: every rendition writes its segment and lists it on the extra fd."""
    options = PackagerOptions(ladder=ladder)
    names = [r.name for r in ladder] or [PASSTHROUGH_RENDITION]
    for name in names:
        (tmp_path / name).mkdir()
    kinds = {"audio": 8, "video": 9}
    flv = flv_header(True, True) + b"".join(
        flv_tag(kinds[t.kind], t.timestamp_ms, t.payload) for t in make_source(seconds=1.0, fps=10)
    )
    read_fd, write_fd = os.pipe()
    try:
        args = build_ffmpeg_args(ffmpeg_exe(), options, tmp_path, start_number=3, list_fd=write_fd)
        out = subprocess.run(args, input=flv, capture_output=True, timeout=60, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as listing:
        entries = [parse_segment_list_line(line) for line in listing.read().splitlines()]
    assert out.returncode == 0, out.stderr.decode()
    assert sorted((e.rendition, e.number) for e in entries) == sorted((name, 3) for name in names)
    assert all((tmp_path / e.rendition / e.filename).stat().st_size > 0 for e in entries)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"segment_seconds": 0}, "segment_seconds must be > 0"),
        ({"ladder": (Rendition("a", 240), Rendition("a", 120))}, "duplicate rendition names"),
        ({"ladder": (Rendition("../x", 240),)}, "bad rendition name"),
        ({"ladder": (Rendition("audio", None),)}, "at least one video rendition"),
        ({"queue_max_bytes": 1000}, "queue_max_bytes must be >= 64 KiB"),
    ],
)
def test_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PackagerOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("segment_seconds", "window_seconds", "expected"),
    [(2.0, 12.0, 6), (1.0, 12.0, 12), (6.0, 12.0, 3), (4.0, 12.0, 3), (2.0, 13.0, 7)],
)
def test_window_segments(segment_seconds: float, window_seconds: float, expected: int) -> None:
    options = PackagerOptions(segment_seconds=segment_seconds, live_window_seconds=window_seconds)
    assert options.window_segments == expected


def test_segment_names_round_trip() -> None:
    assert segment_filename(42) == "seg_000042.ts"
    assert segment_filename(12_345_678) == "seg_12345678.ts"
    assert segment_number("seg_000042.ts") == 42
    assert segment_number("seg_12345678.ts") == 12_345_678
    assert segment_number("seg_42.ts") is None
    assert segment_number(".live.m3u8.tmp") is None


def test_h264_codecs() -> None:
    assert h264_codecs("3.1") == "avc1.64001f"
    assert h264_codecs("3.0") == "avc1.64001e"
    assert h264_codecs("2.1") == "avc1.640015"


def test_parse_segment_list_line() -> None:
    entry = parse_segment_list_line("720p/seg_000005.ts,1.023222,2.023222\n")
    assert entry == SegmentListEntry("720p", "seg_000005.ts", 1.023222, 2.023222)
    assert entry.number == 5
    assert entry.duration == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("seg_000005.ts,0.0,1.0", "segment list entry without rendition prefix: 'seg_000005.ts'"),
        ("a/b/seg.ts,0.0,1.0", "segment list entry without rendition prefix: 'a/b/seg.ts'"),
        ("720p/seg_000005.ts,0.0", "bad segment list line '720p/seg_000005.ts,0.0'"),
        ("720p/seg_000005.ts,zero,1.0", "bad segment times in '720p/seg_000005.ts,zero,1.0'"),
        ("", "bad segment list line ''"),
    ],
)
def test_parse_segment_list_line_rejects(line: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_segment_list_line(line)
    assert str(info.value) == message


def flv_pipe(fd: int) -> list[str]:
    return ["-max_interleave_delta", "1000000", "-f", "flv", "-flvflags", "no_duration_filesize",
            "-flush_packets", "1", f"pipe:{fd}"]


def test_transcoder_golden() -> None:
    """The LL-HLS transcoder: the plain ladder's encodes, each rendition as FLV on its own pipe."""
    args = build_transcoder_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), [5, 6, 8, 9])
    assert args == [
        *INPUT, "-thread_type", "slice", "-i", "pipe:0",
        "-filter_complex",
        "[0:v]split=3[v0in][v1in][v2in];[v0in]scale=-2:720[v0];"
        "[v1in]scale=-2:480[v1];[v2in]scale=-2:240[v2]",
        *x264("v0", "3.1", 2800, 128), *flv_pipe(5),
        *x264("v1", "3.0", 1400, 128), *flv_pipe(6),
        *x264("v2", "2.1", 400, 64), *flv_pipe(8),
        "-map", "0:a", "-vn", "-c:a", "aac", "-b:a", "96k", *flv_pipe(9),
    ]


def test_transcoder_without_audio_golden() -> None:
    """A publisher without audio: one pipe per video rendition, no audio asked of ffmpeg."""
    args = build_transcoder_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), [5, 6, 8], has_audio=False)
    assert args == [
        *INPUT, "-thread_type", "slice", "-i", "pipe:0",
        "-filter_complex",
        "[0:v]split=3[v0in][v1in][v2in];[v0in]scale=-2:720[v0];"
        "[v1in]scale=-2:480[v1];[v2in]scale=-2:240[v2]",
        *x264("v0", "3.1", 2800, None), *flv_pipe(5),
        *x264("v1", "3.0", 1400, None), *flv_pipe(6),
        *x264("v2", "2.1", 400, None), *flv_pipe(8),
    ]
    with pytest.raises(ValueError, match="3 renditions need as many pipes, got 4"):
        build_transcoder_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), [5, 6, 8, 9], has_audio=False)


def test_transcoder_refuses_passthrough_and_a_wrong_number_of_pipes() -> None:
    with pytest.raises(ValueError, match="passthrough is muxed without ffmpeg"):
        build_transcoder_args("ffmpeg", PackagerOptions(), [3])
    with pytest.raises(ValueError, match="4 renditions need as many pipes, got 2"):
        build_transcoder_args("ffmpeg", PackagerOptions(ladder=DEFAULT_LADDER), [3, 4])


def test_bundled_ffmpeg_runs_the_transcoder(tmp_path: Path) -> None:
    """Two seconds of FLV on stdin: every rendition comes back as FLV on its pipe, H.264 + AAC
    (AAC only for the audio rendition), keyframes on the same timestamps in every video rendition."""
    options = PackagerOptions(ladder=DEFAULT_LADDER, segment_seconds=1.0)
    kinds = {"audio": 8, "video": 9}
    flv = flv_header(True, True) + b"".join(
        flv_tag(kinds[t.kind], t.timestamp_ms, t.payload) for t in make_source(seconds=2.5, fps=10)
    )
    pipes = [os.pipe() for _ in options.ladder]
    outputs = [tmp_path / f"{r.name}.flv" for r in options.ladder]
    try:
        args = build_transcoder_args(ffmpeg_exe(), options, [w for _, w in pipes])
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[w for _, w in pipes])
    finally:
        for _, w in pipes:
            os.close(w)
    readers = [subprocess.Popen(["cat"], stdin=r, stdout=open(path, "wb")) for (r, _), path in zip(pipes, outputs)]
    for r, _ in pipes:
        os.close(r)
    _, err = proc.communicate(flv, timeout=60)
    for reader in readers:
        reader.wait(10)
    assert proc.returncode == 0, err.decode()
    keyframes = []
    for rendition, path in zip(options.ladder, outputs):
        tags = list(read_tags(path.read_bytes()))
        kinds_seen = {tag_type for tag_type, _, _ in tags}
        assert kinds_seen == ({8, 18} if rendition.is_audio_only else {8, 9, 18}), rendition.name
        assert all(video_codec(p) == "h264" for t, _, p in tags if t == 9)
        assert all(audio_codec(p) == "aac" for t, _, p in tags if t == 8)
        if not rendition.is_audio_only:
            keyframes.append([ts for t, ts, p in tags if t == 9 and is_keyframe(p) and p[1] == 1])
    assert len(keyframes[0]) >= 2 and keyframes.count(keyframes[0]) == len(keyframes), keyframes


# -- the rungs encoded for a source: none taller than it ------------------------------------------------

@pytest.mark.parametrize("height, expected", [
    (1080, ["720p", "480p", "240p", "audio"]),
    (720, ["720p", "480p", "240p", "audio"]),  # as tall as a rung: that rung is kept
    (719, ["480p", "240p", "audio"]),
    (480, ["480p", "240p", "audio"]),
    (360, ["240p", "audio"]),
    (240, ["240p", "audio"]),
    (120, ["240p", "audio"]),  # none qualifies: the lowest video rung alone, never no video
    (None, ["720p", "480p", "240p", "audio"]),  # unknown: the whole ladder, as before
    (0, ["720p", "480p", "240p", "audio"]),
])
def test_no_rung_taller_than_the_source(height: int | None, expected: list[str]) -> None:
    assert [r.name for r in ladder_for_source(DEFAULT_LADDER, height)] == expected
    options = PackagerOptions(ladder=DEFAULT_LADDER)
    chosen = options.for_source_height(height)
    assert [r.name for r in encoded_renditions(chosen, True)] == expected
    assert [r.name for r in encoded_renditions(chosen, False)] == [n for n in expected if n != "audio"]
    assert chosen.rendition_names == tuple(expected)
    assert chosen.for_source_height(height) == chosen  # chosen once: choosing again changes nothing
    variants = build_variants(chosen, {}, {}, 0, True)
    assert [v.uri for v in variants] == [f"{n}/live.m3u8" for n in expected]
    assert [v.uri for v in build_variants(chosen, {}, {}, 0, False)] == [
        f"{n}/live.m3u8" for n in expected if n != "audio"]


def test_the_lowest_rung_is_the_shortest_whatever_the_order() -> None:
    ladder = (Rendition("240p", 240, 400), Rendition("audio", None), Rendition("480p", 480, 1400))
    assert [r.name for r in ladder_for_source(ladder, 100)] == ["240p", "audio"]
    assert PackagerOptions().for_source_height(100) == PackagerOptions()  # passthrough: nothing to choose


def test_a_small_source_scales_to_the_lowest_rung_only() -> None:
    """A 160x120 source: one scaler (240p), no 720p/480p encode; one pipe per rendition encoded."""
    options = PackagerOptions(ladder=DEFAULT_LADDER)
    args = build_transcoder_args("ffmpeg", options.for_source_height(120), [5, 6])
    assert args[args.index("-filter_complex") + 1] == "[0:v]split=1[v0in];[v0in]scale=-2:240[v0]"
    assert args.count("libx264") == 1 and "2800k" not in args and "1400k" not in args
    with pytest.raises(ValueError, match="2 renditions need as many pipes, got 4"):
        build_transcoder_args("ffmpeg", options.for_source_height(120), [5, 6, 8, 9])
    plain = build_ffmpeg_args("ffmpeg", options.for_source_height(360), OUT, 0, 5)
    assert plain[plain.index("-filter_complex") + 1] == "[0:v]split=1[v0in];[v0in]scale=-2:240[v0]"
    assert [a for a in plain if a.endswith("%06d.ts")] == [f"{OUT}/240p/seg_%06d.ts", f"{OUT}/audio/seg_%06d.ts"]
    assert build_ffmpeg_args("ffmpeg", options.for_source_height(None), OUT, 0, 5) == build_ffmpeg_args(
        "ffmpeg", options, OUT, 0, 5)


def test_the_source_height_comes_from_the_avc_header_else_onmetadata() -> None:
    header = next(t.payload for t in make_source(seconds=1.0) if t.kind == "video" and t.payload[1] == 0)
    assert publisher_source_height(None, {"video": header}) == 120  # 160x120, as the SPS says
    assert publisher_source_height({"height": 1080.0}, {"video": header}) == 120  # the encoder's word wins
    assert publisher_source_height({"height": 480.0}, {}) == 480
    assert publisher_source_height({"height": 480.0}, {"video": b"\x17\x00\x00\x00\x00junk"}) == 480
    for metadata in (None, {}, {"height": "tall"}, {"height": True}, {"height": -5}):
        assert publisher_source_height(metadata, {}) is None
