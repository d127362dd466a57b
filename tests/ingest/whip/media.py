"""What a WHIP publish left in HLS, read with ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from formats.m3u8 import parse_media_playlist
from tests.media import FFMPEG


def stream_codecs(path: Path) -> list[str]:
    """The streams ffmpeg finds in a media file, as "video:h264", "audio:aac" (what ffprobe would list)."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30)
    return [f"{kind.lower()}:{codec}" for kind, codec in re.findall(r"Stream #\S+.*?: (Video|Audio): (\w+)", out.stderr)]


def listed_segment(playlist: Path, index: int, into: Path) -> Path:
    """A file ffmpeg can read on its own holding the playlist's segment ``index`` (as in a list: -1 is the last).

    An MPEG-TS segment is that; an fMP4 one needs its init section (``EXT-X-MAP``) in front, so the
    two are joined into a file under ``into``. Names come from the playlist, whatever the format.
    """
    segment = parse_media_playlist(playlist.read_text()).playlist.segments[index]
    path = playlist.parent / segment.uri
    if segment.map_uri is None:
        return path
    joined = into / f"whole_{path.stem}.mp4"
    joined.write_bytes((playlist.parent / segment.map_uri).read_bytes() + path.read_bytes())
    return joined
