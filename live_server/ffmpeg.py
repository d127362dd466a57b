"""Which ffmpeg the server runs: the operator's choice, never whatever happens to be on PATH.

The setting ``ffmpeg`` (``LIVE_FFMPEG``) decides, with no fallback from one rule to another:

* empty (the default): the binary bundled in the imageio-ffmpeg wheel, which moves only when the
  package is upgraded (installing Debian's ffmpeg once silently replaced it as the packager);
* a path (it contains a ``/``): that file;
* a bare name such as ``ffmpeg``: looked up on PATH, because the operator asked for that.

The version and origin are logged at start and shown by ``live-server config``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class FfmpegNotFound(Exception):
    """No working ffmpeg by the configured rule; the message says what was tried and what to set."""


@dataclass(frozen=True)
class Ffmpeg:
    path: str
    version: str
    #: where it comes from, for people: "the bundled imageio-ffmpeg 0.8.1 wheel", "PATH (ffmpeg = 'ffmpeg')"
    origin: str

    def describe(self) -> str:
        return f"ffmpeg {self.version} from {self.origin} ({self.path})"


def _version(path: str) -> str:
    out = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=15, check=True)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.split(" Copyright")[0].removeprefix("ffmpeg version ").strip() or "unknown"


def bundled_ffmpeg() -> tuple[str, str]:
    """The imageio-ffmpeg wheel's own binary and its origin label.

    Not ``imageio_ffmpeg.get_ffmpeg_exe()`` alone: it honours ``IMAGEIO_FFMPEG_EXE`` and falls back
    to conda's and PATH's ffmpeg, the silent switch this module exists to prevent. Its answer is
    taken only when it lies inside the package.
    """
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise FfmpegNotFound(f"the imageio-ffmpeg package is not installed ({exc}); {_HOW_TO_CHOOSE}") from None
    package = Path(imageio_ffmpeg.__file__).resolve().parent
    origin = f"the bundled imageio-ffmpeg {imageio_ffmpeg.__version__} wheel"
    try:
        exe: Path | None = Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve()
    except RuntimeError:
        exe = None
    if exe is not None and exe.is_relative_to(package):
        return str(exe), origin
    # IMAGEIO_FFMPEG_EXE pointed elsewhere: the wheel's binaries/ folder still has its own.
    shipped = sorted(p for p in (package / "binaries").glob("ffmpeg-*") if p.is_file() and os.access(p, os.X_OK))
    if shipped:
        return str(shipped[-1]), origin
    raise FfmpegNotFound(f"{origin} carries no ffmpeg for this platform; {_HOW_TO_CHOOSE}")


_HOW_TO_CHOOSE = (
    "set ffmpeg (LIVE_FFMPEG) to an ffmpeg binary's path, or to \"ffmpeg\" to use the one on PATH"
)


def resolve_ffmpeg(configured: str = "") -> Ffmpeg:
    """Apply the rule above; raises FfmpegNotFound when the chosen binary is missing or does not run."""
    if not configured:
        path, origin = bundled_ffmpeg()
    elif "/" in configured or os.sep in configured:
        path, origin = configured, "the setting ffmpeg (LIVE_FFMPEG)"
    else:
        found = shutil.which(configured)
        if found is None:
            raise FfmpegNotFound(
                f"ffmpeg = {configured!r} asks for {configured!r} on PATH, and there is none; {_HOW_TO_CHOOSE}, "
                "or leave it empty for the bundled one"
            )
        path, origin = found, f"PATH (ffmpeg = {configured!r})"
    try:
        return Ffmpeg(path=path, version=_version(path), origin=origin)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FfmpegNotFound(f"{path} from {origin} does not run: {exc}; {_HOW_TO_CHOOSE}") from None
