"""Where media lives under the media folder; the one place that knows the layout.

``live/<event id>/<run>/`` holds one live run of an event (a run starts when an event that is not
live gets a publisher, and spans reconnects within the grace period). ``<run>`` is the run's start
time, so an event that goes live again later never overwrites an earlier run that a recording uses.
``recordings/<event id>/<run>/`` holds the recording of a run (hard links to its segments).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

#: The master playlist of a live run, at the top of its folder: the packager writes it, the recorder
#: reads it (codecs and resolution of a recording's master).
MASTER_PLAYLIST = "master.m3u8"


def run_name(started_at: datetime) -> str:
    return started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def live_run_folder(media_dir: Path, event_id: int, started_at: datetime) -> Path:
    return media_dir / "live" / str(event_id) / run_name(started_at)


def event_live_folder(media_dir: Path, event_id: int) -> Path:
    return media_dir / "live" / str(event_id)


def recording_folder(media_dir: Path, event_id: int, started_at: datetime) -> Path:
    """``recordings/<event id>/<run>/``: the segments and playlists of one recording (one live run)."""
    return media_dir / "recordings" / str(event_id) / run_name(started_at)


def imported_recording(recording_id: int) -> str:
    """``recordings/imported/<recording id>``: the media path of an imported video (same layout as a run's)."""
    return f"recordings/imported/{recording_id}"


def live_run_of_recording(media_dir: Path, media_path: str) -> Path:
    """The live run folder a recording (``recordings/<event id>/<run>``) was made from."""
    parts = Path(media_path).parts
    return media_dir / "live" / Path(*parts[1:]) if parts and parts[0] == "recordings" else media_dir / "live" / "-"


def live_runs(media_dir: Path) -> list[tuple[int, datetime, Path]]:
    """Every live run folder on disk: (event id, run start, folder); names that are not runs are skipped."""
    runs = []
    root = media_dir / "live"
    for event_dir in root.iterdir() if root.is_dir() else ():
        if not event_dir.name.isdigit() or not event_dir.is_dir():
            continue
        for run in event_dir.iterdir():
            try:
                started = datetime.strptime(run.name, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
            except ValueError:
                continue
            runs.append((int(event_dir.name), started, run))
    return runs


def delete_live_run(folder: Path) -> None:
    """Remove a live run folder (retention), and its event folder when that becomes empty (blocking)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass
