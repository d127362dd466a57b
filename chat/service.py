"""Chat and Q&A rules, and the catalog units of work behind them (no Socket.IO here).

Who may read, post and moderate follows the event: its visibility, whether guests are allowed,
its owner, the admins and its moderators. Units of work take a SQLAlchemy ``Session`` and are
run by ``Database.run``; they re-check authority themselves, so a forged moderator action from a
client fails here even if a connection's cached role were stale.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from live_server.access import Decision, Target, event_target
from live_server.accounts import INSTRUCTOR
from live_server.models import (
    ChatBan,
    ChatMessage,
    ChatSettings,
    Event,
    EventModerator,
    EventState,
    LtiMembership,
    Question,
    QuestionState,
    QuestionVote,
    Role,
    User,
    Visibility,
    utcnow,
)

NICKNAME_MAX = 40
GUEST_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# Control characters other than tab and newline have no place in chat text (and can break terminals and logs).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_SLOW_MODE_SECONDS = 3600


class ChatError(Exception):
    """A refused chat action; ``code`` and the message go to that client only."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self, event: str | None = None) -> dict[str, object]:
        data: dict[str, object] = {"code": self.code, "message": self.message}
        if event is not None:
            data["event"] = event
        return data


# --- who is talking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Author:
    """Someone who may post: a user, or a guest known by the hash of the token their browser keeps."""

    kind: Literal["user", "guest"]
    ident: str  # user id, or guest id
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.ident}"

    @property
    def user_id(self) -> int | None:
        return int(self.ident) if self.kind == "user" else None

    @property
    def guest_id(self) -> str | None:
        return self.ident if self.kind == "guest" else None

    def json(self) -> dict[str, str]:
        return {"key": self.key, "name": self.name, "kind": self.kind}


def user_author(user: User) -> Author:
    return Author("user", str(user.id), user.display_name or user.username)


def guest_id_for(token: str) -> str:
    """The public handle of a guest: their token stays secret, messages show its hash."""
    return hashlib.blake2b(token.encode(), digest_size=8, person=b"live-guest").hexdigest()


def new_guest_token() -> str:
    return secrets.token_hex(16)


def clean_nickname(raw: str) -> str:
    name = " ".join(_CONTROL.sub("", raw).split())
    if not name:
        raise ChatError("bad_nickname", "a nickname is needed to chat as a guest")
    if len(name) > NICKNAME_MAX:
        raise ChatError("bad_nickname", f"a nickname has at most {NICKNAME_MAX} characters")
    return name


def clean_text(raw: str, max_length: int) -> str:
    """Plain text as typed (markup stays literal text); control characters dropped, blank refused."""
    text = _CONTROL.sub("", raw).strip()
    if not text:
        raise ChatError("empty", "the message is empty")
    if len(text) > max_length:
        raise ChatError("too_long", f"a message has at most {max_length} characters (this one has {len(text)})")
    return text


# --- the room --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomSettings:
    open: bool = True
    slow_mode_seconds: int = 0
    qa_premoderation: bool = False

    def json(self) -> dict[str, Any]:
        return {"open": self.open, "slow_mode_seconds": self.slow_mode_seconds, "qa_premoderation": self.qa_premoderation}


@dataclass(frozen=True)
class Room:
    """What the chat needs to know about an event, loaded in one unit of work and cached briefly."""

    event_id: int
    slug: str
    title: str
    owner_id: int
    visibility: Visibility
    chat_enabled: bool
    guests_allowed: bool
    live: bool
    started_at: datetime | None
    settings: RoomSettings = field(default_factory=RoomSettings)
    access: Target | None = None  # the event's access facts (live_server/access.py)

    @property
    def name(self) -> str:
        return f"event:{self.event_id}"

    @property
    def moderators_room(self) -> str:
        return f"mods:{self.event_id}"

    def personal_room(self, author_key: str) -> str:
        return f"who:{self.event_id}:{author_key}"

    @property
    def guests_may_join(self) -> bool:
        return self.guests_allowed and self.visibility != Visibility.AUTHENTICATED


def _settings_of(session: Session, event_id: int) -> RoomSettings:
    row = session.get(ChatSettings, event_id)
    if row is None:
        return RoomSettings()
    return RoomSettings(row.open, row.slow_mode_seconds, row.qa_premoderation)


def load_room(session: Session, ref: str | int) -> Room:
    event: Event | None
    if isinstance(ref, int) or ref.isdigit():
        event = session.get(Event, int(ref))
    else:
        event = session.scalar(select(Event).where(Event.slug == ref))
    if event is None:
        raise ChatError("unknown_event", "no such event")
    return Room(
        event.id, event.slug, event.title, event.owner_id, event.visibility, event.chat_enabled,
        event.guests_allowed, event.state == EventState.LIVE, event.started_at, _settings_of(session, event.id),
        event_target(event),
    )


def is_moderator(session: Session, event_id: int, owner_id: int, user: User | None) -> bool:
    """Owner, admins, the event's moderators and, for a course-only event, the instructors of its LMS course
    (as launched) moderate its chat; guests and anonymous readers never do."""
    if user is None:
        return False
    if user.role == Role.ADMIN or user.id == owner_id:
        return True
    if session.scalar(
        select(EventModerator.id).where(EventModerator.event_id == event_id, EventModerator.user_id == user.id)
    ) is not None:
        return True
    return session.scalar(
        select(LtiMembership.id).join(Event, Event.lti_context_id == LtiMembership.context_id)
        .where(Event.id == event_id, Event.visibility == Visibility.COURSE, LtiMembership.user_id == user.id,
               LtiMembership.role == INSTRUCTOR)
    ) is not None


def _require_moderator(session: Session, room: Room, user: User | None) -> User:
    if user is None or not is_moderator(session, room.event_id, room.owner_id, user):
        raise ChatError("forbidden", "only the event's owner and moderators can do that")
    return user


def admission_error(room: Room, *, moderator: bool, decision: Decision) -> ChatError | None:
    """May this connection read the event's chat at all? Who may see the event (``access.can_view``), if it has a chat."""
    if moderator:
        return None
    if not room.chat_enabled:
        return ChatError("chat_disabled", "this event has no chat")
    if decision is Decision.LOGIN_REQUIRED:
        return ChatError("login_required", "log in to join this event's chat")
    if decision is Decision.PASSWORD_REQUIRED:
        return ChatError("password_required", "open the event page and enter its password first")
    if decision is Decision.NOT_FOUND:
        return ChatError("unknown_event", "no such event")
    return None


def active_ban(session: Session, event_id: int, target: str) -> ChatBan | None:
    return session.scalar(
        select(ChatBan).where(ChatBan.event_id == event_id, ChatBan.target == target, ChatBan.lifted_at.is_(None)).limit(1)
    )


def check_not_banned(session: Session, event_id: int, author: Author) -> None:
    ban = active_ban(session, event_id, author.key)
    if ban is not None:
        reason = f": {ban.reason}" if ban.reason else ""
        raise ChatError("banned", f"you are banned from this chat{reason}")


# --- messages --------------------------------------------------------------------------------


def stream_offset(room_live: bool, started_at: datetime | None, at: datetime) -> float | None:
    """Seconds since the event's live run started, so the replay can show the message at the right moment."""
    if not room_live or started_at is None or at < started_at:
        return None
    return round((at - started_at).total_seconds(), 3)


def message_json(row: ChatMessage, author_name: str, author_key: str, author_kind: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "text": row.text,
        "author": {"key": author_key, "name": author_name, "kind": author_kind},
        "at": row.created_at.isoformat(),
        "offset": row.stream_offset,
    }


def post_message(session: Session, event_id: int, author: Author, text: str, moderator: bool) -> dict[str, Any]:
    """Persist one message; the chat must be open (for non-moderators) and the author not banned."""
    event = session.get(Event, event_id)
    if event is None:
        raise ChatError("unknown_event", "this event no longer exists")
    if not moderator and not _settings_of(session, event_id).open:
        raise ChatError("chat_closed", "the chat is closed")
    check_not_banned(session, event_id, author)
    now = utcnow()
    row = ChatMessage(
        event_id=event_id, user_id=author.user_id, guest_id=author.guest_id,
        guest_name=author.name if author.kind == "guest" else None, text=text, created_at=now,
        stream_offset=stream_offset(event.state == EventState.LIVE, event.started_at, now),
    )
    session.add(row)
    session.flush()
    return message_json(row, author.name, author.key, author.kind)


def _rows_json(session: Session, rows: list[ChatMessage], include_deleted: bool = False) -> list[dict[str, Any]]:
    user_ids = {r.user_id for r in rows if r.user_id is not None}
    names = {u.id: u.display_name or u.username for u in session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    out = []
    for r in rows:
        if r.user_id is not None:
            item = message_json(r, names.get(r.user_id, "?"), f"user:{r.user_id}", "user")
        elif r.guest_id is not None:
            item = message_json(r, r.guest_name or "guest", f"guest:{r.guest_id}", "guest")
        else:
            item = message_json(r, r.guest_name or "former user", "user:deleted", "user")
        if include_deleted:
            item["deleted_at"] = r.deleted_at.isoformat() if r.deleted_at else None
            item["deleted_by"] = r.deleted_by_id
        out.append(item)
    return out


def history(session: Session, event_id: int, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` visible messages, oldest first."""
    if limit <= 0:
        return []
    rows = list(session.scalars(
        select(ChatMessage).where(ChatMessage.event_id == event_id, ChatMessage.deleted_at.is_(None))
        .order_by(ChatMessage.id.desc()).limit(limit)
    ))
    rows.reverse()
    return _rows_json(session, rows)


def transcript(session: Session, event_id: int, include_deleted: bool, limit: int = 20000) -> list[dict[str, Any]]:
    """Every message of the event in order (for the replay, and with deletions for moderators)."""
    query = select(ChatMessage).where(ChatMessage.event_id == event_id)
    if not include_deleted:
        query = query.where(ChatMessage.deleted_at.is_(None))
    rows = list(session.scalars(query.order_by(ChatMessage.id).limit(limit)))
    return _rows_json(session, rows, include_deleted)


def delete_message(session: Session, room: Room, user: User | None, message_id: int) -> int:
    """Hide a message from everyone; the row stays with who deleted it and when (the audit trail)."""
    moderator = _require_moderator(session, room, user)
    row = session.get(ChatMessage, message_id)
    if row is None or row.event_id != room.event_id:
        raise ChatError("not_found", "no such message in this chat")
    if row.deleted_at is None:
        row.deleted_at = utcnow()
        row.deleted_by_id = moderator.id
    return row.id


def _target_name(session: Session, event_id: int, target: str) -> str:
    kind, _, ident = target.partition(":")
    if kind == "user" and ident.isdigit():
        user = session.get(User, int(ident))
        if user is None:
            raise ChatError("not_found", "no such user")
        return user.display_name or user.username
    if kind == "guest" and re.fullmatch(r"[0-9a-f]{16}", ident):
        name = session.scalar(
            select(ChatMessage.guest_name).where(ChatMessage.event_id == event_id, ChatMessage.guest_id == ident).limit(1)
        )
        return name or "guest"
    raise ChatError("bad_request", "author must look like 'user:<id>' or 'guest:<id>'")


def ban(session: Session, room: Room, user: User | None, target: str, reason: str) -> dict[str, Any]:
    moderator = _require_moderator(session, room, user)
    name = _target_name(session, room.event_id, target)
    if target.startswith("user:") and is_moderator(session, room.event_id, room.owner_id, session.get(User, int(target[5:]))):
        raise ChatError("forbidden", "moderators cannot be banned; remove them as moderators first")
    existing = active_ban(session, room.event_id, target)
    if existing is None:
        session.add(ChatBan(event_id=room.event_id, target=target, name=name, reason=reason, banned_by_id=moderator.id))
        session.flush()
    return {"author": target, "name": name, "reason": reason}


def unban(session: Session, room: Room, user: User | None, target: str) -> dict[str, Any]:
    moderator = _require_moderator(session, room, user)
    now = utcnow()
    lifted = 0
    for row in session.scalars(
        select(ChatBan).where(ChatBan.event_id == room.event_id, ChatBan.target == target, ChatBan.lifted_at.is_(None))
    ):
        row.lifted_at, row.lifted_by_id = now, moderator.id
        lifted += 1
    if not lifted:
        raise ChatError("not_found", "that author is not banned")
    return {"author": target}


def update_settings(session: Session, room: Room, user: User | None, changes: dict[str, Any]) -> RoomSettings:
    moderator = _require_moderator(session, room, user)
    row = session.get(ChatSettings, room.event_id)
    if row is None:
        row = ChatSettings(event_id=room.event_id, open=True, slow_mode_seconds=0, qa_premoderation=False)
        session.add(row)
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_by_id = moderator.id
    row.updated_at = utcnow()
    session.flush()
    return RoomSettings(row.open, row.slow_mode_seconds, row.qa_premoderation)


# --- questions -------------------------------------------------------------------------------


VISIBLE_STATES = (QuestionState.APPROVED, QuestionState.ANSWERED)


def question_json(session: Session, q: Question) -> dict[str, Any]:
    if q.user_id is not None:
        user = session.get(User, q.user_id)
        author = {"key": f"user:{q.user_id}", "name": (user.display_name or user.username) if user else "?", "kind": "user"}
    else:
        author = {"key": f"guest:{q.guest_id}", "name": q.guest_name or "guest", "kind": "guest"}
    return {
        "id": q.id,
        "text": q.text,
        "author": author,
        "state": q.state.value,
        "pinned": q.pinned,
        "votes": q.votes,
        "at": q.created_at.isoformat(),
        "offset": q.stream_offset,
        "answered_at": q.answered_at.isoformat() if q.answered_at else None,
    }


def ask(session: Session, event_id: int, author: Author, text: str) -> dict[str, Any]:
    event = session.get(Event, event_id)
    if event is None:
        raise ChatError("unknown_event", "this event no longer exists")
    check_not_banned(session, event_id, author)
    settings = _settings_of(session, event_id)
    now = utcnow()
    q = Question(
        event_id=event_id, user_id=author.user_id, guest_id=author.guest_id,
        guest_name=author.name if author.kind == "guest" else None, text=text,
        state=QuestionState.PENDING if settings.qa_premoderation else QuestionState.APPROVED,
        pinned=False, votes=0, created_at=now,
        stream_offset=stream_offset(event.state == EventState.LIVE, event.started_at, now),
    )
    session.add(q)
    session.flush()
    return question_json(session, q)


def vote(session: Session, event_id: int, author: Author, question_id: int) -> dict[str, Any]:
    """One vote per person and question: the unique (question, voter) row makes a second one a no-op error."""
    q = session.get(Question, question_id)
    if q is None or q.event_id != event_id or q.state not in VISIBLE_STATES:
        raise ChatError("not_found", "no such question")
    check_not_banned(session, event_id, author)
    if session.scalar(select(QuestionVote.id).where(QuestionVote.question_id == q.id, QuestionVote.voter == author.key)):
        raise ChatError("already_voted", "you already voted for this question")
    try:
        with session.begin_nested():
            session.add(QuestionVote(question_id=q.id, voter=author.key))
    except IntegrityError:
        raise ChatError("already_voted", "you already voted for this question") from None
    q.votes = session.scalar(select(func.count(QuestionVote.id)).where(QuestionVote.question_id == q.id)) or 0
    session.flush()
    return question_json(session, q)


QuestionAction = Literal["approve", "reject", "answer", "unanswer", "pin", "unpin"]


def moderate_question(session: Session, room: Room, user: User | None, question_id: int, action: str) -> tuple[dict[str, Any], bool]:
    """Apply a moderator's action; returns the question and whether it was visible to everyone before."""
    _require_moderator(session, room, user)
    q = session.get(Question, question_id)
    if q is None or q.event_id != room.event_id:
        raise ChatError("not_found", "no such question")
    was_visible = q.state in VISIBLE_STATES
    if action == "approve":
        q.state = QuestionState.APPROVED
    elif action == "reject":
        q.state, q.pinned = QuestionState.REJECTED, False
    elif action == "answer":
        q.state, q.answered_at, q.pinned = QuestionState.ANSWERED, utcnow(), False
    elif action == "unanswer":
        q.state, q.answered_at = QuestionState.APPROVED, None
    elif action == "pin":
        if q.state not in VISIBLE_STATES:
            q.state = QuestionState.APPROVED
        q.pinned = True
    elif action == "unpin":
        q.pinned = False
    else:
        raise ChatError("bad_request", "action must be approve, reject, answer, unanswer, pin or unpin")
    session.flush()
    return question_json(session, q), was_visible


def questions(session: Session, event_id: int, include_hidden: bool, mine: str | None = None) -> list[dict[str, Any]]:
    """The question list: visible ones for everyone, plus pending/rejected for moderators and one's own."""
    rows = session.scalars(select(Question).where(Question.event_id == event_id).order_by(Question.id))
    out = []
    for q in rows:
        own = mine is not None and ((q.user_id is not None and mine == f"user:{q.user_id}") or mine == f"guest:{q.guest_id}")
        if q.state in VISIBLE_STATES or include_hidden or own:
            out.append(question_json(session, q))
    return out


def my_votes(session: Session, event_id: int, voter: str) -> list[int]:
    return list(session.scalars(
        select(QuestionVote.question_id).join(Question, Question.id == QuestionVote.question_id)
        .where(Question.event_id == event_id, QuestionVote.voter == voter)
    ))


# --- moderators (HTTP API) -------------------------------------------------------------------


def list_moderators(session: Session, event_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(User).join(EventModerator, EventModerator.user_id == User.id).where(EventModerator.event_id == event_id)
        .order_by(User.username)
    ).scalars()
    return [{"id": u.id, "username": u.username, "display_name": u.display_name} for u in rows]


def add_moderator(session: Session, event_id: int, username: str, by: User) -> dict[str, Any]:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ChatError("not_found", "no such user")
    exists = session.scalar(select(EventModerator.id).where(EventModerator.event_id == event_id, EventModerator.user_id == user.id))
    if exists is None:
        session.add(EventModerator(event_id=event_id, user_id=user.id, added_by_id=by.id))
        session.flush()
    return {"id": user.id, "username": user.username, "display_name": user.display_name}


def remove_moderator(session: Session, event_id: int, username: str) -> None:
    row = session.scalar(
        select(EventModerator).join(User, User.id == EventModerator.user_id)
        .where(EventModerator.event_id == event_id, User.username == username)
    )
    if row is None:
        raise ChatError("not_found", "that user is not a moderator of this event")
    session.delete(row)


# --- client payloads -------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JoinPayload(_Payload):
    event: StrictStr | StrictInt
    nickname: StrictStr | None = Field(None, max_length=200)
    guest_token: StrictStr | None = Field(None, max_length=64)


class TextPayload(_Payload):
    text: StrictStr


class IdPayload(_Payload):
    id: StrictInt


class AuthorPayload(_Payload):
    author: StrictStr = Field(max_length=100)
    reason: StrictStr = Field("", max_length=500)


class SettingsPayload(_Payload):
    open: StrictBool | None = None
    slow_mode_seconds: StrictInt | None = Field(None, ge=0, le=MAX_SLOW_MODE_SECONDS)
    qa_premoderation: StrictBool | None = None


class QuestionActionPayload(_Payload):
    id: StrictInt
    action: Literal["approve", "reject", "answer", "unanswer", "pin", "unpin"]


def parse(model: type[_Payload], data: Any) -> Any:
    """Validate a client payload; wrong shapes and types are a ``bad_request`` naming the fields."""
    if not isinstance(data, dict):
        raise ChatError("bad_request", "the payload must be an object")
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except (UnicodeEncodeError, TypeError, ValueError, RecursionError):
        # e.g. a lone surrogate ("\ud800"): valid JSON, not storable text
        raise ChatError("bad_request", "invalid payload: text must be valid Unicode (no lone surrogates)") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()[:5]
        )
        raise ChatError("bad_request", f"invalid payload: {problems}") from None
