"""Making, listing and removing recordings' audio-description tracks: the asyncio shell of ``vod.audio_description``.

Work runs off the request path: the request checks what it can at once (the language has a voice, the
descriptions text reads, an uploaded file is audio of the recording's length) and answers 202 with a
``pending`` track; a background task, one at a time per process, speaks the descriptions with espeak-ng
and mixes and cuts them with ffmpeg (both niced), then installs the rendition through the recording
folder's owner (``recorder.storage.RecordingFiles``) and marks it ``ready``, or ``failed`` with the
reason. A track pending when the process stopped is marked failed at the next start (ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from formats import webvtt
from formats.cmaf import audio_format, track_starts
from formats.m3u8 import DESCRIBES_VIDEO, AudioRendition, Segment
from live_server.db import Database
from live_server.languages import language_name
from live_server.models import (
    AudioDescription, AudioDescriptionState, Recording, RecordingState, utcnow,
)
from recorder.storage import RecordingFiles, audio_description_playlist

from .audio_description import (
    ACCEPTED_AUDIO_DEMUXERS, adts_fragments, boundaries, duration_mismatch, espeak_voices, mix_args, package_args, place,
    speech_args, voice_for,
)
from .tools import FfmpegFailed, run_ffmpeg

log = logging.getLogger(__name__)

__all__ = ["AudioDescriptions", "AudioDescriptionRefused", "AudioDescriptionConflict", "track_json"]

#: The speech track starts this long before the recording, so that every run's first sample (which may come
#: a few milliseconds before its first video frame) has speech to read.
SPEECH_LEAD = 1.0
ORIGINAL_AUDIO = "Original audio"
#: Held while a recording's audio renditions and split tracks change (installs and removals run in threads):
#: the master, the description files and the split tracks always agree.
_FILES_LOCK = threading.Lock()


class AudioDescriptionRefused(ValueError):
    """The request cannot become a track (422); the message says why, for the lecturer."""


class AudioDescriptionConflict(Exception):
    """A track in that language is being made (409)."""


def rendition_name(language: str) -> str:
    """NAME of a description rendition, for players that show it as is (ours translate by CHARACTERISTICS)."""
    return f"{language_name(language, 'en', capital=False)} audio description"


def renditions(languages: Sequence[str], programme: str | None = None) -> list[AudioRendition]:
    """The master's audio group: the programme (``programme`` None: muxed in the variant, no URI; an fMP4
    recording's split audio view otherwise) and each description."""
    if not languages:
        return []
    return [AudioRendition(ORIGINAL_AUDIO, uri=programme, default=True),
            *(AudioRendition(rendition_name(lang), lang, audio_description_playlist(lang), default=False, autoselect=True,
                             characteristics=DESCRIBES_VIDEO) for lang in languages)]


def track_json(row: AudioDescription, playback_base: str) -> dict[str, Any]:
    return {"language": row.language, "state": row.state.value, "source": row.source, "error": row.error,
            "cues": row.cues, "created_at": row.created_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "playlist_url": f"{playback_base}/{audio_description_playlist(row.language)}"
            if row.state == AudioDescriptionState.READY else None}


@dataclass(frozen=True)
class ProgrammeAudio:
    """What the first segment of a continuous run says about its sound: the clock and the format to keep."""

    start: float  # the run's first timestamp (seconds, on the segments' own clock)
    lead: float  # how long after that the first video frame comes
    sample_rate: int
    channels: int


def probe_programme(segment: Path) -> ProgrammeAudio:
    """Timestamps and audio format of a recording's MPEG-TS segment (blocking)."""
    import av

    with av.open(str(segment), format="mpegts", options={"protocol_whitelist": "file"}) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        if audio is None:
            raise ValueError("the recording has no sound to describe over")
        start = (container.start_time or 0) / 1_000_000
        video_start = start
        if video is not None and video.start_time is not None and video.time_base is not None:
            video_start = float(video.start_time * video.time_base)
        return ProgrammeAudio(start, max(0.0, video_start - start), audio.sample_rate or 48000, audio.channels or 2)


def probe_fmp4_programme(init: Path, segment: Path) -> tuple[ProgrammeAudio, int]:
    """Timestamps and audio format of a recording's fMP4 run from its init section and first segment, read
    from the boxes (blocking); with where its audio starts in samples (the ``tfdt`` the described fragments
    continue). ``lead`` may be negative here: video starting before the sound moves the cuts earlier."""
    head = init.read_bytes()
    starts = track_starts(head, segment.read_bytes())
    found = audio_format(head)
    if found is None or b"soun" not in starts:
        raise ValueError("the recording has no sound to describe over")
    audio_time, audio_scale = starts[b"soun"]
    start = audio_time / audio_scale
    video_time, video_scale = starts.get(b"vide", starts[b"soun"])
    rate = found.sample_rate or audio_scale
    return (ProgrammeAudio(start, video_time / video_scale - start, rate, found.channels or 2),
            round(audio_time * rate / audio_scale))


@dataclass(frozen=True)
class UploadedAudio:
    demuxer: str
    seconds: float | None


def probe_upload(path: Path) -> UploadedAudio:
    """An uploaded track's demuxer (one of the accepted ones) and length (blocking)."""
    import av

    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(ACCEPTED_AUDIO_DEMUXERS)}
    try:
        with av.open(str(path), options=options) as container:
            demuxer = next(name for name in container.format.name.split(",") if name in ACCEPTED_AUDIO_DEMUXERS)
            audio = next((s for s in container.streams if s.type == "audio"), None)
            if audio is None:
                raise AudioDescriptionRefused("the file has no audio stream")
            seconds = container.duration / 1_000_000 if container.duration else None
            if seconds is None and audio.duration is not None and audio.time_base is not None:
                seconds = float(audio.duration * audio.time_base)
            return UploadedAudio(demuxer, seconds)
    except (av.FFmpegError, StopIteration) as exc:  # type: ignore[attr-defined]
        raise AudioDescriptionRefused(f"not an audio file ffmpeg can read ({exc.__class__.__name__})") from None


def write_speech_track(path: Path, clips: Sequence[Path], starts: Sequence[float], total_seconds: float) -> None:
    """One WAV of the whole timeline (plus :data:`SPEECH_LEAD`): silence, and each clip at its place.

    Written as it goes, in order (placements never overlap), so a two-hour lecture costs no memory.
    """
    rate, width = 22050, 2
    with wave.open(str(path), "wb") as out:
        cursor = 0
        for index, (clip, start) in enumerate(zip(clips, starts)):
            with wave.open(str(clip), "rb") as speech:
                if index == 0:
                    rate, width = speech.getframerate(), speech.getsampwidth()
                    out.setnchannels(1)
                    out.setsampwidth(width)
                    out.setframerate(rate)
                if speech.getnchannels() != 1 or speech.getframerate() != rate or speech.getsampwidth() != width:
                    raise ValueError("espeak-ng changed its output format between two descriptions")
                at = int(round((start + SPEECH_LEAD) * rate))
                if at > cursor:
                    out.writeframes(b"\0" * (at - cursor) * width)
                    cursor = at
                frames = speech.readframes(speech.getnframes())
                out.writeframes(frames)
                cursor += len(frames) // width
        if not clips:
            out.setnchannels(1)
            out.setsampwidth(width)
            out.setframerate(rate)
        end = int(round((total_seconds + 2 * SPEECH_LEAD) * rate))
        while cursor < end:
            step = min(end - cursor, rate * 60)
            out.writeframes(b"\0" * step * width)
            cursor += step


def renice(pid: int, niceness: int) -> None:
    """Lower a child's priority (espeak-ng, ffmpeg): descriptions wait, live streams do not."""
    with contextlib.suppress(OSError):
        if niceness > os.getpriority(os.PRIO_PROCESS, pid):
            os.setpriority(os.PRIO_PROCESS, pid, niceness)


@dataclass(frozen=True)
class _Job:
    track_id: int
    recording_id: int
    media_path: str
    language: str
    cues: tuple[webvtt.Cue, ...] = ()
    upload: Path | None = None
    demuxer: str | None = None


class AudioDescriptions:
    """Recordings' audio-description tracks: requests, the background work, removal."""

    def __init__(self, db: Database, media_dir: Path, ffmpeg: str, espeak: str = "espeak-ng", niceness: int = 10,
                 changed: Callable[[int, str], None] | None = None) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ffmpeg = ffmpeg
        self.espeak = espeak
        self.niceness = niceness
        self.changed = changed  # told (recording id, media path) when a recording's renditions change: caches
        self._voices: frozenset[str] | None = None
        self._slot = asyncio.Semaphore(1)
        self._tasks: dict[tuple[int, str], asyncio.Task[None]] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Tracks left pending by a stopped process cannot finish: say so."""
        def work(session: Session) -> int:
            rows = session.scalars(select(AudioDescription).where(AudioDescription.state == AudioDescriptionState.PENDING)).all()
            for row in rows:
                row.state, row.error, row.finished_at = (AudioDescriptionState.FAILED,
                                                         "interrupted by a server restart; ask again", utcnow())
            return len(rows)

        if count := await self.db.run(work):
            log.warning("audio description: %d track(s) left pending by a restart marked failed", count)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- voices -----------------------------------------------------------------------------------
    async def voices(self) -> frozenset[str]:
        """Languages espeak-ng speaks here (asked once); empty when it is not installed."""
        if self._voices is None:
            binary = shutil.which(self.espeak)
            if binary is None:
                log.warning("audio description: %s not found; descriptions cannot be spoken (install espeak-ng)", self.espeak)
                self._voices = frozenset()
            else:
                try:
                    out = await asyncio.to_thread(subprocess.run, [binary, "--voices"], capture_output=True, text=True,
                                                  timeout=30, check=True)
                    self._voices = espeak_voices(out.stdout)
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("audio description: %s --voices failed: %s", binary, exc)
                    self._voices = frozenset()
        return self._voices

    async def voice(self, language: str) -> str:
        voice = voice_for(language, await self.voices())
        if voice is None:
            raise AudioDescriptionRefused(f"espeak-ng has no voice for {language!r} on this server")
        return voice

    # --- requests ---------------------------------------------------------------------------------
    async def tracks(self, recording_id: int) -> list[AudioDescription]:
        return await self.db.run(lambda s: list(s.scalars(select(AudioDescription).where(
            AudioDescription.recording_id == recording_id).order_by(AudioDescription.language)).all()))

    async def generate(self, recording: Recording, language: str, cues: Sequence[webvtt.Cue], user_id: int | None) -> AudioDescription:
        """Speak ``cues`` (a descriptions track: from an uploaded WebVTT file now, a stored track later) in ``language``."""
        await self.voice(language)
        if not cues:
            raise AudioDescriptionRefused("there is no description to speak")
        return await self._begin(recording, language, "descriptions", user_id, cues=tuple(cues))

    async def upload(self, recording: Recording, language: str, audio: Path, user_id: int | None) -> AudioDescription:
        """An already mixed track; refused unless it lasts as long as the recording (``audio`` is removed after)."""
        try:
            probe = await asyncio.to_thread(probe_upload, audio)
            seconds = await asyncio.to_thread(self._timeline_seconds, recording.media_path)
            reason = duration_mismatch(probe.seconds, seconds)
            if reason is not None:
                raise AudioDescriptionRefused(reason)
            return await self._begin(recording, language, "upload", user_id, upload=audio, demuxer=probe.demuxer)
        except BaseException:
            audio.unlink(missing_ok=True)
            raise

    async def timeline_seconds(self, recording: Recording) -> float:
        """The recording's full length (before trim): the timeline descriptions and uploads are laid on."""
        return await asyncio.to_thread(self._timeline_seconds, recording.media_path)

    def _timeline_seconds(self, media_path: str) -> float:
        try:
            groups = RecordingFiles.of(self.media_dir, media_path).audio_description_groups()
        except ValueError as exc:
            raise AudioDescriptionRefused(str(exc)) from None
        return sum(segment.duration for group in groups for _, segment in group)

    async def _begin(self, recording: Recording, language: str, source: str, user_id: int | None,
                     cues: tuple[webvtt.Cue, ...] = (), upload: Path | None = None, demuxer: str | None = None) -> AudioDescription:
        if recording.state != RecordingState.READY:
            raise AudioDescriptionConflict("the recording is not ready yet")
        if recording.storage_url:
            raise AudioDescriptionRefused("the recording is in object storage; audio description needs its segments on this server")
        running = self._tasks.get((recording.id, language))
        if running is not None and not running.done():
            raise AudioDescriptionConflict(f"an audio description in {language!r} is being made")

        def work(session: Session) -> AudioDescription:
            session.execute(delete(AudioDescription).where(AudioDescription.recording_id == recording.id,
                                                           AudioDescription.language == language))
            row = AudioDescription(recording_id=recording.id, language=language, source=source, cues=len(cues),
                                   requested_by_id=user_id, state=AudioDescriptionState.PENDING, created_at=utcnow())
            session.add(row)
            session.flush()
            session.expunge(row)
            return row

        row: AudioDescription = await self.db.run(work)
        # The earlier track in this language (if any) goes now: a failed new one never leaves the old one listed.
        # Split tracks stay (the new one uses them again; a failure removes them if nothing is left).
        await asyncio.to_thread(self._remove_files, RecordingFiles.of(self.media_dir, recording.media_path), [language],
                                True)
        if self.changed is not None:
            self.changed(recording.id, recording.media_path)
        job = _Job(row.id, recording.id, recording.media_path, language, cues, upload, demuxer)
        task = asyncio.create_task(self._run(job), name=f"audio-description-{recording.id}-{language}")
        self._tasks[(recording.id, language)] = task
        key = (recording.id, language)
        task.add_done_callback(lambda done: self._forget(key, done))
        return row

    def _forget(self, key: tuple[int, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def remove(self, recording: Recording, language: str | None) -> int:
        """Stop and delete the track in ``language`` (every track: None); returns how many there were."""
        for (rid, lang), task in list(self._tasks.items()):
            if rid == recording.id and (language is None or lang == language):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

        def work(session: Session) -> list[str]:
            query = select(AudioDescription).where(AudioDescription.recording_id == recording.id)
            if language is not None:
                query = query.where(AudioDescription.language == language)
            rows = session.scalars(query).all()
            for row in rows:
                session.delete(row)
            return [row.language for row in rows]

        removed = await self.db.run(work)
        files = RecordingFiles.of(self.media_dir, recording.media_path)
        await asyncio.to_thread(self._remove_files, files, removed)
        if self.changed is not None:
            self.changed(recording.id, recording.media_path)
        return len(removed)

    @staticmethod
    def _remove_files(files: RecordingFiles, languages: Sequence[str], keep_split: bool = False) -> None:
        """Remove these descriptions; the master then lists what is left, and an fMP4 recording's split tracks
        go with the last description (the master names the muxed view again first)."""
        with _FILES_LOCK:
            for language in languages:
                files.remove_audio_description(language)
            if files.folder.is_dir():
                left = files.audio_description_languages()
                files.set_audio_renditions(renditions(left, files.programme_audio_playlist()))
                if not left and not keep_split:
                    files.remove_split_tracks()

    # --- the work -----------------------------------------------------------------------------------
    async def _run(self, job: _Job) -> None:
        files = RecordingFiles.of(self.media_dir, job.media_path)
        try:
            async with self._slot:
                await self._make(job, files)
        except asyncio.CancelledError:
            await asyncio.to_thread(shutil.rmtree, files.folder / f".ad-{job.language}.work", True)
            raise
        except (FfmpegFailed, OSError, ValueError, wave.Error) as exc:
            reason = str(exc) or exc.__class__.__name__
            log.warning("recording %d: audio description (%s) failed: %s", job.recording_id, job.language, reason)
            await asyncio.to_thread(shutil.rmtree, files.folder / f".ad-{job.language}.work", True)
            try:  # split tracks kept or made for it go if nothing uses them
                await asyncio.to_thread(self._remove_files, files, [])
            except (OSError, ValueError) as tidy:
                log.warning("recording %d: audio renditions not tidied after the failure: %s", job.recording_id, tidy)
            await self.db.run(lambda s: self._settle(s, job.track_id, reason))
            return
        finally:
            if job.upload is not None:
                job.upload.unlink(missing_ok=True)
        await self.db.run(lambda s: self._settle(s, job.track_id, None))
        if self.changed is not None:
            self.changed(job.recording_id, job.media_path)
        log.info("recording %d: audio description (%s) ready", job.recording_id, job.language)

    @staticmethod
    def _settle(session: Session, track_id: int, error: str | None) -> None:
        row = session.get(AudioDescription, track_id)
        if row is not None:
            row.state = AudioDescriptionState.FAILED if error else AudioDescriptionState.READY
            row.error = error[:1000] if error else None
            row.finished_at = utcnow()

    async def _make(self, job: _Job, files: RecordingFiles) -> None:
        groups = await asyncio.to_thread(files.audio_description_groups)
        work = await asyncio.to_thread(files.audio_description_work, job.language)
        await asyncio.to_thread(self._split, files)  # first: a recording that cannot be split fails before the work
        total = sum(segment.duration for group in groups for _, segment in group)
        speech = await self._speak(job, work, total) if job.upload is None else None
        produced: list[tuple[Path, Segment]] = []
        inits: list[tuple[Path, str]] = []  # fMP4: each run's init section, with the video's it stands beside
        timeline = 0.0
        for number, group in enumerate(groups):
            init = files.init_of(group[0][1])
            start_samples = 0
            if init is None:
                programme = await asyncio.to_thread(probe_programme, group[0][0])
            else:
                programme, start_samples = await asyncio.to_thread(probe_fmp4_programme, init, group[0][0])
            durations = [segment.duration for _, segment in group]
            seconds = programme.lead + sum(durations)
            cuts = boundaries(durations, programme.lead)
            # MPEG-TS: ffmpeg's segment muxer cuts; fMP4: one ADTS stream, cut into fragments below.
            output = work / (f"run{number}-%06d.ts" if init is None else f"run{number}.aac")
            inputs = [path for path, _ in group] if init is None else [init, *(path for path, _ in group)]
            begin = timeline - programme.lead
            if speech is not None:
                args = mix_args(self.ffmpeg, inputs, speech, SPEECH_LEAD + begin, seconds, programme.start, cuts,
                                programme.sample_rate, programme.channels, output, fmp4=init is not None)
            else:
                assert job.upload is not None and job.demuxer is not None
                args = package_args(self.ffmpeg, job.upload, job.demuxer, max(0.0, begin), seconds, programme.start, cuts,
                                    programme.sample_rate, programme.channels, output, fmp4=init is not None)
            await self._run_niced(args, timeout=max(120.0, seconds * 2))
            if init is None:
                made = sorted(work.glob(f"run{number}-*.ts"))
            else:
                made_init, made = await asyncio.to_thread(self._fragments, work, number, output, start_samples, cuts,
                                                          programme.sample_rate)
                inits.append((made_init, init.name))
            if len(made) != len(group):
                raise ValueError(f"ffmpeg cut {len(made)} audio segments for {len(group)} video segments")
            produced.extend(zip(made, (segment for _, segment in group)))
            timeline += sum(durations)

        def install() -> None:
            with _FILES_LOCK:
                files.split_tracks()  # again (made: a quick check), in case a removal took them meanwhile
                files.install_audio_description(job.language, job.track_id, produced, inits)
                languages = sorted({*files.audio_description_languages(), job.language})
                files.set_audio_renditions(renditions(languages, files.programme_audio_playlist()))
            shutil.rmtree(work, ignore_errors=True)

        await asyncio.to_thread(install)

    @staticmethod
    def _split(files: RecordingFiles) -> None:
        with _FILES_LOCK:
            files.split_tracks()

    @staticmethod
    def _fragments(work: Path, number: int, adts: Path, start: int, cuts: Sequence[float],
                   sample_rate: int) -> tuple[Path, list[Path]]:
        """A run's ADTS stream as an init section and one fMP4 fragment per video segment, in ``work`` (blocking)."""
        init, fragments = adts_fragments(adts.read_bytes(), start, cuts, sample_rate)
        (work / f"run{number}-init.mp4").write_bytes(init)
        made = []
        for index, fragment in enumerate(fragments):
            made.append(work / f"run{number}-{index:06d}.m4s")
            made[-1].write_bytes(fragment)
        adts.unlink()
        return work / f"run{number}-init.mp4", made

    async def _speak(self, job: _Job, work: Path, total: float) -> Path:
        """Each description said by espeak-ng (one short process each), placed on the timeline in one WAV."""
        voice = await self.voice(job.language)
        clips: list[Path] = []
        durations: list[float] = []
        for index, cue in enumerate(job.cues):
            clip = work / f"cue-{index:05d}.wav"
            proc = await asyncio.create_subprocess_exec(
                *speech_args(self.espeak, voice, clip), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            renice(proc.pid, self.niceness)
            try:
                _, stderr = await asyncio.wait_for(proc.communicate(cue.text.replace("\n", " ").encode("utf-8")), 60)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise ValueError("espeak-ng took longer than 60 s for one description") from None
            if proc.returncode != 0:
                raise ValueError(f"espeak-ng exited with {proc.returncode}: {stderr.decode('utf-8', 'replace').strip()[-200:]}")
            with wave.open(str(clip), "rb") as said:
                durations.append(said.getnframes() / said.getframerate())
            clips.append(clip)
        placed = place([cue.start for cue in job.cues], durations)
        track = work / "speech.wav"
        await asyncio.to_thread(write_speech_track, track, clips, [p.start for p in placed], max(total, placed[-1].end))
        return track

    async def _run_niced(self, args: list[str], timeout: float) -> None:
        await run_ffmpeg(args, timeout=timeout, started=lambda pid: renice(pid, self.niceness))
