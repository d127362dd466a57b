"""Catalog work of the LTI tool: platforms, login states, account links, courses and their members.

Plain functions on a ``Session`` (run by ``Database.run``); no HTTP here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, false, or_, select
from sqlalchemy.orm import Session

from live_server import accounts
from live_server import events as ev
from live_server.errors import Conflict, NotFound, Unprocessable
from live_server.models import (
    Event, LtiAccount, LtiContext, LtiLoginState, LtiMembership, LtiPlatform, Recording, RecordingState, Role, User,
    Visibility, new_access_secret, utcnow,
)
from lti.launch import Expected, Launch, PlatformFacts


def _url(name: str, value: str, required: bool = True) -> str:
    value = value.strip()
    if not value and not required:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 1000:
        raise Unprocessable(f"{name}: an http(s) URL is needed", details=[{"field": name, "message": "an http(s) URL"}])
    return value


def register_platform(session: Session, *, issuer: str, client_id: str, deployment_ids: list[str], auth_login_url: str,
                      jwks_url: str, token_url: str = "", name: str = "") -> LtiPlatform:
    """A platform as its administrator describes it; issuer + client id is unique."""
    issuer, client_id = issuer.strip(), client_id.strip()
    if not issuer or len(issuer) > 255:
        raise Unprocessable("issuer: 1 to 255 characters", details=[{"field": "issuer", "message": "required"}])
    if not client_id or len(client_id) > 255:
        raise Unprocessable("client_id: 1 to 255 characters", details=[{"field": "client_id", "message": "required"}])
    deployments = [d.strip() for d in deployment_ids if d.strip()]
    if not deployments or any(len(d) > 255 or any(c.isspace() for c in d) for d in deployments):
        raise Unprocessable("deployment ids: at least one, without spaces",
                            details=[{"field": "deployment_ids", "message": "at least one"}])
    if session.scalar(select(LtiPlatform.id).where(LtiPlatform.issuer == issuer, LtiPlatform.client_id == client_id)):
        raise Conflict(f"platform {issuer} with client id {client_id} is already registered")
    row = LtiPlatform(name=name.strip()[:200] or issuer, issuer=issuer, client_id=client_id,
                      deployment_ids="\n".join(dict.fromkeys(deployments)),
                      auth_login_url=_url("auth_login_url", auth_login_url), jwks_url=_url("jwks_url", jwks_url),
                      token_url=_url("token_url", token_url, required=False))
    session.add(row)
    session.flush()
    return row


def list_platforms(session: Session) -> list[LtiPlatform]:
    return list(session.scalars(select(LtiPlatform).order_by(LtiPlatform.id)))


def remove_platform(session: Session, platform_id: int) -> None:
    """Forget a platform: its account links, courses and memberships go with it (accounts stay)."""
    row = session.get(LtiPlatform, platform_id)
    if row is None:
        raise NotFound(f"no platform {platform_id}")
    session.delete(row)


def platform_origins(session: Session) -> list[str]:
    """Where registered platforms frame us from: the origins of their issuers and login endpoints."""
    origins: list[str] = []
    for issuer, login in session.execute(select(LtiPlatform.issuer, LtiPlatform.auth_login_url)):
        for url in (issuer, login):
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") and parts.netloc:
                origins.append(f"{parts.scheme}://{parts.netloc}")
    return list(dict.fromkeys(origins))


def facts(platform: LtiPlatform) -> PlatformFacts:
    return PlatformFacts(platform.issuer, platform.client_id, tuple(platform.deployments))


def find_platform(session: Session, issuer: str, client_id: str | None) -> LtiPlatform | None:
    """The registration a login initiation names; without a client id, only when the issuer has one."""
    query = select(LtiPlatform).where(LtiPlatform.issuer == issuer)
    if client_id:
        query = query.where(LtiPlatform.client_id == client_id)
    rows = list(session.scalars(query.limit(2)))
    return rows[0] if len(rows) == 1 else None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class LoginStarted:
    state: str
    nonce: str


def open_login(session: Session, platform: LtiPlatform, target_link_uri: str, browser: str, lifetime: int,
               now: datetime | None = None) -> LoginStarted:
    """A state and a nonce for one login, bound to the browser's cookie value (``browser``)."""
    now = now or utcnow()
    session.execute(delete(LtiLoginState).where(LtiLoginState.expires_at < now))  # keeps the table small
    started = LoginStarted(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    session.add(LtiLoginState(state_hash=_hash(started.state), nonce=started.nonce, browser_hash=_hash(browser),
                              platform_id=platform.id, target_link_uri=target_link_uri,
                              expires_at=now + timedelta(seconds=lifetime)))
    return started


@dataclass(frozen=True)
class PendingLogin:
    platform_id: int
    platform: PlatformFacts
    jwks_url: str
    expected: Expected
    same_browser: bool


def take_login(session: Session, state: str, browser: str | None, now: datetime | None = None) -> PendingLogin | None:
    """The login a launch's ``state`` continues, consumed (a state, and so its nonce, serves once); None when
    unknown, used or expired. ``same_browser``: the browser's cookie matches the one the login set."""
    now = now or utcnow()
    if not state or len(state) > 200:
        return None
    row = session.scalar(select(LtiLoginState).where(LtiLoginState.state_hash == _hash(state)))
    if row is None:
        return None
    taken = session.execute(delete(LtiLoginState).where(LtiLoginState.id == row.id))
    if getattr(taken, "rowcount", 1) != 1 or row.expires_at < now:  # another launch took it meanwhile, or too late
        return None
    platform = session.get(LtiPlatform, row.platform_id)
    if platform is None:
        return None
    same = browser is not None and secrets.compare_digest(_hash(browser), row.browser_hash)
    return PendingLogin(platform.id, facts(platform), platform.jwks_url, Expected(row.nonce, row.target_link_uri), same)


@dataclass(frozen=True)
class Launched:
    user_id: int
    context_id: int
    teaching: bool


def record_launch(session: Session, platform_id: int, launch: Launch) -> Launched:
    """The account behind ``sub`` (created and linked on the first launch; name and e-mail refreshed from the
    claims), the course, and their membership with the role of this launch. Instructors become lecturers."""
    link = session.scalar(select(LtiAccount).where(LtiAccount.platform_id == platform_id, LtiAccount.sub == launch.sub))
    role = Role.LECTURER if launch.teaching else Role.VIEWER
    if link is None:
        username = f"lti-{platform_id}-{_hash(launch.sub)[:16]}"
        user = accounts.create_user(session, username, secrets.token_urlsafe(32), role,
                                    display_name=launch.name or username, email=launch.email or None)
        session.add(LtiAccount(platform_id=platform_id, sub=launch.sub, user_id=user.id))
    else:
        found = session.get(User, link.user_id)
        if found is None:
            raise NotFound("linked account is gone")
        user = found
        if launch.name:
            user.display_name = launch.name
        if launch.email:
            user.email = launch.email
        if launch.teaching and user.role == Role.VIEWER:
            user.role = Role.LECTURER
    if not user.is_active:
        raise Conflict("this account is deactivated")
    context = session.scalar(select(LtiContext).where(
        LtiContext.platform_id == platform_id, LtiContext.deployment_id == launch.deployment_id,
        LtiContext.context_key == launch.course.key))
    if context is None:
        context = LtiContext(platform_id=platform_id, deployment_id=launch.deployment_id, context_key=launch.course.key)
        session.add(context)
    context.title = launch.course.title or context.title
    context.label = launch.course.label or context.label
    session.flush()
    member_role = accounts.INSTRUCTOR if launch.teaching else "learner"
    membership = session.scalar(select(LtiMembership).where(LtiMembership.context_id == context.id,
                                                            LtiMembership.user_id == user.id))
    if membership is None:
        session.add(LtiMembership(context_id=context.id, user_id=user.id, role=member_role))
    else:
        membership.role, membership.last_launch_at = member_role, utcnow()  # the latest launch says the role
    session.flush()
    return Launched(user.id, context.id, launch.teaching)


def course_title(session: Session, context_id: int) -> str:
    context = session.get(LtiContext, context_id)
    return (context.title or context.label or context.context_key) if context is not None else ""


def course_items(session: Session, context_id: int) -> tuple[list[Event], list[Recording]]:
    """What is bound to a course: its events, and its ready recordings (their own binding or their event's)."""
    events = list(session.scalars(select(Event).where(Event.lti_context_id == context_id)
                                  .order_by(Event.scheduled_start, Event.id)))
    event_ids = [e.id for e in events]
    query = select(Recording).where(Recording.state == RecordingState.READY)
    own_event = Recording.event_id.in_(event_ids) if event_ids else false()
    recordings = list(session.scalars(query.where(or_(Recording.lti_context_id == context_id, own_event))
                                      .order_by(Recording.created_at.desc())))
    return events, recordings


def bind(session: Session, user: User, kind: str, ref: str, context_id: int, course_only: bool) -> tuple[str, str]:
    """Put one of ``user``'s events or recordings in a course (deep linking); returns (its path, its title)."""
    if kind == "event":
        event = ev.get_event(session, ref, user)
        if not ev.can_manage(user, event):
            raise NotFound("no such event")
        event.lti_context_id = context_id
        if course_only and event.visibility != Visibility.COURSE:
            event.visibility, event.access_secret = Visibility.COURSE, new_access_secret()
        return f"/events/{event.slug}", event.title
    row = session.get(Recording, int(ref)) if ref.isdigit() else None
    if row is None or not (user.role == Role.ADMIN or row.owner_id == user.id) or row.state != RecordingState.READY:
        raise NotFound("no such recording")
    row.lti_context_id = context_id
    if course_only and row.visibility != Visibility.COURSE:
        row.visibility, row.access_secret = Visibility.COURSE, new_access_secret()
    return f"/recordings/{row.public_ref}", row.title


def create_course_event(session: Session, user: User, title: str, context_id: int) -> tuple[str, str]:
    """A new event for the course, seen by its members only."""
    event = ev.create_event(session, user, ev.parse_payload(ev.EventCreate, {"title": title}))
    event.lti_context_id = context_id
    event.visibility, event.access_secret = Visibility.COURSE, new_access_secret()
    session.flush()
    return f"/events/{event.slug}", event.title


def pickable(session: Session, user: User) -> tuple[list[Event], list[Recording]]:
    """What an instructor may put in a course: their own events and ready recordings (everything for admins)."""
    events = select(Event).order_by(Event.created_at.desc()).limit(200)
    recordings = select(Recording).where(Recording.state == RecordingState.READY).order_by(Recording.created_at.desc()).limit(200)
    if user.role != Role.ADMIN:
        events = events.where(Event.owner_id == user.id)
        recordings = recordings.where(Recording.owner_id == user.id)
    return list(session.scalars(events)), list(session.scalars(recordings))
