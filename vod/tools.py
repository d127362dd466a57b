"""ffmpeg for the catalog: a thumbnail from a segment, an MP4 remux of the playable view.

Argument lists are pure functions (golden-testable); ``run_ffmpeg`` is the thin asyncio shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Callable, Sequence

from formats.cmaf import AudioFormat


class FfmpegFailed(Exception):
    """ffmpeg exited with an error or took too long; the message carries its last words."""


def thumbnail_args(ffmpeg: str, segment: Path, output: Path, width: int = 320, init: Path | None = None) -> list[str]:
    """First decodable frame of a segment, scaled, as JPEG (the segment starts on a keyframe).

    ``init``: the init section of an fMP4 segment, read first (the concat protocol joins the bytes:
    init section + fragments is a fragmented MP4). ``-y``: a temporary file left by an interrupted
    run is overwritten, not asked about.
    """
    source = f"concat:{init}|{segment}" if init is not None else str(segment)
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", source,
            # -2: the height that keeps the aspect ratio, rounded to even; -q:v 4: good JPEG quality (2-31 scale).
            "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4",
            # The JPEG writer said, not guessed from the (temporary) file name.
            "-f", "image2", str(output)]


def concat_list(segments: Sequence[Path]) -> str:
    """An ffconcat list: the concat demuxer shifts each file's timestamps to follow the previous one,
    so the publisher's timestamp resets at reconnects do not break the MP4. The files are MPEG-TS
    segments or, for fMP4 recordings, playlists of one publish session each (read by ffmpeg's HLS
    demuxer with their init section)."""
    lines = ["ffconcat version 1.0"]
    for path in segments:
        lines.append("file '" + str(path).replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def remux_args(ffmpeg: str, concat_file: Path, output: Path) -> list[str]:
    """Stream copy into MP4 (no re-encode), moov first so browsers can play while downloading."""
    # -safe 0: the list (written by concat_list from our own segment paths) names absolute paths,
    # which the concat demuxer refuses by default.
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
            "-i", str(concat_file),
            # "?": an audio-only or video-only recording remuxes too.
            "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-movflags", "+faststart",
            # The output is a temporary name (renamed once complete): say the format, not the extension.
            "-f", "mp4", str(output)]


def audio_piece_args(ffmpeg: str, piece: Path, output: Path, audio: AudioFormat) -> list[str]:
    """One piece of a recording into MP4 with its audio re-encoded to ``audio`` (video copied).

    ffmpeg's concat demuxer describes every stream with its first file's parameters, so a later
    piece's AAC at another sample rate would be copied (and even decoded) as if it had the first's:
    48 kHz frames declared 44.1 kHz play 9 % slower, and the MP4 runs longer than the media. Each piece
    is read alone here (its own init section, decoded right) and resampled to one format.
    """
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(piece),
            "-map", "0:v?", "-map", "0:a?", "-c:v", "copy",
            "-c:a", "aac", "-ar", str(audio.sample_rate), "-ac", str(audio.channels), "-b:a", AUDIO_REENCODE_BITRATE,
            "-f", "mp4", str(output)]


#: AAC bitrate of audio re-encoded for a download (only when its pieces' formats differ): the top of
#: what we recommend encoders send (README, *Encoder settings*).
AUDIO_REENCODE_BITRATE = "128k"


async def run_ffmpeg(args: Sequence[str], timeout: float, started: Callable[[int], None] | None = None) -> None:
    """Run ffmpeg to its end; ``started`` is told its pid (to lower its priority)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    if started is not None:
        started(proc.pid)
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


async def make_thumbnail(ffmpeg: str, segment: Path, output: Path, init: Path | None = None) -> None:
    tmp = output.with_name(f".{output.stem}.tmp.jpg")
    await run_ffmpeg(thumbnail_args(ffmpeg, segment, tmp, init=init), timeout=30)
    os.replace(tmp, output)


async def remux_mp4(ffmpeg: str, segments: Sequence[Path], output: Path, timeout: float = 600,
                    audio: AudioFormat | None = None) -> None:
    """Join ``segments`` (``RecordingFiles.remux_inputs``) into ``output``, atomically (a partial file is never served).

    ``audio`` (``RecordingFiles.remux_audio``): the pieces' audio formats differ, so each piece is first
    made an MP4 with its audio re-encoded to this one (:func:`audio_piece_args`), and those are joined."""
    listing = output.with_name(f".{output.stem}.ffconcat")
    tmp = output.with_name(f".{output.stem}.tmp.mp4")
    pieces: list[Path] = []
    try:
        if audio is not None:
            for number, piece in enumerate(segments):
                pieces.append(output.with_name(f".{output.stem}.piece-{number}.mp4"))
                await run_ffmpeg(audio_piece_args(ffmpeg, piece, pieces[-1], audio), timeout=timeout)
        listing.write_text(concat_list(pieces or segments), encoding="utf-8")
        await run_ffmpeg(remux_args(ffmpeg, listing, tmp), timeout=timeout)
        os.replace(tmp, output)
    finally:
        listing.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        for path in pieces:
            path.unlink(missing_ok=True)
