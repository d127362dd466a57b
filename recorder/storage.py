"""A recording on disk: the live segments themselves, hard-linked, and an append-only journal.

The crash-safe form is the HLS segments the packager already wrote: each listed segment of the
recorded rendition is hard-linked (copied when the media folder spans file systems) into the
recording folder, then one ``#EXTINF`` entry is appended to ``index.m3u8`` with a single write.
A crash loses at most the entry being written; recovery keeps every complete entry. Hard links
cost no space while the live folder also holds the segment.

Layout of ``recordings/<event id>/<run>/``:

- ``seg_NNNNNN.ts``: the segments (names of the live run);
- ``index.m3u8``: the journal while recording (EVENT playlist, program date time per segment),
  rewritten at the end as the full VOD playlist with ENDLIST;
- ``vod.m3u8``: what players get: the full playlist or its trimmed view (playlist-level trim);
- ``master.m3u8``: one variant (codecs and resolution from the live master) pointing at ``vod.m3u8``;
- ``thumbnail.jpg``, ``download.mp4`` (made on demand by ``vod/``).

The m3u8 text is ``formats.m3u8``'s; the ``RecordingFiles`` methods do the file I/O.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from formats.m3u8 import (
    PlaylistParseError,
    Segment,
    VariantStream,
    journal_entry,
    journal_header,
    parse_journal,
    parse_master,
    parse_media_playlist,
    render_master,
    render_vod,
    target_duration_for,
)
from live_server.files import write_atomic

JOURNAL = "index.m3u8"
VOD_PLAYLIST = "vod.m3u8"
MASTER = "master.m3u8"
THUMBNAIL = "thumbnail.jpg"
DOWNLOAD = "download.mp4"
PLAYLISTS = (JOURNAL, VOD_PLAYLIST, MASTER)  # kept on local disk as a cached copy when the media moves to objects
_SEGMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.ts$")


class TrimError(ValueError):
    """A trim that would leave nothing to play."""


# --- pure code --------------------------------------------------------------------------


def segment_starts(segments: Sequence[Segment]) -> list[float]:
    starts, t = [], 0.0
    for segment in segments:
        starts.append(t)
        t += segment.duration
    return starts


def trimmed(segments: Sequence[Segment], start: float = 0.0, end: float | None = None) -> tuple[list[Segment], float]:
    """Segments that overlap ``[start, end)`` of the recording, and where the first one starts.

    Trim is playlist-level: whole segments are kept, so the cut lands on the segment boundary at
    or before ``start`` and at or after ``end`` (no re-encode).
    """
    kept: list[Segment] = []
    offset = 0.0
    for seg_start, segment in zip(segment_starts(segments), segments):
        seg_end = seg_start + segment.duration
        if seg_end <= start + 1e-6 or (end is not None and seg_start >= end - 1e-6):
            continue
        if not kept:
            offset = seg_start
        kept.append(segment)
    if not kept:
        raise TrimError("the trim leaves nothing to play")
    return kept, offset


def vod_master(live_master: str | None, rendition: str | None, peak_bps: int) -> str:
    """One-variant master for ``vod.m3u8``, keeping the codecs and resolution the live master advertised.

    A live master we cannot read (or none: an import) gives a variant with the bandwidth alone.
    """
    try:
        variants = parse_master(live_master) if live_master else []
    except PlaylistParseError:
        variants = []
    live = next((v for v in variants if rendition is None or v.uri.startswith(f"{rendition}/")), None)
    variant = VariantStream(uri=VOD_PLAYLIST, bandwidth=max(peak_bps, 1), codecs=live.codecs if live else None,
                            resolution=live.resolution if live else None, frame_rate=live.frame_rate if live else None)
    return render_master([variant])


# --- files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskSummary:
    segments: int
    duration_seconds: float
    size_bytes: int
    discontinuities: int


class RecordingFiles:
    """The files of one recording folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def create(self) -> None:
        """The folder; the journal starts with the first segment (its header needs the target duration)."""
        self.folder.mkdir(parents=True, exist_ok=True)

    def link(self, source: Path) -> int:
        """Hard-link a listed live segment in (fast, inline); raises OSError when it cannot."""
        target = self.folder / source.name
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        return os.stat(target).st_size

    def copy(self, source: Path) -> int:
        """The fallback when links are impossible (another file system); run it in a thread."""
        target = self.folder / source.name
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return os.stat(target).st_size

    def append(self, segment: Segment, target_duration: int | None = None) -> None:
        """Journal one segment with a single append (O_APPEND): complete or torn, never interleaved.

        The first one also writes the header, with ``target_duration`` (the live playlist's).
        """
        data = journal_entry(segment).encode("utf-8")
        journal = self.folder / JOURNAL
        if not journal.exists() or journal.stat().st_size == 0:
            target = target_duration if target_duration is not None else target_duration_for(segment.duration)
            data = journal_header(target).encode("utf-8") + data
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def journal_segments(self, require_files: bool = True) -> list[Segment]:
        """Journaled segments whose file is on disk (recovery, and the source of every view).

        ``require_files=False`` for a recording whose segments moved to object storage (only the
        playlists stay here).
        """
        try:
            text = (self.folder / JOURNAL).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [s for s in parse_journal(text)
                if _SEGMENT_NAME.match(s.uri) and (not require_files or (self.folder / s.uri).exists())]

    def finalize(self, segments: Sequence[Segment], live_master: str | None, rendition: str | None) -> DiskSummary:
        """Write the VOD playlists (full record, player view, master); ``segments`` must not be empty."""
        sizes = [os.stat(self.folder / s.uri).st_size for s in segments]
        write_atomic(self.folder / JOURNAL, render_vod(segments))
        write_atomic(self.folder / VOD_PLAYLIST, render_vod(segments))
        peak = max((int(size * 8 / s.duration) for size, s in zip(sizes, segments) if s.duration > 0.2), default=1)
        write_atomic(self.folder / MASTER, vod_master(live_master, rendition, peak))
        return DiskSummary(
            segments=len(segments),
            duration_seconds=round(sum(s.duration for s in segments), 3),
            size_bytes=sum(sizes),
            discontinuities=sum(1 for s in segments[1:] if s.discontinuity),
        )

    def write_view(self, start: float = 0.0, end: float | None = None, require_files: bool = True) -> tuple[float, float]:
        """Rewrite ``vod.m3u8`` as the trimmed view; returns (offset of its first segment, its duration)."""
        kept, offset = trimmed(self.journal_segments(require_files), start, end)
        write_atomic(self.folder / VOD_PLAYLIST, render_vod(kept))
        (self.folder / DOWNLOAD).unlink(missing_ok=True)  # the download follows the view
        return round(offset, 3), round(sum(s.duration for s in kept), 3)

    def view_segments(self) -> list[Segment]:
        """The segments players get (after trim)."""
        try:
            parsed = parse_media_playlist((self.folder / VOD_PLAYLIST).read_text(encoding="utf-8"))
        except (FileNotFoundError, PlaylistParseError):
            return []
        return parsed.playlist.segments

    def stored_names(self) -> list[str]:
        """The files of a finished recording (no temporaries), playlists last: what an archive copies."""
        names = sorted(e.name for e in os.scandir(self.folder) if e.is_file() and not e.name.startswith("."))
        return [n for n in names if n not in PLAYLISTS] + [n for n in PLAYLISTS if n in names]

    def drop_media(self) -> int:
        """Remove everything but the playlists (the media is in object storage now); returns the bytes freed."""
        freed = 0
        for name in self.stored_names():
            if name not in PLAYLISTS:
                path = self.folder / name
                freed += path.stat().st_size
                path.unlink(missing_ok=True)
        return freed

    def size_bytes(self) -> int:
        total = 0
        for entry in os.scandir(self.folder):
            if entry.is_file():
                total += entry.stat().st_size
        return total

    def delete(self) -> None:
        """Remove the folder, and its event folder when that becomes empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass
