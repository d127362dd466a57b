"""Who may see and manage a recording, and how it looks in the API.

The rule is the one of ``live_server/access.py``, as for events (``live_server/events.py``): owners,
admins and the instructors of a course-only recording's course manage it (``access.can_manage``:
edit, chapters, trim, transcription); deleting stays its owner's or an admin's (``access.owns``).
Authenticated recordings answer 404 to anonymous callers; only ready recordings are shown to non-managers.
This module only reads the catalog rows the rule needs.
"""

from __future__ import annotations

import re
from typing import Any, Collection

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session, object_session

from live_server import access, accounts
from live_server.access import Decision, Person, can_view, recording_target
from live_server.errors import Forbidden, NotFound
from live_server.models import Event, Recording, RecordingState, Role, User, Visibility

PUBLIC_REF = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def manages(user: User | None, recording: Recording, person: Person | None = None) -> bool:
    """``access.can_manage`` for a recording row. The user's courses (``person``, else read in the row's session)
    and the event whose course a recording may follow are only needed for a course-only recording they do not own."""
    plain = Person.of(user)
    target = recording_target(recording, None)
    if user is None or access.owns(plain, target) or recording.visibility != Visibility.COURSE:
        return access.owns(plain, target)
    session = object_session(recording)
    if session is None:
        return False
    event = session.get(Event, recording.event_id) \
        if recording.lti_context_id is None and recording.event_id is not None else None
    return access.can_manage(person or accounts.person_in_session(session, user), recording_target(recording, event))


def owns(user: User | None, recording: Recording) -> bool:
    """Owners and admins (``access.owns``): deleting the recording."""
    return access.owns(Person.of(user), recording_target(recording, None))


def ensure_readable(user: User | None, recording: Recording) -> None:
    """Who may see a recording's description (``access.can_view``; a password one's is shown, locked)."""
    session = object_session(recording)
    if session is not None and recording.visibility == Visibility.COURSE:  # its course may be its event's
        event = session.get(Event, recording.event_id) if recording.event_id is not None else None
        decision = can_view(accounts.person_in_session(session, user), recording_target(recording, event))
    else:
        decision = can_view(Person.of(user), recording_target(recording, None))
    if decision in (Decision.LOGIN_REQUIRED, Decision.NOT_FOUND):
        raise NotFound("no such recording")


def find(session: Session, ref: str, user: User | None) -> Recording:
    """A recording by its id or its public id; an unlisted one only by its public id (the link), except
    for its owner and admins: ids are sequential, so anyone could count through them."""
    row: Recording | None = None
    if ref.isascii() and ref.isdigit():
        row = session.get(Recording, int(ref)) if len(ref) < 19 else None
        if row is not None and row.visibility == Visibility.UNLISTED and not manages(user, row):
            row = None
    elif PUBLIC_REF.match(ref):
        row = session.scalar(select(Recording).where(Recording.public_id == ref))
    if row is None:
        raise NotFound("no such recording")
    return row


def ensure_manageable(user: User | None, recording: Recording) -> None:
    """Managers pass; others who may see it get 403, the rest 404 (a course-only recording is not told to outsiders)."""
    if manages(user, recording):
        return
    ensure_readable(user, recording)
    raise Forbidden("you can only manage your own recordings or your course's")


def ensure_deletable(user: User | None, recording: Recording) -> None:
    """Deleting is the owner's (or an admin's): a course's other instructors edit it, they do not remove it."""
    ensure_manageable(user, recording)
    if not owns(user, recording):
        raise Forbidden("only the recording's owner or an admin can delete it")


def listed(user: User | None, courses: Collection[int] = ()) -> Select[tuple[Recording]]:
    """Recordings a caller finds in lists and search (unlisted ones only by their owner); ``courses``: the LTI
    contexts they launched from, whose ready course-only recordings they may see (``access.can_view``; a
    recording's course is its own, else its event's, as ``access.recording_target`` says)."""
    query = select(Recording)
    if user is not None and user.role == Role.ADMIN:
        return query
    shown = [Visibility.PUBLIC, Visibility.PASSWORD]
    if user is not None:
        shown.append(Visibility.AUTHENTICATED)
    ready = Recording.state == RecordingState.READY
    visible: list[ColumnElement[bool]] = [Recording.visibility.in_(shown) & ready]
    if user is not None:
        visible.append(Recording.owner_id == user.id)
        if courses:
            ids = sorted(courses)
            of_course = or_(Recording.lti_context_id.in_(ids), Recording.lti_context_id.is_(None) & Recording.event_id.in_(
                select(Event.id).where(Event.lti_context_id.in_(ids))))
            visible.append((Recording.visibility == Visibility.COURSE) & ready & of_course)
    return query.where(or_(*visible))


def recording_json(recording: Recording, base_url: str, manage: bool) -> dict[str, Any]:
    rid = recording.public_ref  # unlisted: the unguessable public id, in every URL
    api = f"{base_url}/api/v1/recordings/{rid}"
    data: dict[str, Any] = {
        "id": recording.id,
        "event_id": recording.event_id,
        "owner_id": recording.owner_id,
        "title": recording.title,
        "description": recording.description,
        "visibility": recording.visibility.value,
        "state": recording.state.value,
        "duration_seconds": recording.duration_seconds,
        "size_bytes": recording.size_bytes,
        "discontinuities": recording.discontinuities,
        "trim_start": recording.trim_start,
        "trim_end": recording.trim_end,
        "created_at": recording.created_at.isoformat(),
        "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
        "ready_at": recording.ready_at.isoformat() if recording.ready_at else None,
        "page_url": f"{base_url}/recordings/{rid}",
        "playback_url": f"{base_url}/vod/{rid}/master.m3u8",
        "thumbnail_url": f"{base_url}/vod/{rid}/thumbnail.jpg" if recording.thumbnail_path else None,
        "captions_url": f"{api}/captions.vtt",
        "chapters_url": f"{api}/chapters.vtt",
        "replay_url": f"{api}/replay",
    }
    if manage:
        data["download_url"] = f"{api}/download.mp4"
        data["media_path"] = recording.media_path
        data["error"] = recording.error
    return data
