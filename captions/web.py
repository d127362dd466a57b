"""The stored captions of an event: a complete WebVTT track and a searchable transcript.

Both read the catalog's ``CaptionSegment`` rows, so they are complete the moment a live run
ends (the captioner writes its last batch before the event is marked ended).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from formats import webvtt
from live_server import events as ev
from live_server.errors import NotFound
from live_server.db import Database
from live_server.passes import MediaPasses
from live_server.http_request import identity_of
from live_server.access import can_view, event_target, person_of
from live_server.models import CaptionSegment, Event


__all__ = ["CaptionsApi", "event_cues"]


def event_cues(session: Session, event_id: int, language: str | None = None, query: str | None = None,
               limit: int | None = None) -> list[CaptionSegment]:
    stmt = select(CaptionSegment).where(CaptionSegment.event_id == event_id)
    if language:
        stmt = stmt.where(CaptionSegment.language == language)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(CaptionSegment.text.ilike(f"%{escaped}%", escape="\\"))
    stmt = stmt.order_by(CaptionSegment.start_seconds, CaptionSegment.id)
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


class CaptionsApi:
    """An event's captions as WebVTT and its searchable transcript."""

    def __init__(self, db: Database, passes: MediaPasses) -> None:
        self.db = db
        self.passes = passes

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/events/{ref}/captions.vtt", self.captions_vtt),
            web.get("/api/v1/events/{ref}/transcript", self.transcript),
        ]

    def _readable_event(self, request: web.Request, session: Session) -> Event:
        """Captions are the event's media: the one access rule, and a 404 to whoever may not see them."""
        identity = identity_of(request)
        event = ev.get_event(session, request.match_info["ref"], identity.user if identity else None)
        passes = self.passes.presented(request.cookies)
        if not can_view(person_of(identity_of(request)), event_target(event), passes).allowed:
            raise NotFound("no such event")
        return event

    async def captions_vtt(self, request: web.Request) -> web.Response:
        """The whole caption track of an event (for the recording's player)."""
        language = request.query.get("language")

        def work(session: Session) -> str:
            event = self._readable_event(request, session)
            rows = event_cues(session, event.id, language or event.caption_language)
            return webvtt.render(webvtt.Cue(r.start_seconds, r.end_seconds, r.text) for r in rows)

        text = await self.db.run(work)
        return web.Response(text=text, content_type="text/vtt", charset="utf-8")

    async def transcript(self, request: web.Request) -> web.Response:
        """Caption segments as JSON; ``?q=`` keeps those containing the words (case-insensitive)."""
        query = request.query.get("q", "").strip()[:200] or None

        def work(session: Session) -> dict[str, Any]:
            event = self._readable_event(request, session)
            rows = event_cues(session, event.id, query=query, limit=5000)
            return {
                "event_id": event.id,
                "segments": [
                    {"start": r.start_seconds, "end": r.end_seconds, "text": r.text, "language": r.language}
                    for r in rows
                ],
            }

        return web.json_response(await self.db.run(work))
