"""May this person see this event's or recording's media, chat and captions: the one rule.

Every surface (event and replay pages, live and VOD media, chat, captions, recording API) asks
``can_view`` and maps its ``Decision`` to its own answer (a redirect, a locked page, 403, 404, a
refused socket). The rule is pure: callers hand it who is asking, what they ask for and the
passes they present, so it is tested for every visibility x identity x pass in milliseconds.
This module is ground floor: it imports no component.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from live_server.models import Role, Visibility

if TYPE_CHECKING:
    from live_server.models import Event, Recording, User

PRIVATE = (Visibility.AUTHENTICATED, Visibility.PASSWORD)


class Decision(enum.Enum):
    ALLOWED = "allowed"
    LOGIN_REQUIRED = "login_required"
    PASSWORD_REQUIRED = "password_required"
    NOT_FOUND = "not_found"

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOWED


@dataclass(frozen=True)
class Person:
    """Who is asking: a logged-in account (``session_id`` when through a browser session).

    ``courses``: the LTI contexts (``lti_contexts.id``) they launched from, as any role; ``teaching``:
    those where they launched as an instructor (lecturer rights on the course's events)."""

    user_id: int
    admin: bool = False
    active: bool = True
    session_id: int | None = None
    courses: frozenset[int] = frozenset()
    teaching: frozenset[int] = frozenset()

    @classmethod
    def of(cls, user: "User | None", session_id: int | None = None, courses: frozenset[int] = frozenset(),
           teaching: frozenset[int] = frozenset()) -> "Person | None":
        if user is None:
            return None
        return cls(user.id, user.role == Role.ADMIN, bool(user.is_active), session_id, courses, teaching)


@dataclass(frozen=True)
class Target:
    """The access facts of an event or a recording, copied out of the catalog (cacheable, no ORM).

    ``secret`` is the row's random access secret and ``password_hash`` the event password: a pass is
    signed over them and the visibility (``grant_version``), so a new password, a visibility change
    or a new row that reuses an id makes every earlier pass worthless.
    """

    kind: Literal["event", "recording"]
    id: int
    owner_id: int
    visibility: Visibility
    secret: str = ""
    password_hash: str | None = None
    available: bool = True  # recordings: ready (others are shown to their managers only)
    event: "Target | None" = None  # a recording's event: a pass for the event opens its recordings
    course_id: int | None = None  # the LTI context whose members see it (visibility "course")

    @property
    def private(self) -> bool:
        """Media of private targets is per viewer (no shared caches, no open CORS)."""
        return self.visibility in PRIVATE

    @property
    def grant_version(self) -> str:
        raw = f"{self.visibility.value}|{self.password_hash or ''}|{self.secret}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]


class Passes(Protocol):
    """The media passes a request presents; ``opens`` checks one against the target's current facts."""

    def opens(self, target: Target) -> bool: ...


class NoPasses:
    def opens(self, target: Target) -> bool:
        return False


NO_PASSES = NoPasses()


def event_target(event: "Event") -> Target:
    return Target("event", event.id, event.owner_id, event.visibility, event.access_secret or "", event.password_hash,
                  course_id=event.lti_context_id)


def recording_target(recording: "Recording", event: "Event | None") -> Target:
    """Password recordings open with their event's password (and with a pass for that event); a course
    recording belongs to its own course, else to its event's."""
    from live_server.models import RecordingState

    course = recording.lti_context_id if recording.lti_context_id is not None else (
        event.lti_context_id if event is not None else None)
    return Target(
        "recording", recording.id, recording.owner_id, recording.visibility, recording.access_secret or "",
        event.password_hash if event is not None else None, recording.state == RecordingState.READY,
        event_target(event) if event is not None else None, course,
    )


def can_manage(person: Person | None, target: Target) -> bool:
    """Owners, admins, and the instructors of the course a course-only event or recording is bound to."""
    if person is None or not person.active:
        return False
    if person.admin or person.user_id == target.owner_id:
        return True
    return target.visibility == Visibility.COURSE and target.course_id is not None and target.course_id in person.teaching


def can_view(person: Person | None, target: Target, passes: Passes = NO_PASSES) -> Decision:
    """Owners and admins always; otherwise by visibility.

    public and unlisted: anyone with the link; authenticated: any active account (a login session
    or a token: revoked at once by logout or deactivation, no pass involved); password: a pass
    granted by the current password of this very row (or of the recording's event); course: the
    members of its LTI context, as launched from the LMS (others: not found, its existence is not told).
    """
    if person is not None and not person.active:
        person = None
    if can_manage(person, target):
        return Decision.ALLOWED
    if not target.available:
        return Decision.NOT_FOUND
    if target.visibility in (Visibility.PUBLIC, Visibility.UNLISTED):
        return Decision.ALLOWED
    if target.visibility == Visibility.AUTHENTICATED:
        return Decision.ALLOWED if person is not None else Decision.LOGIN_REQUIRED
    if target.visibility == Visibility.COURSE:
        if person is None:
            return Decision.LOGIN_REQUIRED
        member = target.course_id is not None and target.course_id in person.courses
        return Decision.ALLOWED if member else Decision.NOT_FOUND
    if passes.opens(target) or (target.event is not None and target.event.visibility == Visibility.PASSWORD
                                and passes.opens(target.event)):
        return Decision.ALLOWED
    return Decision.PASSWORD_REQUIRED


class _HasIdentity(Protocol):
    @property
    def user(self) -> "User": ...
    @property
    def session_id(self) -> int | None: ...
    @property
    def courses(self) -> frozenset[int]: ...
    @property
    def teaching(self) -> frozenset[int]: ...


def person_of(identity: "_HasIdentity | None") -> Person | None:
    """The person behind a resolved request identity (``live_server.accounts.Identity``)."""
    return None if identity is None else Person.of(identity.user, identity.session_id, identity.courses, identity.teaching)
