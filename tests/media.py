"""Real media for tests: ffmpeg pushes generated audio/video, ffmpeg checks what came out."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

#: ``readrate`` for publishers whose test asserts what came out (frames, segments, recordings), not
#: when: ffmpeg reads its input at this multiple of real time (``-readrate``, ffmpeg >= 5.0).
FAST = 4.0


def source_args(fps: int = 10, size: str = "160x120", gop_seconds: float = 1.0, seconds: float | None = None,
                frames: int | None = None, video_codec: str = "libx264", readrate: float = 1.0,
                sample_rate: int = 44100) -> list[str]:
    """A lavfi test pattern with a tone, encoded like a capture box: H.264 with a fixed GOP, AAC.

    ``readrate``: 1 is real time (``-re``), as an encoder sends; ``FAST`` where time is not the subject."""
    pace = ["-re"] if readrate == 1 else ["-readrate", str(readrate)]
    args = [
        *pace, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}",
        "-map", "0:v", "-map", "1:a",
        "-c:v", video_codec,
    ]
    if video_codec == "libx264":
        gop = str(int(fps * gop_seconds))
        args += ["-preset", "ultrafast", "-tune", "zerolatency", "-g", gop, "-keyint_min", gop,
                 "-sc_threshold", "0", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "64k"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    if seconds is not None:
        args += ["-t", str(seconds)]
    return args


async def push_rtmp(url: str, **kwargs: object) -> asyncio.subprocess.Process:
    """Start ffmpeg publishing to ``url`` (at real-time speed unless ``readrate=``); the caller waits or kills it."""
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", *source_args(**kwargs),  # type: ignore[arg-type]
        "-f", "flv", url, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def stop(pusher: asyncio.subprocess.Process, timeout: float = 10) -> None:
    """Kill a pusher unless it has already exited (a WHIP session ended by the test, say), then reap it."""
    if pusher.returncode is None:
        try:
            pusher.kill()
        except ProcessLookupError:
            pass  # it exited between the check and the kill
    await asyncio.wait_for(pusher.wait(), timeout)


def count_video_frames(path: Path | str) -> int:
    """Video packets ffmpeg can read from a playlist or file (stream copy, no decode)."""
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-allowed_extensions", "ALL", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))


def decode_errors(path: Path | str, across_discontinuities: bool = False) -> str:
    """Decode everything; returns ffmpeg's error output (empty when the media is clean).

    ``across_discontinuities``: the playlist joins broadcast sessions with EXT-X-DISCONTINUITY,
    after which timestamps may legally overlap or restart (players re-anchor there); ffmpeg's HLS
    reader does not, and warns about non-monotonic DTS at the joint. Those warnings are ignored.
    """
    # ``-enc_time_base demux``: decoded frames keep their exact times. By default ffmpeg rounds them to
    # 1/frame rate for the null output, so two frames closer than that (a browser's camera over WebRTC
    # sends some 2 ms apart, with strictly increasing times) collide there and ffmpeg reports
    # "non monotonically increasing dts ... 23 >= 23": an error of the checker, not of the media.
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-enc_time_base", "demux", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return out.stderr or f"exit {out.returncode}"
    lines = out.stderr.splitlines()
    if across_discontinuities:
        lines = [line for line in lines if "non monotonically increasing dts" not in line]
    return "\n".join(lines)


async def publish_once(url: str, *, seconds: float, video: list[str], audio_source: str = "sine=sample_rate=44100",
                       audio: list[str] = ["-c:a", "aac"], realtime: bool = True,
                       loglevel: str | None = None) -> tuple[int, str]:
    """One ffmpeg publish of a test pattern to ``url``, run to its end: its exit code and stderr (what an
    operator would read). ``loglevel`` None keeps ffmpeg's default, as a user leaves it."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", *(["-loglevel", loglevel] if loglevel else []), "-nostdin",
        *(["-re"] if realtime else []),
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-f", "lavfi", "-i", audio_source,
        *video, *audio, "-t", str(seconds), "-f", "flv", url,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), seconds + 20)
    finally:
        await stop(proc)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def push_with_defaults(url: str, seconds: float, fps: int = 25, readrate: float = 4.0,
                             keyframe_frames: int | None = None) -> asyncio.subprocess.Process:
    """ffmpeg publishing H.264 + AAC with libx264's defaults (no ``-g``, default preset) unless told.

    Given ``keyframe_frames``, the GOP is fixed anyway: the fastest preset keeps ``-readrate`` honest
    on a busy machine.
    """
    pace = ["-readrate", f"{readrate:g}"]
    gop = ["-g", str(keyframe_frames), "-preset", "ultrafast"] if keyframe_frames is not None else []
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error",
        *pace, "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={fps}",
        *pace, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", f"{seconds:g}", "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", *gop, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        "-f", "flv", url,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
