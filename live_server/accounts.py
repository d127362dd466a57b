"""Accounts: users, login sessions, API tokens, and the failed-login limiter."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field, replace
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from live_server import security
from live_server.errors import Conflict, NotFound, Unprocessable
from live_server.models import (
    ApiToken, Event, EventModerator, LoginSession, LtiMembership, Recording, Role, User, Visibility, utcnow,
)

if TYPE_CHECKING:
    from live_server.access import Person

API_TOKEN_PREFIX = "lst_"


def create_user(
    session: Session,
    username: str,
    password: str,
    role: Role | str = Role.VIEWER,
    display_name: str = "",
    email: str | None = None,
) -> User:
    username = username.strip()
    if not username or len(username) > 80 or any(c.isspace() for c in username):
        raise Unprocessable("username must be 1-80 characters without spaces")
    if len(password) < 8:
        raise Unprocessable("password must be at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(
        username=username,
        password_hash=security.hash_password(password),
        role=Role(role),
        display_name=display_name or username,
        email=email,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user if the credentials match; same cost whether or not the account exists."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        security.dummy_password_check(password)
        return None
    return user if security.verify_password(password, user.password_hash) else None


@dataclass(frozen=True)
class Identity:
    """Who is making a request, and how they proved it."""

    user: User
    via: str  # "session" or "token"
    csrf_token: str | None = None
    session_id: int | None = None
    courses: frozenset[int] = frozenset()  # LTI contexts launched from (access.Person.courses)
    teaching: frozenset[int] = frozenset()  # those launched from as an instructor


def open_login_session(session: Session, user: User, max_age: int, remote: str | None) -> tuple[str, LoginSession]:
    token = security.new_token()
    row = LoginSession(
        token_hash=security.token_hash(token),
        user_id=user.id,
        csrf_token=security.new_token(24),
        expires_at=utcnow() + timedelta(seconds=max_age),
        remote_address=remote,
    )
    session.add(row)
    # Opportunistic clean-up keeps the table small without a scheduler.
    session.execute(delete(LoginSession).where(LoginSession.expires_at < utcnow()))
    session.flush()
    return token, row


def resolve_login_session(session: Session, token: str) -> Identity | None:
    row = session.scalar(select(LoginSession).where(LoginSession.token_hash == security.token_hash(token)))
    if row is None or row.expires_at < utcnow() or not row.user.is_active:
        return None
    courses, teaching = course_memberships(session, [row.user_id]).get(row.user_id, (frozenset(), frozenset()))
    return Identity(user=row.user, via="session", csrf_token=row.csrf_token, session_id=row.id, courses=courses,
                    teaching=teaching)


INSTRUCTOR = "instructor"  # lti_memberships.role of the course's teachers (the rest: "learner")


def person_in_session(session: Session, user: User | None) -> "Person | None":
    """The access rule's ``Person`` for ``user``, with their LTI courses (for course-only events and recordings)."""
    from live_server.access import Person

    if user is None:
        return None
    courses, teaching = course_memberships(session, [user.id]).get(user.id, (frozenset(), frozenset()))
    return Person.of(user, None, courses, teaching)


def can_process_recording(session: Session, user: User | None, recording: Recording) -> bool:
    """Work that adds to a recording's media (transcription, audio description): its managers
    (``access.can_manage``: owners, admins, the instructors of a course-only recording's course) and the
    moderators of the recording's event."""
    from live_server.access import Person, can_manage, recording_target

    if user is None or not user.is_active:
        return False
    event = session.get(Event, recording.event_id) if recording.event_id is not None else None
    person = person_in_session(session, user) if recording.visibility == Visibility.COURSE else Person.of(user)
    if can_manage(person, recording_target(recording, event)):
        return True
    return recording.event_id is not None and session.scalar(select(EventModerator.id).where(
        EventModerator.event_id == recording.event_id, EventModerator.user_id == user.id)) is not None


def course_memberships(session: Session, user_ids: Collection[int]) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
    """user id -> (every LTI context they launched from, those as an instructor), in one query."""
    found: dict[int, tuple[set[int], set[int]]] = {}
    if user_ids:
        rows = session.execute(select(LtiMembership.user_id, LtiMembership.context_id, LtiMembership.role)
                               .where(LtiMembership.user_id.in_(list(user_ids))))
        for user_id, context_id, role in rows:
            courses, teaching = found.setdefault(user_id, (set(), set()))
            courses.add(context_id)
            if role == INSTRUCTOR:
                teaching.add(context_id)
    return {user_id: (frozenset(c), frozenset(t)) for user_id, (c, t) in found.items()}


@dataclass(frozen=True)
class SessionFacts:
    """What media access needs from a login session: who, admin or not, active, until when (no ORM rows)."""

    session_id: int
    user_id: int
    role: Role
    active: bool
    expires_at: datetime
    courses: frozenset[int] = frozenset()
    teaching: frozenset[int] = frozenset()


def login_session_facts(session: Session, token_hashes: Collection[str]) -> dict[str, SessionFacts]:
    """The sessions among ``token_hashes`` that exist, with their accounts' LTI courses, in one query (JOINs,
    one row per session and course; no lazy load)."""
    if not token_hashes:
        return {}
    rows = session.execute(
        select(LoginSession.token_hash, LoginSession.id, User.id, User.role, User.is_active, LoginSession.expires_at,
               LtiMembership.context_id, LtiMembership.role)
        .join(User, User.id == LoginSession.user_id)
        .outerjoin(LtiMembership, LtiMembership.user_id == User.id)
        .where(LoginSession.token_hash.in_(list(token_hashes)))
    )
    found: dict[str, tuple[SessionFacts, set[int], set[int]]] = {}
    for h, sid, uid, role, active, expires, context_id, member_role in rows:
        facts, courses, teaching = found.setdefault(h, (SessionFacts(sid, uid, Role(role), bool(active), expires), set(), set()))
        if context_id is not None:
            courses.add(context_id)
            if member_role == INSTRUCTOR:
                teaching.add(context_id)
    return {h: replace(facts, courses=frozenset(courses), teaching=frozenset(teaching))
            for h, (facts, courses, teaching) in found.items()}


def close_login_session(session: Session, token: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.token_hash == security.token_hash(token)))


def create_api_token(session: Session, user: User, name: str) -> tuple[str, ApiToken]:
    name = name.strip()
    if not name or len(name) > 100:
        raise Unprocessable("token name must be 1-100 characters")
    token = API_TOKEN_PREFIX + security.new_token()
    row = ApiToken(user_id=user.id, name=name, token_hash=security.token_hash(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return token, row


def resolve_api_token(session: Session, token: str) -> Identity | None:
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == security.token_hash(token)))
    if row is None or row.revoked_at is not None or not row.user.is_active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        row.last_used_at = now  # coarse, so a busy script does not write on every call
    courses, teaching = course_memberships(session, [row.user_id]).get(row.user_id, (frozenset(), frozenset()))
    return Identity(user=row.user, via="token", courses=courses, teaching=teaching)


def list_api_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
        )
    )


def revoke_api_token(session: Session, user: User, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None:
        raise NotFound("no such token")
    row.revoked_at = utcnow()


def token_json(row: ApiToken) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def user_json(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "language": user.language,
    }


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def update_profile(session: Session, user_id: int, display_name: str, language: str | None) -> User:
    """What people change about themselves: the name others see and the interface language (None: the browser's)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    display_name = display_name.strip()
    if not display_name or len(display_name) > 200:
        raise Unprocessable("display name must be 1-200 characters", details=[{"field": "display_name", "message": "1-200 characters"}])
    if language is not None and (not language.isalpha() or not 2 <= len(language) <= 3):
        raise Unprocessable("language must be a language code such as fr", details=[{"field": "language", "message": "unknown language"}])
    user.display_name = display_name
    user.language = language
    return user


def set_role(session: Session, actor: User, user_id: int, role: Role | str) -> User:
    """An admin changes someone's role; admins cannot demote themselves (nobody would be left to undo it)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    new_role = Role(role)
    if user.id == actor.id and new_role != Role.ADMIN:
        raise Conflict("you cannot remove your own admin role", code="own_admin_role")
    user.role = new_role
    return user


def set_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    """Deactivated accounts cannot log in; their sessions and API tokens stop working at once."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    if user.id == actor.id and not active:
        raise Conflict("you cannot deactivate your own account", code="own_account")
    user.is_active = active
    if not active:
        session.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    return user


@dataclass
class _Counter:
    attempts: deque[float] = field(default_factory=deque)  # failed and in-flight attempts within the window
    strikes: int = 0  # lockouts so far: each one doubles the next (exponential back-off)
    locked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True)
class LoginAttempt:
    """A reserved attempt: counted as a failure until the password check says otherwise."""

    keys: tuple[tuple[str, int], ...]
    at: float


class FailedLoginLimiter:
    """Failed logins counted per account+address, per account and per address (in this process).

    Each key has its own limit within a sliding window; reaching it locks the key for one window, and
    each further lockout doubles that (up to ``max_backoff``). An attempt is reserved before the slow
    password check, so parallel guesses are counted too. The per-address ceiling is much higher than
    the per-account+address limit so that one person behind a campus NAT cannot lock everyone out.
    """

    def __init__(self, limit: int, window_seconds: float, *, account_limit: int | None = None,
                 address_limit: int | None = None, max_backoff_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.account_limit = account_limit if account_limit is not None else 4 * limit
        self.address_limit = address_limit if address_limit is not None else 20 * limit
        self.window = window_seconds
        self.max_backoff = max_backoff_seconds if max_backoff_seconds is not None else 12 * window_seconds
        self._clock = clock
        self._counters: dict[str, _Counter] = {}

    def keys(self, username: str, address: str) -> tuple[tuple[str, int], ...]:
        name = username.strip().lower()
        return ((f"pair:{name}|{address}", self.limit), (f"user:{name}", self.account_limit),
                (f"addr:{address}", self.address_limit))

    def _counter(self, key: str, now: float) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is None:
            return None
        cutoff = now - self.window
        while counter.attempts and counter.attempts[0] < cutoff:
            counter.attempts.popleft()
        if not counter.attempts and counter.locked_until <= now and now - counter.last > self.max_backoff:
            del self._counters[key]  # quiet long enough: the back-off starts again from one window
            return None
        return counter

    def retry_after(self, keys: tuple[tuple[str, int], ...]) -> float:
        """Seconds until a login may be tried again for these keys; 0 when allowed."""
        now = self._clock()
        wait = 0.0
        for key, limit in keys:
            counter = self._counter(key, now)
            if counter is None:
                continue
            wait = max(wait, counter.locked_until - now)
            if len(counter.attempts) >= limit:  # full of in-flight attempts
                wait = max(wait, counter.attempts[0] + self.window - now)
        return wait

    def begin(self, username: str, address: str) -> LoginAttempt | float:
        """Reserve an attempt (no await between the check and the count), or the seconds to wait."""
        return self.reserve(self.keys(username, address))

    def reserve(self, keys: tuple[tuple[str, int], ...]) -> LoginAttempt | float:
        """Count one attempt under each (key, limit), or the seconds to wait when one key is full. Without a
        later ``failed``/``succeeded`` the attempt simply stays counted for the window: a sliding-window
        request limit (the LTI login initiation and launch use it per address)."""
        wait = self.retry_after(keys)
        if wait > 0:
            return wait
        now = self._clock()
        for key, _limit in keys:
            counter = self._counters.setdefault(key, _Counter())
            counter.attempts.append(now)
            counter.last = now
        if len(self._counters) > 100_000:  # bound memory under a credential-stuffing storm
            for key in list(self._counters)[:50_000]:
                self._counter(key, now)
        return LoginAttempt(keys, now)

    def failed(self, attempt: LoginAttempt) -> None:
        """The reserved attempt stays counted; a key that reached its limit is locked, longer each time."""
        now = self._clock()
        for key, limit in attempt.keys:
            counter = self._counters.get(key)
            if counter is None:
                continue
            if len(counter.attempts) >= limit and counter.locked_until <= now:
                counter.locked_until = now + min(self.max_backoff, self.window * 2 ** min(counter.strikes, 30))
                counter.strikes += 1
                counter.attempts.clear()

    def succeeded(self, attempt: LoginAttempt) -> None:
        """Right password: the account's counts are cleared; the address keeps its other attempts."""
        for key, _limit in attempt.keys:
            counter = self._counters.get(key)
            if counter is None:
                continue
            if key.startswith("addr:"):
                with contextlib.suppress(ValueError):
                    counter.attempts.remove(attempt.at)
            else:
                del self._counters[key]
