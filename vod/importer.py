"""Import an existing lecture video (MP4, MOV, MKV, WebM) into the catalog, beside the replays.

The upload is streamed to disk (never held in memory), probed with PyAV, and turned into the same
HLS layout as a recording: H.264 video and AAC audio are copied, anything else is transcoded, so a
lecture capture from elsewhere costs a remux, not an encode. The recording row is ``processing``
while ffmpeg runs, then ``ready`` (or ``failed`` with ffmpeg's reason); the upload is deleted
either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from formats.m3u8 import PlaylistParseError
from live_server.db import Database
from live_server.layout import imported_recording
from live_server.models import Recording, RecordingState, User, Visibility, utcnow
from recorder.storage import RecordingFiles
from vod.tools import FfmpegFailed, run_ffmpeg

log = logging.getLogger(__name__)

COPYABLE_VIDEO = {"h264"}
COPYABLE_AUDIO = {"aac"}


# Demuxers an upload may be read with. Anything else is refused: playlists and manifests (HLS, DASH, ffconcat)
# would make ffmpeg open the files or URLs they name (other recordings on this disk), and image/raw demuxers
# are not lecture videos. MP4/MOV/M4V, MKV/WebM, AVI, MPEG-TS, FLV, WMV/ASF, MPEG-PS.
ACCEPTED_DEMUXERS = ("mov", "matroska", "avi", "mpegts", "flv", "asf", "mpeg")
ACCEPTED_NAMES = "MP4, MOV, MKV, WebM, AVI, MPEG-TS, FLV, WMV or MPEG"


def input_options() -> list[str]:
    """ffmpeg input options that keep it to the accepted demuxers and to the one local file."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(ACCEPTED_DEMUXERS)]


class ImportRejected(ValueError):
    """The file cannot become a recording (no video, unreadable); the message is for the uploader."""


@dataclass(frozen=True)
class Probe:
    video_codec: str | None
    audio_codec: str | None
    duration_seconds: float | None
    demuxer: str = "mov"  # one of ACCEPTED_DEMUXERS: ffmpeg is told to read the file with it (-f)


def probe(path: Path) -> Probe:
    """Codecs and duration of a media file (blocking: run it in a thread)."""
    import av

    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(ACCEPTED_DEMUXERS)}
    try:
        with av.open(str(path), options=options) as container:
            demuxer = next(name for name in container.format.name.split(",") if name in ACCEPTED_DEMUXERS)
            video = next((s for s in container.streams if s.type == "video"), None)
            audio = next((s for s in container.streams if s.type == "audio"), None)
            duration = container.duration / 1_000_000 if container.duration else None
            return Probe(video.codec_context.name if video else None, audio.codec_context.name if audio else None,
                         duration, demuxer)
    except (av.FFmpegError, StopIteration) as exc:  # type: ignore[attr-defined]
        raise ImportRejected(f"not a readable video file in an accepted format ({ACCEPTED_NAMES}; "
                             f"{exc.__class__.__name__})") from None


def import_args(ffmpeg: str, source: Path, files: RecordingFiles, media: Probe, segment_seconds: float) -> list[str]:
    """ffmpeg arguments: copy what HLS players take as it is, transcode the rest.

    The output is the layout of a recording (``RecordingFiles.import_outputs``: segments beside a
    playlist that ``RecordingFiles.finish_import`` turns into ours), so replays and imports are served alike.
    """
    if media.video_codec is None:
        raise ImportRejected("the file has no video stream")
    # -f: read the upload with the demuxer the probe accepted, so ffmpeg cannot probe it as something else.
    args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *input_options(), "-f", media.demuxer,
            "-i", str(source),
            # One video and at most one audio track (a rendition has one of each); no subtitle or data
            # streams, which MPEG-TS segments would carry to players that do not expect them.
            "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn"]
    if media.video_codec in COPYABLE_VIDEO:
        args += ["-c:v", "copy"]
    else:
        # A keyframe at every segment boundary: the HLS muxer cuts only on keyframes. yuv420p: the only
        # chroma format every player decodes.
        gop = f"expr:gte(t,n_forced*{segment_seconds:g})"
        args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                 "-force_key_frames", gop]
    if media.audio_codec is not None:
        # -ac 2: surround tracks are folded to stereo, which every browser plays.
        args += ["-c:a", "copy"] if media.audio_codec in COPYABLE_AUDIO else ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    # vod + list size 0: one playlist naming every segment, ending with ENDLIST.
    segments, playlist = files.import_outputs()
    args += ["-f", "hls", "-hls_time", f"{segment_seconds:g}", "-hls_playlist_type", "vod", "-hls_list_size", "0",
             "-hls_segment_type", "mpegts", "-hls_segment_filename", str(segments), str(playlist)]
    return args


def transcodes(media: Probe) -> list[str]:
    """What will be re-encoded (for the log and the API)."""
    work = []
    if media.video_codec not in COPYABLE_VIDEO:
        work.append(f"video {media.video_codec} → h264")
    if media.audio_codec is not None and media.audio_codec not in COPYABLE_AUDIO:
        work.append(f"audio {media.audio_codec} → aac")
    return work


class Importer:
    """Turns uploaded files into recordings, in the background (bounded: one import at a time per core)."""

    def __init__(self, db: Database, media_dir: Path, ffmpeg: str, segment_seconds: float = 4.0) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ffmpeg = ffmpeg
        self.segment_seconds = segment_seconds
        self._slots = asyncio.Semaphore(max(1, (os.cpu_count() or 1) // 2))
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready_listeners: list[Callable[[int], None]] = []  # told each imported recording's id (the archiver)

    def upload_path(self, token: str) -> Path:
        folder = self.media_dir / "imports"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{token}.upload"

    async def create(self, owner: User, title: str, description: str, visibility: Visibility, upload: Path) -> int:
        """A ``processing`` recording for this upload; the work starts in the background."""
        def work(session: Any) -> int:
            row = Recording(owner_id=owner.id, title=title[:200], description=description, visibility=visibility,
                            state=RecordingState.PROCESSING)
            session.add(row)
            session.flush()
            row.media_path = imported_recording(row.id)
            return row.id

        recording_id: int = await self.db.run(work)
        task = asyncio.create_task(self._process(recording_id, upload), name=f"import-{recording_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return recording_id

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _process(self, recording_id: int, upload: Path) -> None:
        files = RecordingFiles.of(self.media_dir, imported_recording(recording_id))
        try:
            async with self._slots:
                media = await asyncio.to_thread(probe, upload)
                files.create()
                args = import_args(self.ffmpeg, upload, files, media, self.segment_seconds)
                work = transcodes(media)
                log.info("recording %d: importing (%s)", recording_id, ", ".join(work) or "remux only")
                timeout = max(300.0, (media.duration_seconds or 3600) * (4 if work else 1))
                await run_ffmpeg(args, timeout=timeout)
                summary = await asyncio.to_thread(files.finish_import)
            thumbnail = await self._thumbnail(files)
        except (ImportRejected, FfmpegFailed, OSError, PlaylistParseError, ValueError) as exc:
            log.warning("recording %d: import failed: %s", recording_id, exc)
            await asyncio.to_thread(files.delete)
            await self.db.run(lambda s: _failed(s, recording_id, str(exc)))
            return
        finally:
            upload.unlink(missing_ok=True)
        await self.db.run(lambda s: _ready(s, recording_id, (summary.duration_seconds, summary.size_bytes), thumbnail))
        log.info("recording %d: imported, %.1f s", recording_id, summary.duration_seconds)
        for listener in self.ready_listeners:
            listener(recording_id)

    async def _thumbnail(self, files: RecordingFiles) -> str | None:
        from vod.tools import make_thumbnail

        first = await asyncio.to_thread(files.first_segment)
        try:
            if first is None:
                raise FileNotFoundError("no segment")
            await make_thumbnail(self.ffmpeg, first, files.thumbnail)
        except (FfmpegFailed, OSError) as exc:
            log.warning("%s: no thumbnail: %s", files.folder, exc)
            return None
        return files.thumbnail.relative_to(self.media_dir).as_posix()


def _ready(session: Any, recording_id: int, summary: tuple[float, int], thumbnail: str | None) -> None:
    row = session.get(Recording, recording_id)
    if row is not None:
        row.duration_seconds, row.size_bytes = summary
        row.thumbnail_path = thumbnail
        row.state, row.ready_at = RecordingState.READY, utcnow()


def _failed(session: Any, recording_id: int, reason: str) -> None:
    row = session.get(Recording, recording_id)
    if row is not None:
        row.state, row.error = RecordingState.FAILED, reason[:1000]


def allowed_visibility(value: str | None) -> Visibility:
    """Uploads may be public, authenticated or unlisted (password protection is set on events)."""
    if not value:
        return Visibility.PUBLIC
    try:
        visibility = Visibility(value)
    except ValueError:
        raise ImportRejected(f"unknown visibility {value!r}") from None
    if visibility == Visibility.PASSWORD:
        raise ImportRejected("password visibility is not available for imported videos")
    return visibility
