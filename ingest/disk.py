"""The media disk's free space against its floor: what live DVR, recordings and readiness consult.

One ``MediaDiskGuard`` per process. It re-reads free space (``statvfs``, in a thread: never on the
event loop) at most once per ``interval`` while events are live, and remembers whether the disk is
below the floor. Below it the live stream goes on, but nothing grows the disk: the DVR drops to the
live window (old segments deleted) and recordings pause; both resume when space returns.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from live_server.metrics import Metrics

log = logging.getLogger(__name__)


class MediaDiskGuard:
    """Whether the media disk can still take history (DVR, recordings), re-checked cheaply."""

    def __init__(self, media_dir: Path, floor_bytes: int, metrics: Metrics, interval: float = 1.0) -> None:
        self.media_dir = media_dir
        self.floor_bytes = floor_bytes
        self.metrics = metrics
        self.interval = interval
        self.low = False
        self.free_bytes: int | None = None
        self._checked_at = float("-inf")  # monotonic

    async def check(self, force: bool = False) -> bool:
        """Re-read free space unless it was read less than ``interval`` ago; returns ``low``."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.interval:
            return self.low
        self._checked_at = now
        try:
            free = await asyncio.to_thread(_free_bytes, self.media_dir)
        except OSError as exc:  # the folder is unreadable: keep the last verdict, readiness reports the error
            log.warning("cannot read the free space of %s: %s", self.media_dir, exc)
            return self.low
        self.free_bytes = free
        low = free < self.floor_bytes
        if low != self.low:
            if low:
                log.error("media disk low: %d MiB free, below the %d MiB floor; live streams go on, "
                          "DVR keeps only the live window and recordings pause until space is freed",
                          free // 2**20, self.floor_bytes // 2**20)
            else:
                log.warning("media disk has %d MiB free again: DVR and recordings resume", free // 2**20)
        self.low = low
        self.metrics.recording_disk_free.set(free)
        self.metrics.recording_disk_low.set(1 if low else 0)
        return low

    def message(self) -> str | None:
        """What an event's owner reads in the stream health while the disk is low (None otherwise)."""
        if not self.low or self.free_bytes is None:
            return None
        return (f"The server's media disk is almost full ({self.free_bytes // 2**20} MiB free, below "
                f"{self.floor_bytes // 2**20} MiB). The stream stays live, but viewers can no longer rewind "
                "beyond the last seconds and the recording is paused until space is freed.")


def _free_bytes(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free
