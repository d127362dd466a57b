"""ffmpeg for the catalog: a thumbnail from a segment, an MP4 remux of the playable view.

Argument lists are pure functions (golden-testable); ``run_ffmpeg`` is the thin asyncio shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Sequence


class FfmpegFailed(Exception):
    """ffmpeg exited with an error or took too long; the message carries its last words."""


def thumbnail_args(ffmpeg: str, segment: Path, output: Path, width: int = 320) -> list[str]:
    """First decodable frame of a segment, scaled, as JPEG (the segment starts on a keyframe)."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(segment),
            "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4", "-f", "image2", str(output)]


def concat_list(segments: Sequence[Path]) -> str:
    """An ffconcat list: the concat demuxer shifts each file's timestamps to follow the previous one,
    so the publisher's timestamp resets at reconnects do not break the MP4."""
    lines = ["ffconcat version 1.0"]
    for path in segments:
        lines.append("file '" + str(path).replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def remux_args(ffmpeg: str, concat_file: Path, output: Path) -> list[str]:
    """Stream copy into MP4 (no re-encode), moov first so browsers can play while downloading."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
            "-i", str(concat_file), "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-movflags", "+faststart",
            "-f", "mp4", str(output)]


async def run_ffmpeg(args: Sequence[str], timeout: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise FfmpegFailed(f"ffmpeg took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise FfmpegFailed(f"ffmpeg exited with {proc.returncode}: {' | '.join(tail)}")


async def make_thumbnail(ffmpeg: str, segment: Path, output: Path) -> None:
    tmp = output.with_name(f".{output.stem}.tmp.jpg")
    await run_ffmpeg(thumbnail_args(ffmpeg, segment, tmp), timeout=30)
    os.replace(tmp, output)


async def remux_mp4(ffmpeg: str, segments: Sequence[Path], output: Path, timeout: float = 600) -> None:
    """Write ``output`` atomically (a partial file is never served)."""
    listing = output.with_name(f".{output.stem}.ffconcat")
    tmp = output.with_name(f".{output.stem}.tmp.mp4")
    listing.write_text(concat_list(segments), encoding="utf-8")
    try:
        await run_ffmpeg(remux_args(ffmpeg, listing, tmp), timeout=timeout)
        os.replace(tmp, output)
    finally:
        listing.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
