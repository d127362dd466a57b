"""Where media lives under the media folder; the one place that knows the layout.

``live/<event id>/<run>/`` holds one live run of an event (a run starts when an event that is not
live gets a publisher, and spans reconnects within the grace period). ``<run>`` is the run's start
time, so an event that goes live again later never overwrites an earlier run that a recording uses.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path


def run_name(started_at: datetime) -> str:
    return started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def live_run_folder(media_dir: Path, event_id: int, started_at: datetime) -> Path:
    return media_dir / "live" / str(event_id) / run_name(started_at)


def event_live_folder(media_dir: Path, event_id: int) -> Path:
    return media_dir / "live" / str(event_id)
