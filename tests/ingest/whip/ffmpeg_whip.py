"""WHIP test helpers: ffmpeg's ``whip`` muxer as a real publisher (Chromium with fake devices: tests/browser.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media import FFMPEG

#: Loopback-only ICE (aioice leaves 127.0.0.1 out unless told) and short timeouts for tests.
WHIP_SETTINGS: dict[str, Any] = {"whip_host_addresses": "127.0.0.1", "whip_ice_timeout_seconds": 3.0}


def whip_source_args(seconds: float | None = None, frames: int | None = None, fps: int = 15,
                     size: str = "320x240") -> list[str]:
    """testsrc2 + sine as WebRTC senders encode them: H.264 constrained baseline (1 s GOP) and Opus."""
    args = [
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-bf", "0",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "64k",
    ]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    if seconds is not None:
        args += ["-t", str(seconds)]
    return args


async def push_whip(url: str, token: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """ffmpeg publishing over WHIP at real-time speed; the caller waits or kills it."""
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "warning", *whip_source_args(**kwargs),
        "-f", "whip", "-authorization", token, url,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
