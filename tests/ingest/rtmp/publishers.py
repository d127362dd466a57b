"""The RTMP server's counterparts in tests: a publisher that accepts ``testkey`` and sinks that collect what the
server delivers, and ffmpeg publishing for real."""

from __future__ import annotations

from typing import Any

from ingest.publishing import MediaSink, PublishRejected, RefusalReason
from tests.media import publish_once

SILENCE = "anullsrc=r=44100:cl=mono"  # equal-size AAC frames: ffmpeg uses bare type-3 headers
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10"]
AAC = ["-c:a", "aac"]


class FakeSink:
    """Collects what the server delivers; ``fail_on_media`` makes on_media raise."""

    def __init__(self, fail_on_media: bool = False) -> None:
        self.fail_on_media = fail_on_media
        self.metadata: list[dict[str, Any]] = []
        self.video: list[tuple[int, bytes]] = []
        self.audio: list[tuple[int, bytes]] = []
        self.closed: str | None = None

    async def on_metadata(self, metadata: dict[str, Any]) -> None:
        self.metadata.append(metadata)

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        if self.fail_on_media:
            raise RuntimeError("sink exploded")
        (self.video if kind == "video" else self.audio).append((timestamp_ms, payload))

    async def close(self, reason: str) -> None:
        self.closed = reason

    def frames(self) -> list[int]:
        """Timestamps of coded H.264 frames (no sequence headers / end of sequence)."""
        return [ts for ts, payload in self.video if payload[1:2] == b"\x01"]


class FakePublisher:
    """Accepts ``testkey`` (and ``crashkey``, whose sink raises); refuses anything else."""

    def __init__(self) -> None:
        self.sinks: dict[str, FakeSink] = {}
        self.requests: list[tuple[str, str, str]] = []

    async def start_publish(
        self, *, protocol: str, app: str, stream_key: str, remote_address: str, terminate: Any = None
    ) -> MediaSink:
        self.requests.append((protocol, app, remote_address))
        if stream_key not in ("testkey", "crashkey"):
            raise PublishRejected(RefusalReason.BAD_KEY, "unknown stream key")
        sink = FakeSink(fail_on_media=stream_key == "crashkey")
        self.sinks[stream_key] = sink
        return sink


async def ffmpeg_publish(
    url: str, *, seconds: float, video: list[str] = H264, audio: list[str] = AAC, realtime: bool = True
) -> tuple[int, str]:
    return await publish_once(url, seconds=seconds, video=video, audio_source=SILENCE, audio=audio,
                              realtime=realtime, loglevel="error")
