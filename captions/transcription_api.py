"""Asking for a recording's transcription, following it and cancelling it: the API and the page's forms.

Its managers (owners, admins, the instructors of a course-only recording's course) and the moderators of
the recording's event only (``accounts.can_process_recording``); everyone else gets the 404 a missing
recording gets. Cookie sessions send the CSRF token (checked by
the request pipeline before any handler runs).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server import accounts
from live_server.db import Database
from live_server.errors import BadRequest, Conflict, NotFound, Unprocessable
from live_server.http_request import json_body, require_identity
from live_server.models import Recording, RecordingState, User, utcnow

from . import transcription_jobs as jobs
from .transcription import Transcriptions

__all__ = ["TranscriptionApi"]

_PUBLIC_REF = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def _recording(session: Session, ref: str, user: User) -> Recording:
    row: Recording | None = None
    if ref.isascii() and ref.isdigit() and len(ref) < 19:
        row = session.get(Recording, int(ref))
    elif _PUBLIC_REF.match(ref):
        row = session.scalar(select(Recording).where(Recording.public_id == ref))
    if row is None or not accounts.can_process_recording(session, user, row):
        raise NotFound("no such recording")
    return row


class TranscriptionApi:
    """``/api/v1/recordings/{ref}/transcription`` (GET, POST, DELETE) and the replay page's two forms."""

    def __init__(self, db: Database, transcriptions: Transcriptions) -> None:
        self.db = db
        self.transcriptions = transcriptions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/recordings/{ref}/transcription", self.status),
            web.post("/api/v1/recordings/{ref}/transcription", self.request_api),
            web.delete("/api/v1/recordings/{ref}/transcription", self.cancel_api),
            web.post("/recordings/{ref}/transcription", self.request_form),
            web.post("/recordings/{ref}/transcription/cancel", self.cancel_form),
        ]

    async def status(self, request: web.Request) -> web.Response:
        """The recording's latest job (404 before any): state, progress, time left, attempts, last failure."""
        user, ref, now = require_identity(request).user, request.match_info["ref"], utcnow()

        def work(session: Session) -> dict[str, Any]:
            job = jobs.latest_job(session, _recording(session, ref, user).id)
            if job is None:
                raise NotFound("this recording was never transcribed")
            return jobs.job_json(job, now)

        return web.json_response(await self.db.run(work))

    async def _request(self, request: web.Request, language: str) -> dict[str, Any]:
        user, ref = require_identity(request).user, request.match_info["ref"]
        if language not in self.transcriptions.languages:
            configured = ", ".join(sorted(self.transcriptions.languages)) or "none"
            raise Unprocessable(f"no speech model for {language!r} (configured: {configured})", code="unknown_language")

        def find(session: Session) -> int:
            row = _recording(session, ref, user)
            if row.state != RecordingState.READY:
                raise Conflict("the recording is not ready yet")
            return row.id

        recording_id = await self.db.run(find)
        try:
            return await self.transcriptions.request(recording_id, language, "request", user.id)
        except jobs.JobConflict as exc:
            raise Conflict(str(exc)) from None

    async def request_api(self, request: web.Request) -> web.Response:
        """``{"language": "fr"}``: 202 with the queued job; 409 when one is queued or running."""
        body = await json_body(request)
        language = body.get("language") if isinstance(body, dict) else None
        if not isinstance(language, str) or not language:
            raise BadRequest("send {\"language\": \"<code>\"}")
        job = await self._request(request, language)
        return web.json_response(job, status=202)

    async def _cancel(self, request: web.Request) -> dict[str, Any]:
        user, ref = require_identity(request).user, request.match_info["ref"]
        recording_id = await self.db.run(lambda s: _recording(s, ref, user).id)
        job = await self.transcriptions.cancel(recording_id)
        if job is None:
            raise NotFound("no transcription of this recording is queued or running")
        return job

    async def cancel_api(self, request: web.Request) -> web.Response:
        return web.json_response(await self._cancel(request))

    async def request_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        await self._request(request, str(form.get("language", "")))
        raise web.HTTPSeeOther(f"/recordings/{request.match_info['ref']}#transcription")

    async def cancel_form(self, request: web.Request) -> web.Response:
        """Back where the button was: the recording page, or the dashboard (``next=dashboard``)."""
        form = await request.post()
        await self._cancel(request)
        if form.get("next") == "dashboard":
            raise web.HTTPSeeOther("/dashboard#transcriptions")
        raise web.HTTPSeeOther(f"/recordings/{request.match_info['ref']}#transcription")
