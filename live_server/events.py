"""Events: the catalog entries lecturers schedule and stream to, with their stream keys."""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime, timezone
from typing import Any, Collection, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, object_session

from live_server import access, accounts, security
from live_server.errors import Conflict, Forbidden, NotFound, Unprocessable
from live_server.access import Decision, Person, can_view, event_target
from live_server.models import Event, EventState, Role, StreamKey, User, Visibility, new_access_secret, utcnow

KEY_ID_LEN = 12

_LANG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


class _EventFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str | None = Field(None, max_length=20000)
    slug: str | None = Field(None, min_length=3, max_length=120, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
    visibility: Visibility | None = None
    password: str | None = Field(None, min_length=4, max_length=200)
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    caption_language: str | None = Field(None, pattern=_LANG)
    caption_vocabulary: str | None = Field(None, max_length=20000)
    dvr: bool | None = None
    record: bool | None = None
    abr: bool | None = None
    chat_enabled: bool | None = None
    guests_allowed: bool | None = None
    attendance_required: bool | None = None  # logged-in viewers listed for the owner (issue 21); viewers are told

    @model_validator(mode="after")
    def _times(self) -> "_EventFields":
        for name in ("scheduled_start", "scheduled_end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-12-01T10:00:00+01:00)")
            if value is not None:
                setattr(self, name, value.astimezone(timezone.utc))
        if self.scheduled_start and self.scheduled_end and self.scheduled_end <= self.scheduled_start:
            raise ValueError("scheduled_end must be after scheduled_start")
        return self


class EventCreate(_EventFields):
    title: str = Field(min_length=1, max_length=200)


class EventUpdate(_EventFields):
    title: str | None = Field(None, min_length=1, max_length=200)


def parse_payload(model: type[BaseModel], data: Any) -> Any:
    """Validate a JSON body; unknown or invalid fields are a 422 listing every problem."""
    if not isinstance(data, dict):
        raise Unprocessable("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(p) for p in err["loc"]),
                "message": "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
        raise Unprocessable(f"invalid event: {summary}", details=details) from None


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:80].strip("-") or "event"


def _unique_slug(session: Session, wanted: str, explicit: bool) -> str:
    taken = session.scalar(select(Event.id).where(Event.slug == wanted)) is not None
    if not taken:
        return wanted
    if explicit:
        raise Conflict(f"the slug {wanted!r} is already used by another event")
    while True:
        candidate = f"{wanted}-{secrets.token_hex(3)}"
        if session.scalar(select(Event.id).where(Event.slug == candidate)) is None:
            return candidate


def can_manage(user: User | None, event: Event) -> bool:
    """May ``user`` edit this event (``access.can_manage``: owners, admins, the instructors of its course).
    Their courses are read in the event's session, and only for a course-only event they do not own."""
    target = event_target(event)
    person = Person.of(user)
    if user is None or access.owns(person, target) or target.course_id is None or target.visibility != Visibility.COURSE:
        return access.owns(person, target)
    session = object_session(event)
    return session is not None and access.can_manage(accounts.person_in_session(session, user), target)


def owns(user: User | None, event: Event) -> bool:
    """Owners and admins (``access.owns``): deleting the event, putting it in a course."""
    return access.owns(Person.of(user), event_target(event))


def can_create_events(user: User) -> bool:
    return user.role in (Role.ADMIN, Role.LECTURER)


def _apply(event: Event, data: _EventFields) -> None:
    granted_by = (event.visibility, event.password_hash)
    for name in data.model_fields_set:
        if name in ("password", "slug"):
            continue
        value = getattr(data, name)
        if value is None and name in ("title", "visibility", "dvr", "record", "abr", "chat_enabled", "guests_allowed",
                                      "description", "caption_vocabulary", "attendance_required"):
            raise Unprocessable(f"invalid event: {name}: may not be null", details=[{"field": name, "message": "may not be null"}])
        setattr(event, name, value)
    if "password" in data.model_fields_set:
        event.password_hash = security.hash_password(data.password) if data.password else None
    if event.visibility == Visibility.PASSWORD and not event.password_hash:
        raise Unprocessable(
            "invalid event: password: required when visibility is 'password'",
            details=[{"field": "password", "message": "required when visibility is 'password'"}],
        )
    if event.visibility == Visibility.COURSE and event.lti_context_id is None:
        raise Unprocessable(
            "invalid event: visibility: 'course' needs the event added to a course from the LMS (LTI deep linking)",
            details=[{"field": "visibility", "message": "needs the event added to a course from the LMS"}],
        )
    if event.id is not None and (event.visibility, event.password_hash) != granted_by:
        event.access_secret = new_access_secret()  # every media pass granted before is void (access.Target)


def create_event(session: Session, owner: User, data: EventCreate) -> Event:
    if not can_create_events(owner):
        raise Forbidden("only lecturers and admins can create events")
    unlisted = data.visibility == Visibility.UNLISTED and data.slug is None
    wanted = data.slug or (unlisted_slug(data.title) if unlisted else slugify(data.title))
    event = Event(
        title=data.title,
        owner_id=owner.id,
        slug=_unique_slug(session, wanted, explicit=data.slug is not None),
        description="",
    )
    _apply(event, data)
    session.add(event)
    session.flush()
    issue_stream_key(session, event)
    return event


def update_event(session: Session, event: Event, data: EventUpdate) -> Event:
    if data.slug is not None and data.slug != event.slug:
        event.slug = _unique_slug(session, data.slug, explicit=True)
    was_unlisted = event.visibility == Visibility.UNLISTED
    _apply(event, data)
    if event.visibility == Visibility.UNLISTED and not was_unlisted and data.slug is None:
        # "only with the link": a link known while the event was listed (or guessable from its title) stops working
        event.slug = _unique_slug(session, unlisted_slug(event.title), explicit=False)
    event.updated_at = utcnow()
    session.flush()
    return event


def unlisted_slug(title: str) -> str:
    """An unlisted event's slug: readable, with 64 random bits so that it cannot be found by guessing."""
    return f"{slugify(title)[:60].strip('-')}-{secrets.token_hex(8)}"


def get_event(session: Session, ref: str | int, user: User | None = None) -> Event:
    """Look an event up by numeric id or slug.

    An unlisted event is only found by its slug (the link), except by its owner and admins: numeric
    ids are sequential, so anyone could count through them.
    """
    event: Event | None
    numeric = isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit())
    if numeric:
        event = session.get(Event, int(ref)) if int(ref) < 2**63 else None
        if event is not None and event.visibility == Visibility.UNLISTED and not can_manage(user, event):
            event = None
    else:
        event = session.scalar(select(Event).where(Event.slug == ref))
    if event is None:
        raise NotFound("no such event")
    return event


def list_events(
    session: Session, user: User | None, state: EventState | None = None, limit: int = 100, title_contains: str | None = None,
    courses: Collection[int] = (),
) -> list[Event]:
    """Events ``user`` may see: theirs, the listed visibilities, and the course-only events of ``courses`` (the
    LTI contexts they launched from, as learners or instructors: ``access.can_view``; instructors manage them too)."""
    query = select(Event).order_by(Event.scheduled_start.is_(None), Event.scheduled_start, Event.id)
    if title_contains:
        escaped = title_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Event.title.ilike(f"%{escaped}%", escape="\\"))
    if user is None:
        query = query.where(Event.visibility.in_([Visibility.PUBLIC, Visibility.PASSWORD]))
    elif user.role != Role.ADMIN:
        query = query.where(
            or_(
                Event.owner_id == user.id,
                Event.visibility.in_([Visibility.PUBLIC, Visibility.PASSWORD, Visibility.AUTHENTICATED]),
                *([and_(Event.visibility == Visibility.COURSE, Event.lti_context_id.in_(sorted(courses)))] if courses else []),
            )
        )
    if state is not None:
        query = query.where(Event.state == state)
    return list(session.scalars(query.limit(limit)))


def ensure_readable(user: User | None, event: Event) -> None:
    """Who may see an event's description (``access.can_view``; a password event's is shown, locked):
    private ones answer 404 to outsiders, not 403, so they cannot be probed."""
    session = object_session(event)
    person = accounts.person_in_session(session, user) if session is not None and event.visibility == Visibility.COURSE \
        else Person.of(user)
    if can_view(person, event_target(event)) in (Decision.LOGIN_REQUIRED, Decision.NOT_FOUND):
        raise NotFound("no such event")


def ensure_manageable(user: User, event: Event) -> None:
    if can_manage(user, event):
        return
    if event.visibility in (Visibility.UNLISTED,) or (event.visibility == Visibility.AUTHENTICATED and user is None):
        raise NotFound("no such event")
    ensure_readable(user, event)  # a course-only event stays unknown to those outside its course
    raise Forbidden("you can only manage your own events or your course's")


def ensure_deletable(user: User, event: Event) -> None:
    """Deleting is the owner's (or an admin's): a course's other instructors edit it, they do not remove it."""
    ensure_manageable(user, event)
    if not owns(user, event):
        raise Forbidden("only the event's owner or an admin can delete it")


# --- stream keys --------------------------------------------------------------------------


STREAM_KEY_CIPHER = "stream_key_cipher"  # Session.info entry set by Database (live_server/db.py)


def _cipher(session: Session) -> security.StreamKeyCipher:
    cipher = session.info.get(STREAM_KEY_CIPHER)
    if cipher is None:
        raise RuntimeError("stream keys are sealed with the server secret: open the Database with stream_key_cipher")
    return cipher  # type: ignore[no-any-return]


def issue_stream_key(session: Session, event: Event) -> str:
    """A new key for the event (returned; stored sealed); any previous one is revoked at once (rotation)."""
    now = utcnow()
    for old in session.scalars(select(StreamKey).where(StreamKey.event_id == event.id, StreamKey.revoked_at.is_(None))):
        old.revoked_at = now
    key_id = secrets.token_hex(KEY_ID_LEN // 2)
    secret = key_id + secrets.token_hex(20)
    session.add(StreamKey(event_id=event.id, key_id=key_id, secret=_cipher(session).seal(key_id, secret)))
    session.flush()
    return secret


def current_stream_key(session: Session, event: Event) -> StreamKey | None:
    return session.scalar(
        select(StreamKey).where(StreamKey.event_id == event.id, StreamKey.revoked_at.is_(None)).order_by(StreamKey.id.desc())
    )


def revealed_stream_key(session: Session, event: Event) -> str | None:
    """The event's current stream key in clear, for its owner's eyes only (API, dashboard)."""
    row = current_stream_key(session, event)
    return _cipher(session).open(row.key_id, row.secret) if row is not None else None


def event_for_stream_key(session: Session, presented: str) -> Event | None:
    """The event a presented stream key publishes to; None for unknown or revoked keys.

    The public key id selects the row; the whole key is then compared in constant time.
    """
    if len(presented) < KEY_ID_LEN + 8 or len(presented) > 200:
        return None
    row = session.scalar(select(StreamKey).where(StreamKey.key_id == presented[:KEY_ID_LEN]))
    if row is None or row.revoked_at is not None:
        return None
    try:
        secret = _cipher(session).open(row.key_id, row.secret)
    except ValueError:
        return None
    return row.event if security.constant_time_equals(secret, presented) else None


def event_json(
    event: Event,
    *,
    base_url: str,
    rtmp_url: str,
    stream_key: str | None = None,
    include_stream: bool = False,
    viewers: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": event.id,
        "slug": event.slug,
        "title": event.title,
        "description": event.description,
        "owner": {"id": event.owner.id, "username": event.owner.username, "display_name": event.owner.display_name},
        "visibility": event.visibility.value,
        "scheduled_start": event.scheduled_start.isoformat() if event.scheduled_start else None,
        "scheduled_end": event.scheduled_end.isoformat() if event.scheduled_end else None,
        "state": event.state.value,
        "caption_language": event.caption_language,
        "dvr": event.dvr,
        "record": event.record,
        "abr": event.abr,
        "chat_enabled": event.chat_enabled,
        "guests_allowed": event.guests_allowed,
        "attendance_required": event.attendance_required,
        "started_at": event.started_at.isoformat() if event.started_at else None,
        "ended_at": event.ended_at.isoformat() if event.ended_at else None,
        "created_at": event.created_at.isoformat(),
        "updated_at": event.updated_at.isoformat(),
        "page_url": f"{base_url}/events/{event.slug}",
        "playback_url": f"{base_url}/live/{event.slug}/master.m3u8",
    }
    if viewers is not None:
        data["viewers"] = viewers
    if include_stream:
        data["stream"] = {
            "rtmp_url": rtmp_url,
            "stream_key": stream_key,
            "publish_url": f"{rtmp_url}/{stream_key}" if stream_key else None,
            "whip_url": f"{base_url}/whip",
            "whip_bearer_token": stream_key,
        }
    return data
