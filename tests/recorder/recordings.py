"""What the recording-folder tests share: a finished fMP4 (LL-HLS) recording written through ``RecordingFiles`` as
the recorder writes one, from given init sections and segment bytes, and object storage as a dict (``DictCopy``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from formats.m3u8 import Segment
from recorder.storage import RecordingFiles

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def record_fmp4(files: RecordingFiles, sessions: Sequence[tuple[bytes, Sequence[tuple[bytes, float]]]]) -> None:
    """Link and journal each publish session's init section and (bytes, duration) segments into ``files``
    (a discontinuity at each new session, wall-clock dates from :data:`T0`), then finish it."""
    assert files.live_run is not None
    wall, number = T0, 0
    for session, (init, segments) in enumerate(sessions, start=1):
        init_path = files.live_run / f"init_{session}.mp4"
        init_path.write_bytes(init)
        files.link(init_path)
        for i, (data, duration) in enumerate(segments):
            source = files.live_run / f"seg_{number:06d}.m4s"
            source.write_bytes(data)
            files.link(source)
            files.append(Segment(source.name, duration, number, discontinuity=session > 1 and i == 0,
                                 program_date_time=wall, map_uri=init_path.name), 2)
            wall += timedelta(seconds=duration)
            number += 1
    files.finalize_recovered(files.journal_segments())


class DictCopy:
    """Object storage as a dict of name -> bytes; ``failing`` makes every write raise."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.batches: list[list[str]] = []
        self.failing = False

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def write(self, name: str, data: bytes) -> None:
        if self.failing:
            raise OSError("the store is away")
        self.files[name] = data

    def remove(self, names: Sequence[str]) -> None:
        for name in names:
            self.files.pop(name, None)

    def exists(self, name: str) -> bool:
        return name in self.files

    def fetch(self, name: str, target: Path) -> None:
        target.write_bytes(self.files[name])

    def upload(self, folder: Path, batches: Sequence[Sequence[str]]) -> int:
        sent = 0
        for batch in batches:
            self.batches.append(list(batch))
            for name in batch:
                self.files[name] = (folder / name).read_bytes()
                sent += len(self.files[name])
        return sent

    def signed_url(self, name: str, download_name: str | None = None) -> str | None:
        return f"https://store/{name}?as={download_name}" if name in self.files else None
