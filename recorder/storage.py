"""A recording on disk: the live segments themselves, hard-linked, and an append-only journal.

The crash-safe form is the HLS segments the packager already wrote: each listed segment of the
recorded rendition is hard-linked (copied when the media folder spans file systems) into the
recording folder, then one ``#EXTINF`` entry is appended to ``index.m3u8`` with a single write.
A crash loses at most the entry being written; recovery keeps every complete entry. Hard links
cost no space while the live folder also holds the segment.

Layout of ``recordings/<event id>/<run>/``:

- ``seg_NNNNNN.ts``: the segments (names of the live run); with LL-HLS, ``seg_NNNNNN.m4s`` fMP4
  segments and ``init_N.mp4``, the init section of each publish session (``EXT-X-MAP``);
- ``index.m3u8``: the journal while recording (EVENT playlist, program date time per segment),
  rewritten at the end as the full VOD playlist with ENDLIST;
- ``vod.m3u8``: what players get: the full playlist or its trimmed view (playlist-level trim);
- ``master.m3u8``: one variant (codecs and resolution from the live master) pointing at ``vod.m3u8``;
- ``thumbnail.jpg``, ``download.mp4`` (made by ``vod/``'s tools at the paths given here);
- ``ad-<lang>.m3u8`` and ``ad-<lang>_<version>_<segment>.ts``: an audio-description rendition, one audio
  segment per video segment (``vod/audio_descriptions.py`` makes them in ``.ad-<lang>.work/``, installed here;
  a new version gets new names, since players and the media cache keep segments as immutable); for an fMP4
  recording ``ad-<lang>_<version>_<segment>.m4s`` audio-only fragments and ``ad-<lang>_<version>_<init>.mp4``,
  their init section per run;
- ``video.m3u8`` / ``video-<segment>.m4s`` / ``video-<init>.mp4`` and ``audio.m3u8`` / ``audio-<segment>.m4s`` /
  ``audio-<init>.mp4``: an fMP4 recording's tracks split apart (the same samples, derived from its muxed
  segments, made once when it gets an audio description and removed with the last one). hls.js cannot switch
  a muxed fMP4 variant to an alternate audio rendition, so the master then names the video-only view as the
  variant and the programme's audio-only view as the default audio rendition, beside the descriptions;
- imports (``recordings/imported/<id>/``) have the same layout.

This module is the one owner of that layout: the recorder writes a run here and the catalog
(``vod/``) trims, archives, imports and deletes through ``RecordingFiles``, never by file name.
The m3u8 text is ``formats.m3u8``'s; the ``RecordingFiles`` methods do the file I/O.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

from formats.cmaf import AudioFormat, CmafError, audio_format, single_track_fragment, single_track_init
from formats.m3u8 import (
    AudioRendition,
    PlaylistParseError,
    Segment,
    VariantStream,
    journal_entry,
    journal_header,
    parse_journal,
    parse_master,
    parse_media_playlist,
    parse_media_tags,
    render_master,
    render_vod,
    target_duration_for,
    with_audio_renditions,
)
from live_server.files import write_atomic
from live_server.layout import MASTER_PLAYLIST, live_run_of_recording

# The names below are this module's alone: everything else asks ``RecordingFiles`` for a path.
JOURNAL = "index.m3u8"
VOD_PLAYLIST = "vod.m3u8"
MASTER = "master.m3u8"
THUMBNAIL = "thumbnail.jpg"
DOWNLOAD = "download.mp4"
IMPORT_PLAYLIST = "import.m3u8"  # ffmpeg's playlist of an import, until it is turned into ours
PLAYLISTS = (JOURNAL, VOD_PLAYLIST, MASTER)  # kept on local disk as a cached copy when the media moves to objects
_ASIDE = ".deleted-"  # prefix of a folder being deleted
_SEGMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(ts|m4s)$")
_INIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.mp4$")
_AD_PLAYLIST = re.compile(r"^ad-([a-z0-9-]{2,16})\.m3u8$")
_AD_SEGMENT = re.compile(r"^ad-([a-z0-9-]{2,16})_([0-9]{1,12})_[A-Za-z0-9_-]+\.(ts|m4s|mp4)$")
# An fMP4 recording's tracks split apart (audio description): a view each, and its fragments and init sections.
VIDEO_VIEW = "video.m3u8"
AUDIO_VIEW = "audio.m3u8"
_SPLIT_KINDS = {"video": (VIDEO_VIEW, b"vide"), "audio": (AUDIO_VIEW, b"soun")}
_SPLIT_NAME = re.compile(r"^(video|audio)-[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(m4s|mp4)$")
_REMUX_PLAYLIST = ".remux-{}.m3u8"  # an fMP4 view's publish sessions, for the MP4 remux (hidden: never stored)

_FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # a segment or init section, never a path


def copy_full_playlist(journal: bytes, fetch: Callable[[str, Path], None], target: Path) -> tuple[Path, float] | None:
    """An archived recording's journal and every file it names, fetched into ``target`` (an empty folder):
    what a transcription reads when the segments are only in object storage. None when the journal names
    nothing or a name that is not a plain file name (it is read back from outside this disk)."""
    text = journal.decode("utf-8", "replace")
    listed = parse_journal(text)
    names = sorted({s.uri for s in listed} | {s.map_uri for s in listed if s.map_uri is not None})
    if not listed or not all(_SEGMENT_NAME.match(s.uri) for s in listed) or not all(_FILE_NAME.match(n) for n in names):
        return None
    for name in names:
        fetch(name, target / name)
    write_atomic(target / JOURNAL, text)
    return target / JOURNAL, round(sum(s.duration for s in listed), 3)



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


def remux_groups(segments: Sequence[Segment]) -> list[list[Segment]]:
    """The view cut where its timeline restarts (a discontinuity: a reconnect or a gap) or its init
    section changes: each piece reads as one continuous file, and the remux joins them end to end."""
    groups: list[list[Segment]] = []
    for segment in segments:
        if not groups or segment.discontinuity or segment.map_uri != groups[-1][-1].map_uri:
            groups.append([])
        groups[-1].append(segment)
    return groups


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


class RemoteCopy(Protocol):
    """A recording's copy in object storage, one name per file (``vod.objects.StoredRecording``)."""

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def remove(self, names: Sequence[str]) -> None: ...

    def exists(self, name: str) -> bool: ...

    def fetch(self, name: str, target: Path) -> None: ...

    def upload(self, folder: Path, batches: Sequence[Sequence[str]]) -> int:
        """Copy these files of ``folder`` in, batch after batch; returns the bytes sent."""

    def signed_url(self, name: str, download_name: str | None = None) -> str | None: ...


def read_live_master(live_run: Path) -> str | None:
    """The master playlist the packager wrote for a live run (codecs and resolution), if there is one."""
    try:
        return (live_run / MASTER_PLAYLIST).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None


def served_as_is(name: str) -> bool:
    """Whether players may fetch this file of a recording without the view listing it."""
    return name in (MASTER, VOD_PLAYLIST, THUMBNAIL, VIDEO_VIEW, AUDIO_VIEW) or _AD_PLAYLIST.match(name) is not None


def listing_playlist(name: str) -> str:
    """The playlist that must list a segment for players to get it: an audio-description segment's own
    rendition playlist, a split track's file its view (``video.m3u8``, ``audio.m3u8``), else the view
    (``vod.m3u8``)."""
    match = _AD_SEGMENT.match(name)
    if match:
        return audio_description_playlist(match.group(1))
    split = _SPLIT_NAME.match(name)
    return _SPLIT_KINDS[split.group(1)][0] if split else VOD_PLAYLIST


def split_name(kind: str, name: str) -> str:
    """The file holding one track (``kind``: ``video`` or ``audio``) of a muxed fMP4 segment or init section."""
    if kind not in _SPLIT_KINDS:
        raise ValueError(f"no split track {kind!r}")
    return f"{kind}-{name}"


def split_view(segments: Sequence[Segment], kind: str) -> list[Segment]:
    """A view's segments as one track's files: the same durations, discontinuities and dates, each segment and
    init section replaced by its ``kind`` half, so the split playlists stay aligned with the view segment for
    segment (and with the audio descriptions, cut on the same boundaries)."""
    if any(s.map_uri is None for s in segments):
        raise ValueError("only fMP4 segments are split")
    return [replace(s, uri=split_name(kind, s.uri), map_uri=split_name(kind, s.map_uri or "")) for s in segments]


def with_variant_uri(master: str, uri: str) -> str:
    """``master`` with every variant naming ``uri``: ``video.m3u8`` while the programme's sound is an
    alternate rendition of its own (split tracks), ``vod.m3u8`` otherwise. Only our own two names are
    replaced; any other variant is left as it is."""
    lines = master.splitlines()
    for index in range(1, len(lines)):
        if lines[index - 1].startswith("#EXT-X-STREAM-INF:") and lines[index].strip() in (VOD_PLAYLIST, VIDEO_VIEW):
            lines[index] = uri
    return "\n".join(lines) + "\n"


def audio_description_playlist(language: str) -> str:
    """The audio-description rendition's playlist, named in the master (``language``: a lower-case code)."""
    return f"ad-{language}.m3u8"


def _audio_description_segment(language: str, version: int, video_segment: str) -> str:
    """The description's file beside a video segment (or init section): its stem, with the same suffix
    (``.ts`` for MPEG-TS; ``.m4s`` fragments and ``.mp4`` init sections for fMP4)."""
    path = Path(video_segment)
    return f"ad-{language}_{version}_{path.stem}{path.suffix}"


def _audio_description_view(view: Sequence[Segment], language: str, version: int) -> list[Segment]:
    """A description's rendition as a view's segments: each video segment's (and init section's) audio file."""
    return [replace(s, uri=_audio_description_segment(language, version, s.uri),
                    map_uri=None if s.map_uri is None else _audio_description_segment(language, version, s.map_uri))
            for s in view]


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def listed_names(view: bytes) -> frozenset[str]:
    """The segment files (and init sections) a view (``vod.m3u8``, as bytes) lists; nothing when it cannot be read."""
    try:
        segments = parse_media_playlist(view.decode("utf-8")).playlist.segments
    except (PlaylistParseError, UnicodeDecodeError):
        return frozenset()
    return frozenset(s.uri for s in segments) | frozenset(s.map_uri for s in segments if s.map_uri is not None)


class RecordingFiles:
    """The files of one recording folder: the only code that names, writes or deletes them.

    The recorder writes a run's segments and journal here; the catalog (``vod/``) trims, archives,
    imports and deletes through these methods. ``live_run`` is the live run the recording was made
    from (None for an import), which goes with it when it is deleted.
    """

    def __init__(self, folder: Path, live_run: Path | None = None) -> None:
        self.folder = folder
        self.live_run = live_run

    @classmethod
    def of(cls, media_dir: Path, media_path: str) -> "RecordingFiles":
        """The folder of a catalog row's ``media_path`` (relative to the media folder)."""
        return cls(media_dir / media_path, live_run_of_recording(media_dir, media_path))

    @classmethod
    def containing(cls, segment: Path) -> "RecordingFiles":
        """The folder a recorded segment (``SegmentCompleted.path``) lies in."""
        return cls(segment.parent)

    # --- paths of files made by tools (thumbnail, MP4 remux) ------------------------------
    @property
    def thumbnail(self) -> Path:
        return self.folder / THUMBNAIL

    @property
    def download(self) -> Path:
        """The MP4 of the view, made on demand and removed when the view changes."""
        return self.folder / DOWNLOAD

    @property
    def view(self) -> Path:
        """The playlist players get (``vod.m3u8``)."""
        return self.folder / VOD_PLAYLIST

    def path_of(self, segment: Segment) -> Path:
        return self.folder / segment.uri

    def init_of(self, segment: Segment) -> Path | None:
        """The init section an fMP4 segment is read with (None for MPEG-TS)."""
        return self.folder / segment.map_uri if segment.map_uri is not None else None

    # --- recording a run -------------------------------------------------------------------
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
            data = journal_header(target, with_map=segment.map_uri is not None).encode("utf-8") + data
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
        return [s for s in parse_journal(text) if _SEGMENT_NAME.match(s.uri)
                and (s.map_uri is None or (_INIT_NAME.match(s.map_uri) and s.map_uri != DOWNLOAD))
                and (not require_files or all(p.exists() for p in (self.path_of(s), self.init_of(s)) if p is not None))]

    def full_playlist(self) -> tuple[Path, float] | None:
        """The journal (every segment, trimmed or not) and its length in seconds, when all its segments are
        on this disk: what a transcription reads, so cue times are on the recording's full timeline."""
        try:
            listed = parse_journal((self.folder / JOURNAL).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not listed or any(not _SEGMENT_NAME.match(s.uri) or not (self.folder / s.uri).is_file()
                             or (s.map_uri is not None and not (self.folder / s.map_uri).is_file()) for s in listed):
            return None
        return self.folder / JOURNAL, round(sum(s.duration for s in listed), 3)

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

    def finalize_recovered(self, segments: Sequence[Segment]) -> DiskSummary:
        """After a crash: :meth:`finalize` the journal's complete entries, with the live run's codecs."""
        live_master = read_live_master(self.live_run) if self.live_run is not None else None
        return self.finalize(segments, live_master, None)

    # --- an import (ffmpeg writes the segments and a playlist, we make it a recording) ------
    def import_outputs(self) -> tuple[Path, Path]:
        """Where ffmpeg's HLS muxer writes an import: (segment file pattern, its playlist)."""
        return self.folder / "seg_%06d.ts", self.folder / IMPORT_PLAYLIST

    def finish_import(self) -> DiskSummary:
        """Turn ffmpeg's playlist into the recording's playlists; raises ValueError without a segment."""
        playlist = self.folder / IMPORT_PLAYLIST
        segments = parse_media_playlist(playlist.read_text(encoding="utf-8")).playlist.segments
        if not segments:
            raise ValueError("ffmpeg produced no segment")
        summary = self.finalize(segments, None, None)
        playlist.unlink(missing_ok=True)
        return summary

    def first_segment(self) -> Path | None:
        """The recording's first segment (a thumbnail is made from it), if it is on disk."""
        segments = self.view_segments() or self.journal_segments()
        return self.path_of(segments[0]) if segments else None

    # --- the MP4 remux -------------------------------------------------------------------
    def remux_inputs(self, segments: Sequence[Segment], folder: Path | None = None) -> list[Path]:
        """What the MP4 remux joins, in order, for these segments of the view lying in ``folder``
        (this recording's, or a scratch copy): MPEG-TS segments themselves; for fMP4, one VOD playlist
        per :func:`remux_groups` piece, written beside its segments as a hidden file (ffmpeg's HLS reader
        then reads each piece as one continuous file with its init section). Blocking; remove them
        with :meth:`discard_remux_inputs`."""
        folder = self.folder if folder is None else folder
        if all(s.map_uri is None for s in segments):
            return [folder / s.uri for s in segments]
        inputs = []
        for number, group in enumerate(remux_groups(segments)):
            path = folder / _REMUX_PLAYLIST.format(number)
            write_atomic(path, render_vod(group))
            inputs.append(path)
        return inputs

    def remux_audio(self, segments: Sequence[Segment], folder: Path | None = None) -> AudioFormat | None:
        """The audio format the MP4 remux must re-encode to, or None when its pieces can be copied as they
        are: fMP4 pieces whose init sections declare different audio (a reconnect at 48 kHz after 44.1,
        mono after stereo) cannot share one MP4 track. The highest rate and channel count win. Blocking."""
        folder = self.folder if folder is None else folder
        inits = list(dict.fromkeys(s.map_uri for s in segments if s.map_uri is not None))
        formats = set()
        for name in inits:
            try:
                found = audio_format((folder / name).read_bytes())
            except (OSError, struct.error):
                continue
            if found is not None:
                formats.add(found)
        if len(formats) < 2:
            return None
        return AudioFormat("mp4a", max(f.sample_rate for f in formats), max(f.channels for f in formats))

    @staticmethod
    def discard_remux_inputs(inputs: Sequence[Path]) -> None:
        for path in inputs:
            if path.name.startswith(".remux-"):
                path.unlink(missing_ok=True)

    # --- the view (trim) -------------------------------------------------------------------
    def write_view(self, start: float = 0.0, end: float | None = None, require_files: bool = True) -> tuple[float, float]:
        """Rewrite ``vod.m3u8`` as the trimmed view; returns (offset of its first segment, its duration)."""
        kept, offset = trimmed(self.journal_segments(require_files), start, end)
        write_atomic(self.folder / VOD_PLAYLIST, render_vod(kept))
        self.download.unlink(missing_ok=True)  # the download follows the view
        if require_files:
            for language in self.audio_description_languages():  # audio descriptions follow it too
                self._write_audio_description_view(language)
            if self.has_split_tracks:  # and so do the split tracks
                self._write_split_views()
        return round(offset, 3), round(sum(s.duration for s in kept), 3)

    def trim(self, start: float, end: float | None, remote: RemoteCopy | None = None) -> tuple[float, float]:
        """The trimmed view here and, for an archived recording, in its objects (blocking).

        Raises :class:`TrimError` when nothing would be left, and the store's own error when it did
        not take the new view (the cached copy here then keeps the old one too).
        """
        if remote is None:
            return self.write_view(start, end)
        self.restore_playlists(remote)
        before = self.view.read_text(encoding="utf-8") if self.view.exists() else None
        offset_duration = self.write_view(start, end, require_files=False)
        try:
            remote.write(VOD_PLAYLIST, self.view.read_bytes())
            self._trim_remote_renditions(remote)
            remote.remove([DOWNLOAD])  # the download follows the view
        except BaseException:
            if before is not None:
                write_atomic(self.view, before)
            raise
        return offset_duration

    def _trim_remote_renditions(self, remote: RemoteCopy) -> None:
        """An archived recording's other renditions follow its new view in its objects too (their files are
        there, not here): the split tracks when the master names them (its variant then is the video-only
        view, so a trim would not show otherwise) and each audio description the master lists."""
        view = self.view_segments()
        try:
            master = (self.folder / MASTER).read_text(encoding="utf-8")
            variants, media = parse_master(master), parse_media_tags(master)
        except (FileNotFoundError, PlaylistParseError):
            return
        if not view:
            return
        if any(v.uri == VIDEO_VIEW for v in variants) and all(s.map_uri is not None for s in view):
            for kind, (name, _) in _SPLIT_KINDS.items():
                remote.write(name, render_vod(split_view(view, kind)).encode("utf-8"))
        for tag in media:
            match = _AD_PLAYLIST.match(tag.get("URI", "")) if tag.get("TYPE") == "AUDIO" else None
            data = remote.read(match.group(0)) if match else None
            if match is None or data is None:
                continue
            try:
                listed = parse_media_playlist(data.decode("utf-8")).playlist.segments
            except (PlaylistParseError, UnicodeDecodeError):
                continue
            version = _AD_SEGMENT.match(listed[0].uri) if listed else None
            if version is not None:
                audio = _audio_description_view(view, match.group(1), int(version.group(2)))
                remote.write(match.group(0), render_vod(audio).encode("utf-8"))

    def view_segments(self) -> list[Segment]:
        """The segments players get (after trim)."""
        try:
            parsed = parse_media_playlist(self.view.read_text(encoding="utf-8"))
        except (FileNotFoundError, PlaylistParseError):
            return []
        return parsed.playlist.segments

    # --- audio description (alternate audio renditions) ----------------------------------------
    def audio_description_groups(self) -> list[list[tuple[Path, Segment]]]:
        """The journal's segments (the full timeline, so a trim never needs a new track), in runs without
        a discontinuity (one continuous clock each); raises ValueError when they cannot carry a track."""
        listed = self.journal_segments()
        if not listed:
            raise ValueError("the recording's segments are not on this server's disk")
        if len({s.map_uri is None for s in listed}) > 1:
            raise ValueError("the recording mixes MPEG-TS and fMP4 segments")
        groups: list[list[tuple[Path, Segment]]] = []
        for segment in listed:  # fMP4: a new init section starts a run too (another publish session)
            if not groups or segment.discontinuity or segment.map_uri != groups[-1][-1][1].map_uri:
                groups.append([])
            groups[-1].append((self.path_of(segment), segment))
        return groups

    def audio_description_work(self, language: str) -> Path:
        """An empty scratch folder for making a track, inside the recording's folder (hidden, never served;
        it goes with the folder if the recording is deleted meanwhile). Raises OSError without the folder."""
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} is gone")
        work = self.folder / f".ad-{language}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        return work

    def install_audio_description(self, language: str, version: int, produced: Sequence[tuple[Path, Segment]],
                                  inits: Sequence[tuple[Path, str]] = ()) -> None:
        """Move a made track's segments in (one per video segment, ``produced`` pairs each made file with its
        video segment; for fMP4, ``inits`` each made init section with the video's init section it stands
        beside), list them beside the view, then drop an earlier version's segments."""
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} is gone")
        for made, video_init in inits:
            os.replace(made, self.folder / _audio_description_segment(language, version, video_init))
        for made, segment in produced:
            os.replace(made, self.folder / _audio_description_segment(language, version, segment.uri))
        self._write_audio_description_view(language, version)
        self._remove_audio_segments(language, keep=version)

    def _installed_version(self, language: str) -> int | None:
        try:
            listed = parse_media_playlist((self.folder / audio_description_playlist(language)).read_text("utf-8"))
        except (FileNotFoundError, PlaylistParseError):
            return None
        match = _AD_SEGMENT.match(listed.playlist.segments[0].uri) if listed.playlist.segments else None
        return int(match.group(2)) if match else None

    def _write_audio_description_view(self, language: str, version: int | None = None) -> None:
        """The rendition's playlist: the view's segments, each with its audio segment (same durations)."""
        version = self._installed_version(language) if version is None else version
        if version is None:
            return
        audio = _audio_description_view(self.view_segments() or self.journal_segments(), language, version)
        if audio and all((self.folder / name).is_file() for s in audio for name in (s.uri, s.map_uri) if name):
            write_atomic(self.folder / audio_description_playlist(language), render_vod(audio))

    def audio_description_languages(self) -> list[str]:
        """Languages whose rendition is installed here."""
        return sorted(m.group(1) for e in os.scandir(self.folder) if (m := _AD_PLAYLIST.match(e.name))) \
            if self.folder.is_dir() else []

    def remove_audio_description(self, language: str) -> None:
        """The rendition's playlist first (players stop finding it), then its segments and any scratch folder."""
        (self.folder / audio_description_playlist(language)).unlink(missing_ok=True)
        self._remove_audio_segments(language)
        shutil.rmtree(self.folder / f".ad-{language}.work", ignore_errors=True)

    def _remove_audio_segments(self, language: str, keep: int | None = None) -> None:
        if not self.folder.is_dir():
            return
        for entry in os.scandir(self.folder):
            match = _AD_SEGMENT.match(entry.name)
            if match and match.group(1) == language and (keep is None or int(match.group(2)) != keep):
                os.unlink(entry.path)

    # --- split tracks (an fMP4 recording with audio descriptions) ----------------------------------
    @property
    def has_split_tracks(self) -> bool:
        """Whether the recording's tracks are split apart (their views are written last, once complete)."""
        return (self.folder / VIDEO_VIEW).is_file() and (self.folder / AUDIO_VIEW).is_file()

    def programme_audio_playlist(self) -> str | None:
        """The programme's sound as a rendition of its own (``audio.m3u8``) when the tracks are split, else
        None (it is muxed in the variant)."""
        return AUDIO_VIEW if self.has_split_tracks else None

    def split_tracks(self) -> bool:
        """Split an fMP4 recording's muxed segments into video-only and audio-only files (every journaled
        segment, so a later trim needs nothing new), then write their views; False for MPEG-TS, where a
        muxed variant switches to an alternate audio rendition as it is. Files already made are kept (the
        same bytes would come out). Blocking. Raises ValueError when a segment has no such track."""
        listed = self.journal_segments()
        if not listed or any(s.map_uri is None for s in listed):
            return False
        inits: dict[str, bytes] = {}
        for name in dict.fromkeys(s.map_uri for s in listed if s.map_uri is not None):
            inits[name] = (self.folder / name).read_bytes()
            for kind, (_, handler) in _SPLIT_KINDS.items():
                target = self.folder / split_name(kind, name)
                if not target.is_file():
                    try:
                        _write_bytes_atomic(target, single_track_init(inits[name], handler))
                    except CmafError:
                        raise CmafError(f"the recording has no {kind} in its publish session {name}") from None
        for segment in listed:
            assert segment.map_uri is not None
            targets = {kind: self.folder / split_name(kind, segment.uri) for kind in _SPLIT_KINDS}
            if all(t.is_file() for t in targets.values()):
                continue
            data = self.path_of(segment).read_bytes()
            for kind, target in targets.items():
                part = single_track_fragment(inits[segment.map_uri], data, _SPLIT_KINDS[kind][1])
                if not part:
                    raise CmafError(f"segment {segment.uri} has no {kind}")
                _write_bytes_atomic(target, part)
        self._write_split_views()
        return True

    def _write_split_views(self) -> None:
        """``audio.m3u8`` then ``video.m3u8``: the view (after trim) as each track's files."""
        view = self.view_segments() or self.journal_segments()
        if not view or any(s.map_uri is None for s in view):
            return
        for kind in ("audio", "video"):
            write_atomic(self.folder / _SPLIT_KINDS[kind][0], render_vod(split_view(view, kind)))

    def remove_split_tracks(self) -> None:
        """The views first (players stop finding them), then the files; the master must no longer name them."""
        for view, _ in _SPLIT_KINDS.values():
            (self.folder / view).unlink(missing_ok=True)
        if self.folder.is_dir():
            for entry in os.scandir(self.folder):
                if _SPLIT_NAME.match(entry.name):
                    os.unlink(entry.path)

    def set_audio_renditions(self, renditions: Sequence[AudioRendition]) -> None:
        """The master's audio group (the one place the recording's master gets alternate audio): the
        programme's rendition and each description's, or none at all. When the programme's rendition is the
        split audio view, the variant becomes the video-only view; otherwise it is the muxed view."""
        master = self.folder / MASTER
        text = master.read_text(encoding="utf-8")
        split = any(r.uri == AUDIO_VIEW for r in renditions)
        updated = with_variant_uri(with_audio_renditions(text, renditions), VIDEO_VIEW if split else VOD_PLAYLIST)
        if updated != text:
            write_atomic(master, updated)

    # --- object storage --------------------------------------------------------------------
    def remote_journal(self, remote: RemoteCopy) -> list[Segment]:
        """The journal of an archived recording read from its objects (this host has no copy)."""
        text = remote.read(JOURNAL)
        return parse_journal(text.decode("utf-8")) if text else []

    def restore_playlists(self, remote: RemoteCopy) -> None:
        """Restore the cached playlist copies of an archived recording (another host, a wiped disk)."""
        for name in PLAYLISTS:
            if not (self.folder / name).exists():
                data = remote.read(name)
                if data is not None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    write_atomic(self.folder / name, data.decode("utf-8"))

    def upload(self, remote: RemoteCopy) -> tuple[int, int]:
        """Copy a finished recording into its objects, playlists last (a partial upload never has a
        playlist naming a missing segment); returns (files, bytes sent)."""
        names = self.stored_names()
        media = [n for n in names if n not in PLAYLISTS]
        return len(names), remote.upload(self.folder, [media, [n for n in names if n in PLAYLISTS]])

    def remote_download(self, remote: RemoteCopy) -> bool:
        """Whether the archived recording's MP4 is made (raises the store's error when it cannot tell)."""
        return remote.exists(DOWNLOAD)

    def remote_download_url(self, remote: RemoteCopy, filename: str) -> str | None:
        return remote.signed_url(DOWNLOAD, download_name=filename)

    def fetch_view(self, remote: RemoteCopy, scratch: Path) -> tuple[list[Path], Path]:
        """The view's segments (and init sections) of an archived recording, fetched into ``scratch``,
        the remux's inputs there (:meth:`remux_inputs`) and where the MP4 goes (:meth:`store_download`
        sends it); no inputs when there is no view."""
        self.restore_playlists(remote)
        segments = self.view_segments()
        if segments:
            scratch.mkdir(parents=True, exist_ok=True)
            inits = list(dict.fromkeys(s.map_uri for s in segments if s.map_uri is not None))
            for name in [*inits, *(s.uri for s in segments)]:
                remote.fetch(name, scratch / name)
        return self.remux_inputs(segments, scratch) if segments else [], scratch / DOWNLOAD

    def store_download(self, remote: RemoteCopy, scratch: Path) -> None:
        remote.upload(scratch, [[DOWNLOAD]])

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

    # --- deletion --------------------------------------------------------------------------
    def set_aside(self) -> list[Path]:
        """Step one of a delete, inside the catalog's transaction: the folder and its live run are
        renamed out of the way (nothing of it is served any more); returns what was moved."""
        moved = []
        for folder in (self.folder, self.live_run):
            if folder is not None and folder.is_dir():
                aside = folder.with_name(f"{_ASIDE}{folder.name}")
                os.replace(folder, aside)
                moved.append(aside)
        return moved

    @staticmethod
    def put_back(moved: Sequence[Path]) -> None:
        """The transaction failed: the folders return where they were."""
        for aside in moved:
            if aside.exists():
                os.replace(aside, aside.with_name(aside.name.removeprefix(_ASIDE)))

    @staticmethod
    def remove_aside(moved: Sequence[Path]) -> None:
        """Step two, after the commit (blocking: run it in a thread)."""
        for aside in moved:
            RecordingFiles(aside).delete()

    def delete(self) -> None:
        """Remove the folder, and its event folder when that becomes empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass
