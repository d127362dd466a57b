"""Golden argument list of the caption decoder's ffmpeg, and the bundled ffmpeg running it."""

from __future__ import annotations

import array
import subprocess
import sys
from pathlib import Path

from captions.decoder import decoder_args, recording_decoder_args
from captions.recognizer import SAMPLE_RATE
from formats.flv import flv_header, flv_tag
from tests.ingest.packaging.support import ffmpeg_exe, make_source

AUDIO_TAG = 8


def test_decoder_golden() -> None:
    assert decoder_args("/opt/ffmpeg") == [
        "/opt/ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
        "-f", "flv", "-i", "pipe:0",
        "-vn", "-af", "aresample=async=1000", "-ac", "1", "-ar", "16000",
        "-f", "s16le", "-flush_packets", "1", "pipe:1",
    ]


def test_bundled_ffmpeg_turns_the_flv_audio_tags_into_one_second_of_pcm() -> None:
    """What AudioDecoder writes (audio-only FLV header, then the publisher's audio tags) → 16 kHz mono."""
    tags = [tag for tag in make_source(seconds=1.0, fps=10) if tag.kind == "audio"]
    flv = flv_header(True, False) + b"".join(flv_tag(AUDIO_TAG, t.timestamp_ms, t.payload) for t in tags)
    out = subprocess.run(decoder_args(ffmpeg_exe()), input=flv, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr == b""  # -loglevel error: nothing to say about clean input
    assert abs(len(out.stdout) / 2 / SAMPLE_RATE - 1.0) < 0.1
    samples = array.array("h", out.stdout)
    if sys.byteorder == "big":
        samples.byteswap()  # s16le
    assert max(abs(s) for s in samples) > 3000  # the 440 Hz tone, not padding


def test_recording_decoder_golden() -> None:
    assert recording_decoder_args("/opt/ffmpeg", "/media/recordings/3/1/index.m3u8") == [
        "/opt/ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-protocol_whitelist", "file", "-f", "hls", "-i", "/media/recordings/3/1/index.m3u8",
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", "16000",
        "-f", "s16le", "pipe:1",
    ]


def test_bundled_ffmpeg_decodes_a_recording_playlist_to_pcm_of_its_length(tmp_path: Path) -> None:
    """Two 1 s HLS segments with a tone → 2 s of 16 kHz mono; a playlist without sound fails, saying why."""
    ffmpeg = ffmpeg_exe()
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-f", "lavfi",
                    "-i", "sine=frequency=440", "-t", "2", "-c:v", "libx264", "-g", "10", "-c:a", "aac", "-f", "hls",
                    "-hls_time", "1", "-hls_playlist_type", "vod", str(tmp_path / "index.m3u8")], check=True, timeout=60)
    out = subprocess.run(recording_decoder_args(ffmpeg, str(tmp_path / "index.m3u8")), capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    assert abs(len(out.stdout) / 2 / SAMPLE_RATE - 2.0) < 0.1
    silent = tmp_path / "silent"
    silent.mkdir()
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1",
                    "-c:v", "libx264", "-f", "hls", "-hls_playlist_type", "vod", str(silent / "index.m3u8")],
                   check=True, timeout=60)
    out = subprocess.run(recording_decoder_args(ffmpeg, str(silent / "index.m3u8")), capture_output=True, timeout=30)
    assert out.returncode != 0 and out.stdout == b"" and b"matches no streams" in out.stderr
