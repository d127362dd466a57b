"""What the recording tests share: an event's recordings as the API lists them, a recording's folder, and the video
packets of an MP4 (a download or an export)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.ingest.live import Live
from tests.media import FFMPEG


def mp4_video_frames(path: Path) -> int:
    """Video packets in an MP4 (stream copy, no decode); ``count_video_frames`` is for playlists."""
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stdout.splitlines() if line and not line.startswith("#"))


async def recordings_of(live: Live, event: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await live.client.get(f"/api/v1/recordings?event={event['id']}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["recordings"]


def folder_of(live: Live, recording: dict[str, Any]) -> Path:
    return live.settings.media_dir / recording["media_path"]
