"""Finding the ffmpeg binary: LIVE_FFMPEG, else ffmpeg on PATH, else the imageio-ffmpeg wheel's."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class FfmpegNotFound(Exception):
    """No working ffmpeg; the message says what was tried."""


@dataclass(frozen=True)
class Ffmpeg:
    path: str
    version: str
    source: str


def _version(path: str) -> str:
    out = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=15, check=True)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.split(" Copyright")[0].removeprefix("ffmpeg version ").strip() or "unknown"


def resolve_ffmpeg(configured: str = "") -> Ffmpeg:
    tried: list[str] = []
    candidates: list[tuple[str, str]] = []
    if configured:
        candidates.append((configured, "LIVE_FFMPEG"))
    else:
        on_path = shutil.which("ffmpeg")
        if on_path:
            candidates.append((on_path, "PATH"))
        else:
            tried.append("no ffmpeg on PATH")
        try:
            import imageio_ffmpeg

            candidates.append((imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"))
        except Exception as exc:  # the wheel raises RuntimeError when its binary is missing
            tried.append(f"imageio-ffmpeg: {exc}")
    for path, source in candidates:
        try:
            return Ffmpeg(path=path, version=_version(path), source=source)
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{path} ({source}): {exc}")
    raise FfmpegNotFound(
        "no working ffmpeg found; set LIVE_FFMPEG to an ffmpeg binary. Tried: " + "; ".join(tried or ["nothing"])
    )
