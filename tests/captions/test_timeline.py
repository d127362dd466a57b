"""The media clock (FLV time → HLS timeline) and the first PTS of a real MPEG-TS segment."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from captions.timeline import MediaClock, first_pts
from tests.media import FFMPEG


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def test_publish_maps_through_segments_and_reconnects() -> None:
    clock = MediaClock()
    clock.publish_started(first_timestamp_ms=500, received_at=1000.0)
    assert clock.media_of(500) == 0.0 and clock.media_of(2500) == pytest.approx(2.0)
    assert clock.segment_listed(2.0, _at(1000.0)) == (0.0, 2.0)
    assert clock.segment_listed(2.0, _at(1002.0)) == (2.0, 4.0)
    assert clock.media_of(5000) == pytest.approx(4.5)  # beyond the listed segments: extrapolated
    clock.publish_ended()
    # Reconnect 30 s later: timestamps restart at 0, the timeline continues where it stopped.
    clock.publish_started(first_timestamp_ms=0, received_at=1040.0)
    assert clock.media_of(0) == pytest.approx(4.0)
    assert clock.media_of(1500) == pytest.approx(5.5)
    clock.segment_listed(2.0, _at(1040.0))
    assert clock.media_of(1500) == pytest.approx(5.5)
    assert clock.wall_of_media(5.5) == pytest.approx(1041.5)
    assert clock.wall_of_media(1.0) == pytest.approx(1001.0)


def test_packager_restart_gap_is_followed() -> None:
    clock = MediaClock()
    clock.publish_started(0, 100.0)
    clock.segment_listed(1.0, _at(100.0))
    # ffmpeg restarted; the next segment starts at wall 103 (media lost in between) but at media 1.0.
    clock.segment_listed(1.0, _at(103.0))
    assert clock.media_of(3500) == pytest.approx(1.5)


def test_first_pts_of_an_ffmpeg_segment(tmp_path: Path) -> None:
    segment = tmp_path / "seg.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-f", "lavfi",
                    "-i", "sine=sample_rate=16000", "-t", "1", "-c:v", "libx264", "-c:a", "aac",
                    "-output_ts_offset", "7", "-f", "mpegts", str(segment)], check=True, timeout=60)
    out = subprocess.run([FFMPEG, "-v", "error", "-copyts", "-i", str(segment), "-c", "copy", "-f", "framecrc", "-"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    # framecrc: stream, dts, pts, duration, size, crc (time base 1/90000 for MPEG-TS)
    pts = [int(m.group(1)) for m in re.finditer(r"^\d+,\s*-?\d+,\s*(-?\d+),", out, re.M)]
    expected = min(pts)
    assert expected > 7 * 90000
    assert first_pts(segment.read_bytes()[:65536]) == expected
    assert first_pts(b"") is None and first_pts(b"\x00" * 1000) is None
