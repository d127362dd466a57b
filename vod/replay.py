"""What a replay shows beside the video: captions, chapters, chat and answered questions, in sync.

Everything is placed on the recording's timeline (the sum of its segment durations, as players
count it). Captions and chapters are stored on that timeline already. Chat and questions carry
wall-clock times: the program date times of the recording's segments (one at its start and one
after every reconnect) map wall clock to the timeline, so gaps between broadcast sessions do not
shift what was said after them. Trim shifts everything by where the playable view starts.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from formats import srt, webvtt
from formats.m3u8 import Segment
from live_server.models import CaptionSegment, CaptionTrack, Chapter, ChatMessage, Question, QuestionState, Recording, User

Anchor = tuple[float, float, float]  # (wall clock, timeline start, timeline end of its run of segments)


def anchors(segments: Sequence[Segment]) -> list[Anchor]:
    """One anchor per run of contiguous segments that starts with a known wall clock."""
    found: list[Anchor] = []
    t = 0.0
    for segment in segments:
        if segment.program_date_time is not None and (not found or segment.discontinuity):
            found.append((segment.program_date_time.timestamp(), t, t))
        t += segment.duration
        if found:
            wall, start, _ = found[-1]
            found[-1] = (wall, start, t)
    return found


def timeline_of_wall(found: Sequence[Anchor], wall: float) -> float | None:
    """Timeline position of a wall-clock instant; inside a gap it sticks to the end of the session before."""
    if not found:
        return None
    index = bisect.bisect_right([a[0] for a in found], wall) - 1
    if index < 0:
        return 0.0
    anchor_wall, start, end = found[index]
    return round(min(start + (wall - anchor_wall), end), 3)


def chapters_of(session: Session, recording: Recording) -> list[Chapter]:
    return list(session.scalars(
        select(Chapter).where(Chapter.recording_id == recording.id).order_by(Chapter.offset_seconds, Chapter.id)))


def automatic_condition(session: Session, recording: Recording) -> ColumnElement[bool]:
    """The recording's automatic caption rows (live captions, transcription: rows without a track); rows the
    captioner wrote after the run ended have no recording yet, and belong to the latest recording of their event.
    Once a version of the automatic track was published in the caption editor, that version's rows."""
    edited = session.scalar(select(CaptionTrack.id).where(CaptionTrack.automatic_of == recording.id,
                                                          CaptionTrack.published_version > 0))
    if edited is not None:  # a version saved in the caption editor is published: its indexed rows
        return CaptionSegment.track_id == edited
    owned = and_(CaptionSegment.recording_id == recording.id, CaptionSegment.track_id.is_(None))
    if recording.event_id is not None:
        latest = session.scalar(select(Recording.id).where(Recording.event_id == recording.event_id)
                                .order_by(Recording.created_at.desc(), Recording.id.desc()).limit(1))
        if latest == recording.id:
            return or_(owned, and_(CaptionSegment.event_id == recording.event_id, CaptionSegment.recording_id.is_(None),
                                   CaptionSegment.track_id.is_(None)))
    return owned


def captions_of(session: Session, recording: Recording, language: str | None = None) -> list[CaptionSegment]:
    """Caption rows of the recording's automatic track (``vod/tracks.py`` reads the others)."""
    query = select(CaptionSegment).where(automatic_condition(session, recording))
    if language:
        query = query.where(CaptionSegment.language == language)
    return list(session.scalars(query.order_by(CaptionSegment.start_seconds, CaptionSegment.id)))


def _author(names: dict[int, str], user_id: int | None, guest_name: str | None) -> str:
    if user_id is not None:
        return names.get(user_id, "")
    return guest_name or "guest"


def _window(recording: Recording) -> tuple[datetime, datetime]:
    # No end known (an import, a run still open): no upper bound (datetime.max + 5 s would overflow).
    end = recording.ended_at + timedelta(seconds=5) if recording.ended_at else datetime.max.replace(tzinfo=recording.created_at.tzinfo)
    return recording.created_at - timedelta(seconds=5), end


def _shift(value: float | None, offset: float, duration: float) -> float | None:
    if value is None:
        return None
    return round(min(max(value - offset, 0.0), duration), 3)


def replay_data(session: Session, recording: Recording, segments: Sequence[Segment], offset: float) -> dict[str, Any]:
    """Captions, chapters, chat and answered questions with their times on the playable view."""
    duration = recording.duration_seconds
    found = anchors(segments)
    start, end = _window(recording)

    def place(at: datetime) -> float | None:
        return _shift(timeline_of_wall(found, at.timestamp()), offset, duration)

    def visible(start_s: float, end_s: float) -> bool:
        return end_s > offset and start_s - offset < duration

    data: dict[str, Any] = {
        "captions": [
            {"start": round(max(c.start_seconds - offset, 0.0), 3), "end": round(c.end_seconds - offset, 3),
             "text": c.text, "language": c.language}
            for c in captions_of(session, recording) if visible(c.start_seconds, c.end_seconds)
        ],
        "chapters": [
            {"id": c.id, "title": c.title, "start": round(max(c.offset_seconds - offset, 0.0), 3),
             "recorded_offset": c.offset_seconds}
            for c in chapters_of(session, recording) if visible(c.offset_seconds, c.offset_seconds + 1e-3)
        ],
        "chat": [],
        "questions": [],
    }
    if recording.event_id is None:
        return data
    messages = list(session.scalars(
        select(ChatMessage).where(ChatMessage.event_id == recording.event_id, ChatMessage.deleted_at.is_(None),
                                  ChatMessage.created_at >= start, ChatMessage.created_at <= end)
        .order_by(ChatMessage.created_at, ChatMessage.id)))
    questions = list(session.scalars(
        select(Question).where(Question.event_id == recording.event_id, Question.state == QuestionState.ANSWERED,
                               Question.created_at >= start, Question.created_at <= end)
        .order_by(Question.created_at, Question.id)))
    user_ids = {m.user_id for m in messages if m.user_id} | {q.user_id for q in questions if q.user_id}
    names = {u.id: u.display_name or u.username for u in session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    data["chat"] = [
        {"id": m.id, "author": _author(names, m.user_id, m.guest_name), "text": m.text, "offset": place(m.created_at),
         "created_at": m.created_at.isoformat()}
        for m in messages
    ]
    data["questions"] = [
        {"id": q.id, "author": _author(names, q.user_id, q.guest_name), "text": q.text, "votes": q.votes,
         "offset": place(q.created_at), "answered_offset": place(q.answered_at) if q.answered_at else None}
        for q in questions
    ]
    return data


def view_cues(rows: Iterable[CaptionSegment], recording: Recording, offset: float) -> list[webvtt.Cue]:
    """Caption rows as cues timed on the playable view (trim applied), those cut away left out."""
    duration = recording.duration_seconds
    return [
        webvtt.Cue(max(c.start_seconds - offset, 0.0), min(c.end_seconds - offset, duration), c.text)
        for c in rows
        if c.end_seconds > offset and c.start_seconds - offset < duration
    ]


def caption_cues(session: Session, recording: Recording, offset: float, language: str | None) -> list[webvtt.Cue]:
    """The recording's automatic captions timed on its playable view (trim applied)."""
    return view_cues(captions_of(session, recording, language), recording, offset)


def captions_vtt(session: Session, recording: Recording, offset: float, language: str | None) -> str:
    return webvtt.render(caption_cues(session, recording, offset, language))


def transcript(cues: Sequence[webvtt.Cue], kind: str) -> str:
    """The transcript to download: ``vtt`` (WebVTT), ``srt`` (SubRip) or ``txt`` (plain text, one cue a
    line, a blank line where the speaker paused for more than ``PARAGRAPH_PAUSE`` seconds)."""
    if kind == "vtt":
        return webvtt.render(cues)
    if kind == "srt":
        return srt.render(cues)
    lines: list[str] = []
    previous_end: float | None = None
    for cue in cues:
        text = " ".join(cue.text.split())
        if not text:
            continue
        if previous_end is not None and cue.start - previous_end > PARAGRAPH_PAUSE:
            lines.append("")
        lines.append(text)
        previous_end = cue.end
    return "\n".join(lines) + ("\n" if lines else "")


PARAGRAPH_PAUSE = 3.0


def chapters_vtt(session: Session, recording: Recording, offset: float) -> str:
    chapters = [(c.offset_seconds - offset, c.title) for c in chapters_of(session, recording)]
    return webvtt.render(chapter_cues(chapters, recording.duration_seconds))


def chapter_cues(chapters: Iterable[tuple[float, str]], duration: float) -> list[webvtt.Cue]:
    """Chapters as cues: each lasts until the next one starts (the last until the end)."""
    ordered = sorted((max(0.0, offset), title) for offset, title in chapters if offset < duration)
    cues = []
    for i, (offset, title) in enumerate(ordered):
        end = ordered[i + 1][0] if i + 1 < len(ordered) else duration
        cues.append(webvtt.Cue(offset, max(end, offset + 0.001), title if title.strip() else "…", identifier=f"chapter-{i + 1}"))
    return cues
