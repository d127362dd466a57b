"""Media and fakes for the packaging tests: lavfi sources split into FLV tags, a recording listener."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from formats.flv import is_keyframe, is_sequence_header
from formats.m3u8 import Segment, parse_media_playlist


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class Tag:
    kind: str  # "audio" | "video" | "script"
    timestamp_ms: int
    payload: bytes

    @property
    def is_video_frame(self) -> bool:
        """A picture (not a sequence header, not an AVC end-of-sequence marker)."""
        return (
            self.kind == "video"
            and not is_sequence_header("video", self.payload)
            and self.payload[1:2] != b"\x02"
        )

    @property
    def is_keyframe(self) -> bool:
        return self.is_video_frame and is_keyframe(self.payload)


_KINDS = {8: "audio", 9: "video", 18: "script"}


def split_flv(data: bytes) -> list[Tag]:
    """Tiny FLV reader: header, then tags (type, size, timestamp, payload, PreviousTagSize)."""
    if data[:3] != b"FLV":
        raise ValueError("not FLV")
    offset = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while offset + 11 <= len(data):
        tag_type = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(data[offset + 4 : offset + 7], "big") | (data[offset + 7] << 24)
        payload = data[offset + 11 : offset + 11 + size]
        tags.append(Tag(_KINDS.get(tag_type, "other"), ts, bytes(payload)))
        offset += 11 + size + 4
    return tags


@lru_cache(maxsize=8)
def make_source(
    seconds: float = 5.0,
    size: str = "160x120",
    fps: int = 20,
    gop_seconds: float = 1.0,
    video_kbps: int = 150,
    audio: bool = True,
) -> tuple[Tag, ...]:
    """H.264 (with B-frames) + AAC in FLV from lavfi, GOP = gop_seconds, as RTMP would carry it."""
    args = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    gop = int(fps * gop_seconds)
    args += [
        "-t", str(seconds), "-frames:v", str(int(fps * seconds)),
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop),
        "-sc_threshold", "0", "-b:v", f"{video_kbps}k", "-pix_fmt", "yuv420p",
    ]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += ["-f", "flv", "pipe:1"]
    data = subprocess.run(args, check=True, capture_output=True, timeout=60).stdout
    return tuple(t for t in split_flv(data) if t.kind in ("audio", "video"))


METADATA = {
    "width": 160.0,
    "height": 120.0,
    "framerate": 20.0,
    "videocodecid": 7.0,
    "audiocodecid": 10.0,
    "videodatarate": 150.0,
    "audiodatarate": 64.0,
}


def video_frames(tags: tuple[Tag, ...] | list[Tag]) -> int:
    return sum(1 for t in tags if t.is_video_frame)


@dataclass
class RecordingListener:
    """A PackagerListener that remembers what it was told and when."""

    segments: list[tuple[str, Segment, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    check_dir: Path | None = None
    playlist_missing: list[str] = field(default_factory=list)

    def on_segment(self, rendition: str, segment: Segment) -> None:
        self.segments.append((rendition, segment, time.monotonic()))
        if self.check_dir is not None:
            # The contract: the live playlist already lists the segment.
            text = (self.check_dir / rendition / "live.m3u8").read_text()
            if segment.uri not in text:
                self.playlist_missing.append(segment.uri)

    def on_packager_failed(self, reason: str) -> None:
        self.failures.append(reason)

    def of(self, rendition: str) -> list[Segment]:
        return [s for r, s, _ in self.segments if r == rendition]

    async def wait_for(self, count: int, rendition: str | None = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.segments if rendition is None else self.of(rendition))
            if n >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {len(self.segments)} segments after {timeout} s")


async def feed_realtime(
    packager: object,
    tags: tuple[Tag, ...] | list[Tag],
    speed: float = 1.0,
    keyframe_times: dict[int, float] | None = None,
    on_progress: object = None,
) -> None:
    """Push tags honouring their timestamps (like a live publisher)."""
    start = time.monotonic()
    base = tags[0].timestamp_ms if tags else 0
    for tag in tags:
        due = start + (tag.timestamp_ms - base) / 1000 / speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packager.on_media(tag.kind, tag.timestamp_ms, tag.payload)  # type: ignore[attr-defined]
        if keyframe_times is not None and tag.is_keyframe:
            keyframe_times[tag.timestamp_ms] = time.monotonic()
        if on_progress is not None:
            on_progress(tag)  # type: ignore[operator]


def decode_frames(path: Path) -> int:
    """Decode a segment; fail on any decoder error; return its video frame count."""
    result = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v?", "-f", "framecrc", "-"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr.strip(), f"{path}: {result.stderr}"
    return sum(1 for line in result.stdout.splitlines() if line and not line.startswith("#"))


def decode_ok(path: Path) -> None:
    result = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr.strip(), f"{path}: {result.stderr}"


def read_playlist(path: Path) -> list[Segment]:
    return parse_media_playlist(path.read_text()).playlist.segments


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    match = re.search(r"^State:\s+(\S)", status, re.M)
    return bool(match and match.group(1) != "Z")
