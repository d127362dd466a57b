"""A recording's text tracks: captions, subtitles in other languages, text descriptions.

The rules (pure): what a language tag, a kind and a label may be; how an uploaded file becomes cues
(``formats.webvtt.read_file`` / ``formats.srt.parse``, refused as a whole with line-numbered problems);
which track a player shows by default (RFC 8216 ``DEFAULT``/``AUTOSELECT``/``FORCED``) and what each
is called. The catalog work (in the caller's transaction): list, add, delete a track, and its cues.

The automatic track (live captions or transcription) reads the recording's caption rows without a
track, which the captioner and the transcription write; it gets its ``caption_tracks`` row where those
rows are written (``ensure_automatic`` when a recording is finished, with its run's live captions; the
transcription's end), never when tracks are read (migration 0013 made those of older recordings). Every other
track keeps each saved state as a numbered version; its published version's cues are also written as
``caption_segments`` rows with its ``track_id``, so transcript search finds them in their language.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from formats import srt, webvtt
from formats.webvtt import Cue, Problem, SubtitleFileError
from live_server import accounts
from live_server.access import Person, can_manage, recording_target
from live_server.errors import Conflict, NotFound
from live_server.models import (
    CaptionSegment, CaptionTrack, CaptionTrackVersion, Event, EventModerator, JobState, Recording, TranscriptionJob, User,
    Visibility, utcnow,
)

from . import replay

__all__ = [
    "KINDS", "TrackError", "language_tag", "read_subtitles", "Rendition", "renditions",
    "ensure_automatic", "tracks_of", "find_track", "add_track", "delete_track", "track_cues", "track_json", "can_edit_tracks",
]

KINDS = ("captions", "subtitles", "descriptions")
MAX_CUES = 20_000
MAX_LABEL = 100
# Players type a rendition by its CHARACTERISTICS (RFC 8216 4.3.4.1): captions carry the sounds for viewers who
# cannot hear them (hls.js lists such a track as "captions"); a descriptions track says what is shown.
CHARACTERISTICS = {
    "captions": "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound",
    "descriptions": "public.accessibility.describes-video",
}

# BCP 47 (RFC 5646) as far as a subtitle track needs it: a 2-3 letter language (or 4-8 registered), an
# optional 4-letter script, an optional region (2 letters or 3 digits) and variants. Private-use and
# extension subtags are refused: players do not know them.
_TAG = re.compile(r"^([A-Za-z]{2,3}|[A-Za-z]{5,8})(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?((?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$")


class TrackError(ValueError):
    """A track refused for what was asked (422), with the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def language_tag(raw: str) -> str:
    """A BCP 47 tag in its conventional case (``fr``, ``pt-BR``, ``zh-Hant-TW``, ``es-419``); TrackError otherwise."""
    tag = raw.strip().replace("_", "-")
    match = _TAG.match(tag)
    if not match or len(tag) > 35:
        raise TrackError("language", f"{raw.strip()[:40]!r} is not a language tag (BCP 47, e.g. fr, en, pt-BR)")
    language, script, region, variants = match.groups()
    out = language.lower()
    if script:
        out += "-" + script[1:].title()
    if region:
        out += "-" + region[1:].upper()
    return out + (variants or "").lower()


def kind_of(raw: str) -> str:
    kind = raw.strip().lower() or "subtitles"
    if kind not in KINDS:
        raise TrackError("kind", f"must be one of {', '.join(KINDS)}")
    return kind


def label_of(raw: str) -> str:
    label = " ".join(raw.split())
    if len(label) > MAX_LABEL:
        raise TrackError("label", f"at most {MAX_LABEL} characters")
    if '"' in label:  # a NAME in the master playlist is a quoted string
        raise TrackError("label", "must not contain double quotes")
    return label


def read_subtitles(filename: str, data: bytes) -> list[Cue]:
    """An uploaded WebVTT or SubRip file's cues (by its signature: a WebVTT file starts with ``WEBVTT``).

    Refused as a whole (SubtitleFileError, with line numbers) when it is not UTF-8 text, has a problem,
    has no cue at all or more than ``MAX_CUES``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SubtitleFileError([Problem.at(line, "not_utf8")]) from None
    if "\x00" in text:
        raise SubtitleFileError([Problem.at(text[: text.index("\x00")].count("\n") + 1, "nul")])
    stripped = text.lstrip("\ufeff")
    is_vtt = stripped.startswith("WEBVTT") or filename.lower().endswith(".vtt")
    cues = webvtt.read_file(text) if is_vtt else srt.parse(text)
    if not cues:
        raise SubtitleFileError([Problem.at(1, "no_cues")])
    if len(cues) > MAX_CUES:
        raise SubtitleFileError([Problem.at(1, "too_many_cues", limit=MAX_CUES)])
    return cues


# --- renditions in the master playlist ---------------------------------------------------------------


@dataclass(frozen=True)
class TrackFacts:
    """What the rendition rules read of a track (copied out of the catalog)."""

    id: int
    language: str
    kind: str
    label: str
    automatic: bool
    forced: bool = False


@dataclass(frozen=True)
class Rendition:
    track_id: int
    name: str
    language: str
    kind: str
    default: bool
    autoselect: bool
    forced: bool
    characteristics: str | None


def renditions(tracks: Sequence[TrackFacts], own_name: Callable[[str], str]) -> list[Rendition]:
    """One SUBTITLES rendition per track, by RFC 8216 4.3.4.1's rules.

    ``DEFAULT=YES`` on at most one: the automatic captions if any, else the first captions track (the
    replay turns captions on as the live page does); none when there are only translations or
    descriptions. ``AUTOSELECT=YES`` (required with DEFAULT) on captions and subtitles, so a player
    may pick one in the viewer's language; not on descriptions. ``FORCED=YES`` only on a forced
    subtitles track, which is never the default. NAMEs are unique in the group: the label, else the
    language's own name (``own_name``) and, for a descriptions track, "(AD)".
    """
    ordered = sorted(tracks, key=lambda t: (not t.automatic, t.id))
    default_id = next((t.id for t in ordered if t.kind == "captions" and not t.forced), None)
    out: list[Rendition] = []
    used: set[str] = set()
    for track in ordered:
        base = track.label or own_name(track.language) + (" (AD)" if track.kind == "descriptions" else "")
        name, n = base, 2
        while name.casefold() in used:
            name, n = f"{base} ({n})", n + 1
        used.add(name.casefold())
        forced = track.forced and track.kind == "subtitles"
        out.append(Rendition(track.id, name, track.language, track.kind, track.id == default_id,
                             track.kind != "descriptions" or track.id == default_id, forced,
                             CHARACTERISTICS.get(track.kind)))
    return out


# --- the catalog -----------------------------------------------------------------------------------------


def ensure_automatic(session: Session, recording: Recording) -> None:
    """The automatic track's row, made when the recording has automatic captions and none yet: called where
    they are written (the recording finished, with its run's live captions). A savepoint: when another
    transaction made it at the same moment, the unique ``automatic_of`` keeps one."""
    if session.scalar(select(exists().where(CaptionTrack.automatic_of == recording.id))):
        return
    language = session.scalar(select(CaptionSegment.language).where(replay.automatic_condition(session, recording)).limit(1))
    if language is None:
        return
    transcribed = session.scalar(select(exists().where(TranscriptionJob.recording_id == recording.id,
                                                       TranscriptionJob.state == JobState.DONE)))
    try:
        with session.begin_nested():
            session.add(CaptionTrack(recording_id=recording.id, language=language, kind="captions", label="",
                                     origin="transcription" if transcribed else "live", automatic_of=recording.id))
    except IntegrityError:
        pass


def tracks_of(session: Session, recording: Recording) -> list[CaptionTrack]:
    """The recording's tracks, the automatic one first, then in the order they were added (reads only)."""
    rows = session.scalars(select(CaptionTrack).where(CaptionTrack.recording_id == recording.id)
                           .order_by(CaptionTrack.automatic_of.is_(None), CaptionTrack.id))
    return list(rows)


def facts(tracks: Iterable[CaptionTrack]) -> list[TrackFacts]:
    return [TrackFacts(t.id, t.language, t.kind, t.label, t.automatic, t.forced) for t in tracks]


def find_track(session: Session, recording: Recording, ref: str) -> CaptionTrack:
    track = session.get(CaptionTrack, int(ref)) if ref.isascii() and ref.isdigit() and len(ref) < 12 else None
    if track is None or track.recording_id != recording.id:
        raise NotFound("no such track")
    return track


def _cues_json(cues: Sequence[Cue]) -> str:
    return json.dumps([[round(c.start, 3), round(c.end, 3), c.text] for c in cues], ensure_ascii=False)


def _index(session: Session, track: CaptionTrack, cues: Sequence[Cue]) -> None:
    """The published cues as caption rows of the track (what search and the transcript read)."""
    session.execute(delete(CaptionSegment).where(CaptionSegment.track_id == track.id)
                    .execution_options(synchronize_session=False))
    now = utcnow()
    session.add_all(CaptionSegment(recording_id=track.recording_id, track_id=track.id, language=track.language,
                                   start_seconds=c.start, end_seconds=c.end, text=c.text, created_at=now) for c in cues)


def add_track(session: Session, recording: Recording, author_id: int | None, language: str, kind: str, label: str,
              forced: bool, cues: Sequence[Cue]) -> CaptionTrack:
    """A new uploaded track: its version 1, published and indexed, in the caller's transaction."""
    track = CaptionTrack(recording_id=recording.id, language=language, kind=kind, label=label, origin="upload",
                         forced=forced and kind == "subtitles", published_version=1, created_by_id=author_id)
    session.add(track)
    session.flush()
    session.add(CaptionTrackVersion(track_id=track.id, number=1, cues=_cues_json(cues), source="upload",
                                    author_id=author_id))
    _index(session, track, cues)
    return track


def delete_track(session: Session, track: CaptionTrack) -> None:
    """An uploaded track with its versions and rows. The automatic one stays: transcribing again replaces it."""
    if track.automatic:
        raise Conflict("the automatic captions cannot be deleted; transcribe the recording again to replace them")
    session.delete(track)


def track_cues(session: Session, recording: Recording, track: CaptionTrack, offset: float) -> list[Cue]:
    """The track's published cues on the playable view (trim applied)."""
    if track.automatic:
        return replay.caption_cues(session, recording, offset, None)
    rows = session.scalars(select(CaptionSegment).where(CaptionSegment.track_id == track.id)
                           .order_by(CaptionSegment.start_seconds, CaptionSegment.id))
    return replay.view_cues(rows, recording, offset)


def track_json(track: CaptionTrack, api_url: str, name: str) -> dict[str, object]:
    return {
        "id": track.id, "language": track.language, "kind": track.kind, "label": track.label, "name": name,
        "origin": track.origin, "automatic": track.automatic, "forced": track.forced,
        "published_version": track.published_version, "created_at": track.created_at.isoformat(),
        "url": f"{api_url}/tracks/{track.id}.vtt",
    }


def can_edit_tracks(session: Session, user: User | None, recording: Recording) -> bool:
    """Owners, admins (and the instructors of its course) and the moderators of the recording's event: the
    people who may transcribe it may also add, edit and delete its text tracks."""
    if user is None or not user.is_active:
        return False
    event = session.get(Event, recording.event_id) if recording.event_id is not None else None
    person = accounts.person_in_session(session, user) if recording.visibility == Visibility.COURSE else Person.of(user)
    if can_manage(person, recording_target(recording, event)):
        return True
    return recording.event_id is not None and bool(session.scalar(select(exists().where(
        EventModerator.event_id == recording.event_id, EventModerator.user_id == user.id))))


# --- versions (the caption editor) ----------------------------------------------------------------------
#
# Versions keep cues on the recording's own timeline (as caption rows are), not on a trimmed view, so a
# trim changed later does not move them. Version 1 is the track as it came: the upload, or for the
# automatic track its captions as they were when it was first edited (kept, so it can be restored).

MAX_CUE_TEXT = 1000


@dataclass(frozen=True)
class CueProblem:
    """A cue refused when saving a version: its position (1-based) in what was sent, and why."""

    index: int
    code: str  # "times", "order", "empty", "too_long", "too_many", "shape"

    def __str__(self) -> str:
        return f"cue {self.index}: {CUE_PROBLEMS[self.code]}"


CUE_PROBLEMS = {
    "shape": "send [start, end, text] with times in seconds",
    "times": "the cue must end after it starts, within 24 hours",
    "empty": "the cue has no text",
    "too_long": f"the text is longer than {MAX_CUE_TEXT} characters",
    "too_many": f"more than {MAX_CUES} cues",
}


class CuesRefused(ValueError):
    def __init__(self, problems: list[CueProblem]) -> None:
        self.problems = problems[:20]
        super().__init__("; ".join(str(p) for p in self.problems))


def checked_cues(raw: object) -> list[Cue]:
    """Cues a person sent from the editor (``[[start, end, text], ...]``), in start order; CuesRefused otherwise."""
    if not isinstance(raw, list):
        raise CuesRefused([CueProblem(0, "shape")])
    if len(raw) > MAX_CUES:
        raise CuesRefused([CueProblem(len(raw), "too_many")])
    cues, problems = [], []
    for index, item in enumerate(raw, start=1):
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                  for v in item[:2]) and isinstance(item[2], str)):
            problems.append(CueProblem(index, "shape"))
            continue
        start, end, text = float(item[0]), float(item[1]), "\n".join(
            " ".join(line.split()) for line in item[2].replace("\r", "").split("\n") if line.strip())
        if not (0 <= start < end <= webvtt.MAX_CUE_SECONDS):
            problems.append(CueProblem(index, "times"))
        elif not text:
            problems.append(CueProblem(index, "empty"))
        elif len(text) > MAX_CUE_TEXT:
            problems.append(CueProblem(index, "too_long"))
        else:
            cues.append(Cue(round(start, 3), round(end, 3), text))
    if problems:
        raise CuesRefused(problems)
    return sorted(cues, key=lambda c: (c.start, c.end))


def _load_cues(version: CaptionTrackVersion) -> list[Cue]:
    return [Cue(float(s), float(e), str(t)) for s, e, t in json.loads(version.cues)]


def published_cues(session: Session, recording: Recording, track: CaptionTrack) -> list[Cue]:
    """The track's published cues on the recording's timeline (what the editor starts from)."""
    return _rows_cues(session, recording, track)


def _rows_cues(session: Session, recording: Recording, track: CaptionTrack) -> list[Cue]:
    condition = replay.automatic_condition(session, recording) if track.automatic else CaptionSegment.track_id == track.id
    rows = session.scalars(select(CaptionSegment).where(condition).order_by(CaptionSegment.start_seconds, CaptionSegment.id))
    return [Cue(c.start_seconds, c.end_seconds, c.text) for c in rows]


def _first_version(session: Session, recording: Recording, track: CaptionTrack) -> None:
    """Version 1 of a track that has none yet: the automatic captions as they are now."""
    if session.scalar(select(exists().where(CaptionTrackVersion.track_id == track.id))):
        return
    session.add(CaptionTrackVersion(track_id=track.id, number=1, cues=_cues_json(_rows_cues(session, recording, track)),
                                    source="automatic" if track.automatic else "upload", author_id=None))
    session.flush()


def _publish(session: Session, recording: Recording, track: CaptionTrack, version: CaptionTrackVersion) -> None:
    """Viewers get this version from now on; search and the transcript follow (its cues become the track's rows)."""
    if track.automatic and track.published_version == 0:
        # the automatic rows give way to the published version's (version 1 keeps them)
        ids = [row.id for row in session.scalars(select(CaptionSegment).where(replay.automatic_condition(session, recording)))]
        if ids:
            session.execute(delete(CaptionSegment).where(CaptionSegment.id.in_(ids)).execution_options(synchronize_session=False))
    track.published_version = version.number
    session.flush()
    _index(session, track, _load_cues(version))


def save_version(session: Session, recording: Recording, track: CaptionTrack, author_id: int, cues: Sequence[Cue]) -> int:
    """A new version of the track with these cues, by this author, published at once; its number."""
    _first_version(session, recording, track)
    number = (session.scalar(select(func.max(CaptionTrackVersion.number)).where(CaptionTrackVersion.track_id == track.id)) or 0) + 1
    version = CaptionTrackVersion(track_id=track.id, number=number, cues=_cues_json(cues), source="edit", author_id=author_id)
    session.add(version)
    session.flush()
    _publish(session, recording, track, version)
    return number


def publish_version(session: Session, recording: Recording, track: CaptionTrack, number: int) -> None:
    """Publish a saved version (1: back to the track as it came, the automatic captions for the automatic one)."""
    _first_version(session, recording, track)
    version = session.scalar(select(CaptionTrackVersion).where(CaptionTrackVersion.track_id == track.id,
                                                               CaptionTrackVersion.number == number))
    if version is None:
        raise NotFound("no such version")
    _publish(session, recording, track, version)


def versions_json(session: Session, track: CaptionTrack) -> dict[str, Any]:
    """The track's versions, newest first, with who saved each and when, and which one viewers get."""
    rows = list(session.scalars(select(CaptionTrackVersion).where(CaptionTrackVersion.track_id == track.id)
                                .order_by(CaptionTrackVersion.number.desc())))
    authors = {u.id: u.display_name or u.username for u in session.scalars(
        select(User).where(User.id.in_({v.author_id for v in rows if v.author_id is not None})))}
    published = track.published_version or 1
    return {"track_id": track.id, "published": published, "versions": [
        {"number": v.number, "source": v.source, "author": authors.get(v.author_id) if v.author_id else None,
         "created_at": v.created_at.isoformat(), "cues": len(json.loads(v.cues)), "published": v.number == published}
        for v in rows]}
