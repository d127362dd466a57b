"""What a WHIP publish left in HLS, read with ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.media import FFMPEG


def stream_codecs(path: Path) -> list[str]:
    """The streams ffmpeg finds in a media file, as "video:h264", "audio:aac" (what ffprobe would list)."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30)
    return [f"{kind.lower()}:{codec}" for kind, codec in re.findall(r"Stream #\S+.*?: (Video|Audio): (\w+)", out.stderr)]
