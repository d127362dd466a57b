"""The replay page's logic (its routes sit in ``web/pages.py``): access, unlock, the media pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from sqlalchemy import select

from live_server import accounts, security
from live_server.access import Decision, can_view, person_of, recording_target
from live_server.errors import NotFound
from live_server.db import Database
from live_server.http_request import identity_of
from live_server.languages import own_name
from live_server.models import AudioDescription, CaptionSegment, Event, Recording, RecordingState, User, Visibility
from live_server.passes import MediaPasses

from . import access, tracks
from .audio_descriptions import AudioDescriptions, track_json


def decide(passes: MediaPasses, request: web.Request, session: Session, row: Recording) -> Decision:
    """The one access rule for a recording; a pass for its event opens it too (whoever unlocked the live)."""
    event = session.get(Event, row.event_id) if row.event_id is not None else None
    presented = passes.presented(request.cookies)
    return can_view(person_of(identity_of(request)), recording_target(row, event), presented)


def page_tracks(session: Session, row: Recording) -> list[dict[str, Any]]:
    """The recording's text tracks as ``<track>`` elements list them: the automatic captions from
    ``captions.vtt`` (the URL they always had), any other from its own WebVTT; ``default`` on the one
    the master playlist marks DEFAULT (at most one)."""
    rows = tracks.tracks_of(session, row)
    plan = {r.track_id: r for r in tracks.renditions(tracks.facts(rows), own_name)}
    api = f"/api/v1/recordings/{row.public_ref}"
    return [{"id": t.id, "language": t.language, "kind": t.kind, "label": t.label, "name": plan[t.id].name,
             "default": plan[t.id].default, "automatic": t.automatic, "origin": t.origin, "forced": t.forced,
             "src": f"{api}/captions.vtt" if t.automatic else f"{api}/tracks/{t.id}.vtt"} for t in rows]


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
    return {"url": f"/recordings/{row.public_ref}", "ready": ready}


@dataclass
class ReplayView:
    recording: Recording
    event_slug: str | None
    password_hash: str | None
    manager: bool
    locked: bool
    caption_language: str | None = None
    event: Event | None = None
    tracks: list[dict[str, Any]] = field(default_factory=list)  # text tracks, the automatic one first
    can_edit_tracks: bool = False

    @property
    def context(self) -> dict[str, Any]:
        rid = self.recording.public_ref
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
            "tracks": self.tracks,
            "can_edit_tracks": self.can_edit_tracks,
        }


class ReplayPages:
    """The replay page's access, unlock and media pass, with the catalog and the passes given at wiring."""

    def __init__(self, db: Database, passes: MediaPasses, cookie_secure: str,
                 descriptions: AudioDescriptions | None = None) -> None:
        self.db = db
        self.passes = passes
        self.cookie_secure = cookie_secure
        self.descriptions = descriptions  # the audio-description panel; None: no panel

    async def audio_description_panel(self, view: ReplayView, user: User | None) -> dict[str, Any] | None:
        """The recording's audio-description tracks and the voices at hand, for those who may change them."""
        if self.descriptions is None or user is None or view.locked or view.recording.state != RecordingState.READY:
            return None
        base = f"/vod/{view.recording.public_ref}"

        def work(session: Session) -> list[dict[str, Any]] | None:
            row = session.get(Recording, view.recording.id)
            if row is None or not accounts.can_process_recording(session, user, row):
                return None
            rows = session.scalars(select(AudioDescription).where(AudioDescription.recording_id == row.id)
                                   .order_by(AudioDescription.language)).all()
            return [track_json(t, base) for t in rows]

        tracks = await self.db.run(work)
        if tracks is None:
            return None
        voices = sorted(v for v in await self.descriptions.voices() if "-" not in v)
        return {"tracks": tracks, "voices": voices}

    async def replay_view(self, request: web.Request) -> ReplayView:
        identity = identity_of(request)
        user = identity.user if identity else None
        ref = request.match_info["id"]

        def work(session: Session) -> tuple[Recording, Event | None, Decision, str | None, bool, list[dict[str, Any]], bool]:
            row = access.find(session, ref, user)
            decision = decide(self.passes, request, session, row)
            if decision is Decision.LOGIN_REQUIRED:
                raise web.HTTPSeeOther(f"/login?next=/recordings/{row.public_ref}")
            if decision is Decision.NOT_FOUND:
                raise NotFound("no such recording")
            # A transcribed recording's track says its language (an import has no event to ask).
            transcribed = session.scalar(select(CaptionSegment.language).where(
                CaptionSegment.recording_id == row.id, CaptionSegment.track_id.is_(None)).limit(1))
            shown = page_tracks(session, row) if decision is Decision.ALLOWED else []
            # once corrected in the editor, the automatic track's rows carry its id: its language says it
            transcribed = next((t["language"] for t in shown if t["automatic"]), transcribed)
            event = session.get(Event, row.event_id) if row.event_id is not None else None
            return (row, event, decision, transcribed, access.manages(user, row, person_of(identity)),  # owners and the course's instructors
                    shown, tracks.can_edit_tracks(session, user, row))

        row, event, decision, transcribed, manager, shown, editor = await self.db.run(work)
        locked = decision is Decision.PASSWORD_REQUIRED
        if event is None:
            return ReplayView(row, None, None, manager, locked, transcribed, None, shown, editor)
        return ReplayView(row, event.slug, event.password_hash, manager, locked, transcribed or event.caption_language, event,
                          shown, editor)

    def grant_pass(self, request: web.Request, response: web.StreamResponse, view: ReplayView) -> None:
        """Password recordings: once unlocked (or on each visit after), the page hands the player a pass for /vod/<id>/."""
        if view.locked or view.manager or view.recording.visibility != Visibility.PASSWORD:
            return
        target = recording_target(view.recording, view.event)
        self.passes.grant(request, response, target, self.cookie_secure)


async def password_matches(view: ReplayView, password: str) -> bool:
    """Password recordings open with their event's password (checked off the event loop: scrypt)."""
    stored = view.password_hash
    if not stored or not password:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, security.verify_password, password, stored)
