"""HTTP side of the chat: an event's moderators, and its transcript (for the replay)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from chat import service as svc
from live_server import events as ev
from live_server.errors import Forbidden, NotFound
from live_server.access import Decision, can_view, event_target, person_of
from live_server.db import Database
from live_server.passes import MediaPasses
from live_server.http_request import identity_of, require_identity
from live_server.models import User


def _not_found(exc: svc.ChatError) -> NotFound:
    return NotFound(exc.message, code=exc.code)


def _managed_event(session: Session, user: User, ref: str) -> Any:
    event = ev.get_event(session, ref, user)
    ev.ensure_manageable(user, event)
    return event


class ChatApi:
    """The chat transcript and moderators API."""

    def __init__(self, db: Database, passes: MediaPasses) -> None:
        self.db = db
        self.passes = passes

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/events/{ref}/chat/messages", self.transcript),
            web.get("/api/v1/events/{ref}/moderators", self.list_moderators),
            web.put("/api/v1/events/{ref}/moderators/{username}", self.add_moderator),
            web.delete("/api/v1/events/{ref}/moderators/{username}", self.remove_moderator),
        ]

    async def transcript(self, request: web.Request) -> web.Response:
        """Every visible message with its stream offset; moderators may add ``?deleted=1`` for the audit trail."""
        identity = identity_of(request)
        user = identity.user if identity else None
        want_deleted = request.query.get("deleted") in ("1", "true")
        person = person_of(identity)
        passes = self.passes.presented(request.cookies)

        def work(session: Session) -> dict[str, Any]:
            event = ev.get_event(session, request.match_info["ref"], user)
            moderator = svc.is_moderator(session, event.id, event.owner_id, user)
            decision = Decision.ALLOWED if moderator else can_view(person, event_target(event), passes)
            if decision in (Decision.LOGIN_REQUIRED, Decision.NOT_FOUND):
                raise NotFound("no such event")
            if decision is Decision.PASSWORD_REQUIRED:
                raise Forbidden("open the event page and enter its password first", code="password_required")
            if want_deleted and not moderator:
                raise Forbidden("only the event's owner and moderators see deleted messages")
            return {"event": event.id, "messages": svc.transcript(session, event.id, include_deleted=want_deleted)}

        return web.json_response(await self.db.run(work))

    async def list_moderators(self, request: web.Request) -> web.Response:
        user = require_identity(request).user

        def work(session: Session) -> list[dict[str, Any]]:
            return svc.list_moderators(session, _managed_event(session, user, request.match_info["ref"]).id)

        return web.json_response({"moderators": await self.db.run(work)})

    async def add_moderator(self, request: web.Request) -> web.Response:
        user = require_identity(request).user

        def work(session: Session) -> dict[str, Any]:
            event = _managed_event(session, user, request.match_info["ref"])
            try:
                return svc.add_moderator(session, event.id, request.match_info["username"], user)
            except svc.ChatError as exc:
                raise _not_found(exc) from None

        return web.json_response(await self.db.run(work))

    async def remove_moderator(self, request: web.Request) -> web.Response:
        user = require_identity(request).user

        def work(session: Session) -> None:
            event = _managed_event(session, user, request.match_info["ref"])
            try:
                svc.remove_moderator(session, event.id, request.match_info["username"])
            except svc.ChatError as exc:
                raise _not_found(exc) from None

        await self.db.run(work)
        return web.Response(status=204)
