"""Golden argument lists of the catalog's ffmpeg runs (import, thumbnail, remux), and the bundled ffmpeg running them."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import av
import pytest

from formats.flv import read_tags
from formats.m3u8 import Segment, parse_media_playlist
from ingest.packaging.ll_stream import LlRendition, LlUpdate
from tests.media import FFMPEG, count_video_frames, decode_errors
from recorder.storage import RecordingFiles
from vod.importer import ImportRejected, Probe, import_args, probe
from formats.cmaf import AudioFormat
from vod.tools import audio_piece_args, concat_list, remux_args, thumbnail_args

UPLOAD = PurePosixPath("/srv/media/imports/abc.upload")
FOLDER = PurePosixPath("/srv/media/recordings/imported/7")
HEAD = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
ONLY_THE_UPLOAD = ["-protocol_whitelist", "file", "-format_whitelist", "mov,matroska,avi,mpegts,flv,asf,mpeg"]
ONE_TRACK_EACH = ["-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn"]


def hls(seconds: str) -> list[str]:
    return [
        "-f", "hls", "-hls_time", seconds, "-hls_playlist_type", "vod", "-hls_list_size", "0",
        "-hls_segment_type", "mpegts", "-hls_segment_filename", "/srv/media/recordings/imported/7/seg_%06d.ts",
        "/srv/media/recordings/imported/7/import.m3u8",
    ]


def build_import(media: Probe, segment_seconds: float = 4.0) -> list[str]:
    return import_args("ffmpeg", Path(UPLOAD), RecordingFiles(Path(FOLDER)), media, segment_seconds)


def test_import_copies_h264_and_aac() -> None:
    assert build_import(Probe("h264", "aac", 60.0, "mov")) == [
        *HEAD, *ONLY_THE_UPLOAD, "-f", "mov", "-i", "/srv/media/imports/abc.upload", *ONE_TRACK_EACH,
        "-c:v", "copy", "-c:a", "copy", *hls("4"),
    ]


def test_import_transcodes_other_codecs() -> None:
    assert build_import(Probe("vp8", "opus", None, "matroska"), segment_seconds=2.5) == [
        *HEAD, *ONLY_THE_UPLOAD, "-f", "matroska", "-i", "/srv/media/imports/abc.upload", *ONE_TRACK_EACH,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-force_key_frames", "expr:gte(t,n_forced*2.5)",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", *hls("2.5"),
    ]


def test_import_without_audio_says_nothing_about_audio() -> None:
    assert build_import(Probe("h264", None, 10.0, "avi")) == [
        *HEAD, *ONLY_THE_UPLOAD, "-f", "avi", "-i", "/srv/media/imports/abc.upload", *ONE_TRACK_EACH,
        "-c:v", "copy", *hls("4"),
    ]


def test_import_without_video_is_refused() -> None:
    with pytest.raises(ImportRejected, match="the file has no video stream"):
        build_import(Probe(None, "aac", 60.0, "mov"))


def test_thumbnail_golden() -> None:
    args = thumbnail_args("ffmpeg", Path("/m/seg_000000.ts"), Path("/m/.thumbnail.tmp.jpg"))
    assert args == [*HEAD, "-i", "/m/seg_000000.ts", "-frames:v", "1", "-vf", "scale=320:-2", "-q:v", "4",
                    "-f", "image2", "/m/.thumbnail.tmp.jpg"]
    narrow = thumbnail_args("ffmpeg", Path("/m/a.ts"), Path("/m/b.jpg"), width=160)
    assert narrow[narrow.index("-vf") + 1] == "scale=160:-2"


def test_thumbnail_of_an_fmp4_segment_reads_its_init_section_first() -> None:
    args = thumbnail_args("ffmpeg", Path("/m/seg_000000.m4s"), Path("/m/.thumbnail.tmp.jpg"), init=Path("/m/init_1.mp4"))
    assert args == [*HEAD, "-i", "concat:/m/init_1.mp4|/m/seg_000000.m4s", "-frames:v", "1", "-vf", "scale=320:-2",
                    "-q:v", "4", "-f", "image2", "/m/.thumbnail.tmp.jpg"]


def test_remux_golden() -> None:
    assert remux_args("ffmpeg", Path("/m/.recording.ffconcat"), Path("/m/.recording.tmp.mp4")) == [
        *HEAD, "-f", "concat", "-safe", "0", "-i", "/m/.recording.ffconcat",
        "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-movflags", "+faststart", "-f", "mp4", "/m/.recording.tmp.mp4",
    ]


def test_audio_piece_golden() -> None:
    """A piece whose audio format differs from the others': video copied, audio resampled into one format."""
    args = audio_piece_args("ffmpeg", Path("/m/.remux-1.m3u8"), Path("/m/.download.piece-1.mp4"), AudioFormat("mp4a", 48000, 2))
    assert args == [*HEAD, "-i", "/m/.remux-1.m3u8", "-map", "0:v?", "-map", "0:a?", "-c:v", "copy",
                    "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k", "-f", "mp4", "/m/.download.piece-1.mp4"]


def test_concat_list_quotes_each_path() -> None:
    assert concat_list([Path("/m/seg_000001.ts"), Path("/m/it's.ts")]) == (
        "ffconcat version 1.0\nfile '/m/seg_000001.ts'\nfile '/m/it'\\''s.ts'\n"
    )


# -- the bundled ffmpeg accepts each command: one second of lavfi media, run once per module ---------


def _make(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", *args], check=True, timeout=60)


def _run(args: list[str]) -> None:
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    _make(*x264, str(folder / "talk.mp4"))
    _make(*x264, "-f", "mpegts", str(folder / "seg_000000.ts"))
    _make("-c:v", "mpeg4", "-c:a", "flac", str(folder / "talk.mkv"))
    return folder


@pytest.mark.parametrize(("upload", "expected"), [
    ("talk.mp4", Probe("h264", "aac", None, "mov")),
    ("talk.mkv", Probe("mpeg4", "flac", None, "matroska")),
])
def test_bundled_ffmpeg_imports(media: Path, tmp_path: Path, upload: str, expected: Probe) -> None:
    found = probe(media / upload)
    assert (found.video_codec, found.audio_codec, found.demuxer) == (expected.video_codec, expected.audio_codec,
                                                                     expected.demuxer)
    _run(import_args(FFMPEG, media / upload, RecordingFiles(tmp_path), found, 4.0))
    written = RecordingFiles(tmp_path).import_outputs()[1]
    playlist = parse_media_playlist(written.read_text(encoding="utf-8"))
    assert playlist.playlist.segments and all((tmp_path / s.uri).is_file() for s in playlist.playlist.segments)
    assert count_video_frames(written) == 10
    assert decode_errors(written) == ""


def test_bundled_ffmpeg_makes_a_thumbnail(media: Path, tmp_path: Path) -> None:
    output = tmp_path / ".thumbnail.tmp.jpg"
    _run(thumbnail_args(FFMPEG, media / "seg_000000.ts", output))
    with av.open(str(output)) as image:
        codec = image.streams.video[0].codec_context
        assert (codec.name, codec.width, codec.height) == ("mjpeg", 320, 240)  # 160x120 scaled, aspect kept


def test_bundled_ffmpeg_remuxes_segments_whose_timestamps_restart(media: Path, tmp_path: Path) -> None:
    """The same segment twice, as after a reconnect: the concat demuxer puts the second after the first."""
    listing = tmp_path / ".recording.ffconcat"
    listing.write_text(concat_list([media / "seg_000000.ts"] * 2), encoding="utf-8")
    output = tmp_path / ".recording.tmp.mp4"
    _run(remux_args(FFMPEG, listing, output))
    with av.open(str(output)) as mp4:
        assert sorted(s.type for s in mp4.streams) == ["audio", "video"]
        assert mp4.duration is not None and abs(mp4.duration / 1_000_000 - 2.0) < 0.2
        assert mp4.streams.video[0].frames == 20
    data = output.read_bytes()
    assert data[4:8] == b"ftyp" and data.index(b"moov") < data.index(b"mdat")  # +faststart


# -- fMP4 recordings (LL-HLS): two publish sessions of our own muxer's segments ------------------------


@pytest.fixture(scope="module")
def fmp4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Segment]]:
    """A recording folder of two 3 s publish sessions (10 fps, 1 s GOP), as the LL-HLS packager writes them."""
    folder = tmp_path_factory.mktemp("fmp4")
    flv = folder / "in.flv"
    _make("-t", "3", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", str(flv))
    stream = LlRendition(part_target=0.334, segment_seconds=1.0, window_segments=3)
    segments: list[Segment] = []

    def write(update: LlUpdate) -> None:
        for file in update.files:
            (folder / file.name).write_bytes(file.data)
        segments.extend(update.segments)

    for session in range(2):
        stream.begin_session()
        for kind, stamp, body in read_tags(flv.read_bytes()):
            if kind in (8, 9):
                write(stream.feed("audio" if kind == 8 else "video", stamp, body, 1e6 + 100 * session + stamp / 1000))
        write(stream.end_session())
    return folder, segments


def test_bundled_ffmpeg_remuxes_fmp4_sessions_into_one_mp4(fmp4: tuple[Path, list[Segment]], tmp_path: Path) -> None:
    folder, segments = fmp4
    files = RecordingFiles(folder)
    inputs = files.remux_inputs(segments)
    assert [p.name for p in inputs] == [".remux-0.m3u8", ".remux-1.m3u8"]  # one continuous piece per session
    assert parse_media_playlist(inputs[1].read_text()).playlist.segments[0].map_uri == "init_2.mp4"
    listing = tmp_path / ".recording.ffconcat"
    listing.write_text(concat_list(inputs), encoding="utf-8")
    output = tmp_path / ".recording.tmp.mp4"
    _run(remux_args(FFMPEG, listing, output))
    files.discard_remux_inputs(inputs)
    assert not any(p.exists() for p in inputs)
    strict = subprocess.run([FFMPEG, "-v", "error", "-xerror", "-i", str(output), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=60)
    assert strict.returncode == 0 and strict.stderr == "", strict.stderr
    with av.open(str(output)) as mp4:
        assert sorted(s.type for s in mp4.streams) == ["audio", "video"]
        assert mp4.streams.video[0].frames == 60
        assert mp4.duration is not None and abs(mp4.duration / 1_000_000 - sum(s.duration for s in segments)) < 0.1


def test_bundled_ffmpeg_makes_a_thumbnail_of_an_fmp4_segment(fmp4: tuple[Path, list[Segment]], tmp_path: Path) -> None:
    folder, segments = fmp4
    output = tmp_path / ".thumbnail.tmp.jpg"
    files = RecordingFiles(folder)
    _run(thumbnail_args(FFMPEG, files.path_of(segments[-1]), output, init=files.init_of(segments[-1])))
    with av.open(str(output)) as image:
        assert image.streams.video[0].codec_context.width == 320
