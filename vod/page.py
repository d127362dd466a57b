"""The replay page's logic (its routes sit in ``web/pages.py``): access, unlock, the media pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from sqlalchemy import select

from live_server import security
from live_server.errors import NotFound
from live_server.keys import DB, MEDIA_PASS, RECORDING_PASS, SETTINGS
from live_server.middleware import identity_of
from live_server.models import Event, Recording, RecordingState, User, Visibility
from web.media import MediaPass

from . import access
from .media import RecordingPass


def has_pass(request: web.Request, row: Recording) -> bool:
    """A pass for the recording, or for its event (a viewer who unlocked the live keeps access)."""
    if request.app[RECORDING_PASS].check(row.id, request.cookies.get(RecordingPass.cookie_name(row.id))):
        return True
    return row.event_id is not None and request.app[MEDIA_PASS].check(
        row.event_id, request.cookies.get(MediaPass.cookie_name(row.event_id)))


def event_replay(session: Session, event: Event, user: User | None) -> dict[str, Any] | None:
    """The replay of an ended event for its page: the latest recording, if this viewer may see it.

    ``{"url": ..., "ready": bool}``; a recording still being prepared is only mentioned (it shows
    to nobody but its owner until it is ready).
    """
    row = session.scalar(select(Recording).where(Recording.event_id == event.id)
                         .order_by(Recording.created_at.desc(), Recording.id.desc()).limit(1))
    if row is None or row.state == RecordingState.FAILED:
        return None
    ready = row.state == RecordingState.READY
    if ready:
        try:
            access.ensure_readable(user, row)
        except NotFound:
            return None
    return {"url": f"/recordings/{row.id}", "ready": ready}


@dataclass
class ReplayView:
    recording: Recording
    event_slug: str | None
    password_hash: str | None
    manager: bool
    locked: bool
    caption_language: str | None = None

    @property
    def context(self) -> dict[str, Any]:
        rid = self.recording.id
        return {
            "recording": self.recording,
            "event_slug": self.event_slug,
            "can_manage": self.manager,
            "locked": self.locked,
            "unlock_error": None,
            "playback_url": f"/vod/{rid}/master.m3u8",
            "api_url": f"/api/v1/recordings/{rid}",
            "download_url": f"/api/v1/recordings/{rid}/download.mp4" if self.manager else None,
            "caption_language": self.caption_language,
        }


async def replay_view(request: web.Request) -> ReplayView:
    identity = identity_of(request)
    user = identity.user if identity else None
    ref = request.match_info["id"]
    if not ref.isdigit():
        raise NotFound("no such recording")

    def work(session: Session) -> tuple[Recording, str | None, str | None, str | None]:
        row = session.get(Recording, int(ref))
        if row is None:
            raise NotFound("no such recording")
        if row.visibility == Visibility.AUTHENTICATED and user is None and row.state == RecordingState.READY:
            raise web.HTTPSeeOther(f"/login?next=/recordings/{row.id}")
        access.ensure_readable(user, row)
        event = session.get(Event, row.event_id) if row.event_id is not None else None
        if event is None:
            return row, None, None, None
        return row, event.slug, event.password_hash, event.caption_language

    row, slug, password_hash, language = await request.app[DB].run(work)
    manager = access.can_manage(user, row)
    locked = row.visibility == Visibility.PASSWORD and not manager and not has_pass(request, row)
    return ReplayView(row, slug, password_hash, manager, locked, language)


async def password_matches(view: ReplayView, password: str) -> bool:
    """Password recordings open with their event's password (checked off the event loop: scrypt)."""
    stored = view.password_hash
    if not stored or not password:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, security.verify_password, password, stored)


def grant_pass(request: web.Request, response: web.StreamResponse, view: ReplayView) -> None:
    """Private recordings: the page hands the player a signed media pass (a cookie for /vod/<id>/)."""
    if view.locked or not access.is_private(view.recording.visibility):
        return
    recording_pass = request.app[RECORDING_PASS]
    settings = request.app[SETTINGS]
    secure = settings.cookie_secure == "always" or (settings.cookie_secure == "auto" and request.secure)
    response.set_cookie(
        RecordingPass.cookie_name(view.recording.id), recording_pass.issue(view.recording.id),
        max_age=recording_pass.lifetime, httponly=True, samesite="Lax", secure=secure, path="/",
    )
