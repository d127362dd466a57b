"""Continuity counters joined across ffmpeg processes: crafted packets, then real ffmpeg output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ingest.packaging.mpegts import TS_PACKET, counter_offsets, last_counters, shift_counters

from .support import ffmpeg_exe


def packet(pid: int, cc: int, payload: bool = True) -> bytes:
    afc = 0x10 if payload else 0x20
    return bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, afc | cc]) + bytes(TS_PACKET - 4)


def test_offsets_continue_each_pid_and_wrap() -> None:
    old = packet(0x100, 14) + packet(0x101, 3) + packet(0x100, 15) + packet(0x1FFF, 9)
    assert last_counters(old) == {0x100: 15, 0x101: 3}
    new = bytearray(packet(0x100, 0) + packet(0x101, 0, payload=False) + packet(0x102, 0) + packet(0x100, 1))
    shifts = counter_offsets(last_counters(old), new)
    # 0x100: 15 + 1 wraps to 0, already right; 0x101 has no payload: repeats 3; 0x102 is new.
    assert shifts == {0x101: 3}
    shift_counters(new, shifts)
    assert [b & 0x0F for b in new[3::TS_PACKET]] == [0, 3, 0, 1]
    again = bytearray(packet(0x100, 5) + packet(0x100, 6))
    shift_counters(again, counter_offsets({0x100: 12}, again))
    assert [b & 0x0F for b in again[3::TS_PACKET]] == [13, 14]
    assert again[:3] == packet(0x100, 0)[:3] and again[4:TS_PACKET] == bytes(TS_PACKET - 4)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x47" * 100, "not whole MPEG-TS packets: 100 bytes"),
    (packet(0x100, 0) + b"\x00" * TS_PACKET, f"lost MPEG-TS sync at byte {TS_PACKET}"),
])
def test_broken_input_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        last_counters(data)


def _segments(folder: Path, prefix: str) -> list[Path]:
    """Two ffmpeg processes' worth of segments, as the packager's ffmpeg writes them."""
    source = folder / "src.flv"
    if not source.exists():
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                        "-f", "lavfi", "-i", "sine", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                        "-g", "10", "-c:a", "aac", "-f", "flv", str(source)], check=True, timeout=60)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "flv", "-i", str(source), "-c", "copy", "-f", "segment",
                    "-segment_format", "mpegts", "-segment_time", "1", "-individual_header_trailer", "0",
                    str(folder / f"{prefix}_%03d.ts")], check=True, timeout=60)
    return sorted(folder.glob(f"{prefix}_*.ts"))


def _decode(playlist: Path) -> tuple[int, str]:
    out = subprocess.run([ffmpeg_exe(), "-v", "warning", "-xerror", "-fflags", "+discardcorrupt", "-i", str(playlist),
                          "-map", "0:v", "-c", "copy", "-f", "framemd5", "-"], capture_output=True, text=True, timeout=60)
    frames = sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))
    return frames, out.stderr if out.returncode else "\n".join(
        line for line in out.stderr.splitlines() if "corrupt" in line.lower())


def test_joined_processes_decode_as_one_stream(tmp_path: Path) -> None:
    first, second = _segments(tmp_path, "a"), _segments(tmp_path, "b")
    playlist = tmp_path / "dvr.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + "".join(f"#EXTINF:1.0,\n{p.name}\n" for p in first)
                        + "#EXT-X-DISCONTINUITY\n" + "".join(f"#EXTINF:1.0,\n{p.name}\n" for p in second)
                        + "#EXT-X-ENDLIST\n")
    frames, errors = _decode(playlist)
    assert "corrupt" in errors.lower() and frames == 79  # as written: one frame lost at the joint
    shifts = counter_offsets(last_counters(first[-1].read_bytes()), second[0].read_bytes())
    assert shifts  # both processes start their counters at 0: the second must move
    for path in second:
        data = bytearray(path.read_bytes())
        shift_counters(data, shifts)
        path.write_bytes(data)
    assert _decode(playlist) == (80, "")
