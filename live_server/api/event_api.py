"""/api/v1/events: list, create, read, update, delete, rotate the stream key."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import access, events as ev
from live_server.access import Person, event_target, person_of
from live_server.errors import Conflict, Unprocessable
from live_server.layout import event_live_folder
from live_server.db import Database
from live_server.http_request import identity_of, json_body, require_identity
from live_server.models import Event, EventState, User
from live_server.settings import Settings

log = logging.getLogger(__name__)



class LiveHealth(Protocol):
    """The live events this process carries (ingest nodes): their ingest health."""

    def health(self, event_id: int) -> dict[str, Any] | None: ...


class StatusBoard(Protocol):
    """What the ingest nodes of a cluster announce (through Redis)."""

    async def lookup(self, event_ids: list[int]) -> dict[int, dict[str, Any]]: ...


class ViewerCounts(Protocol):
    def count(self, event_id: int) -> int: ...


class AccessCache(Protocol):
    """Media access facts cached per event: dropped when an event changes."""

    def invalidate(self) -> None: ...


def render_event(session: Session, settings: Settings, event: Event, user: User | None,
                 person: Person | None = None) -> dict[str, Any]:
    """The event as the API shows it; its stream to its managers. ``person``: the caller with their courses, as the
    request resolved them (a list then asks the catalog nothing more per event)."""
    include = access.can_manage(person, event_target(event)) if person is not None else ev.can_manage(user, event)
    return ev.event_json(
        event,
        base_url=settings.base_url,
        rtmp_url=settings.rtmp_url,
        stream_key=ev.revealed_stream_key(session, event) if include else None,
        include_stream=include,
    )



def _user(request: web.Request) -> User | None:
    identity = identity_of(request)
    return identity.user if identity else None


def _manageable_event(session: Session, request: web.Request, user: User) -> Event:
    """The event named by the route, if ``user`` may change it (else NotFound or Forbidden, as the service says)."""
    event = ev.get_event(session, request.match_info["ref"], user)
    ev.ensure_manageable(user, event)
    return event


class EventsApi:
    """/api/v1/events: list, create, read, update, delete, rotate the stream key."""

    def __init__(self, db: Database, settings: Settings, viewers: ViewerCounts, access_cache: AccessCache,
                 live: LiveHealth | None, board: StatusBoard | None) -> None:
        self.db = db
        self.settings = settings
        self.viewers = viewers
        self.access_cache = access_cache
        self.live = live  # None where no ingest runs (role "web")
        self.board = board  # None without redis_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/events", self.list_events),
            web.post("/api/v1/events", self.create_event),
            web.get("/api/v1/events/{ref}", self.read_event),
            web.patch("/api/v1/events/{ref}", self.update_event),
            web.delete("/api/v1/events/{ref}", self.delete_event),
            web.post("/api/v1/events/{ref}/stream-key", self.rotate_stream_key),
        ]

    async def list_events(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        user = identity.user if identity else None
        courses = identity.courses if identity else frozenset()  # their courses' course-only events: they may see them
        person = person_of(identity)
        state_param = request.query.get("state")
        try:
            state = EventState(state_param) if state_param else None
        except ValueError:
            raise Unprocessable(f"state must be one of {', '.join(s.value for s in EventState)}") from None
        settings = self.settings

        def work(session: Session) -> list[dict[str, Any]]:
            return [render_event(session, settings, e, user, person) for e in ev.list_events(session, user, state, courses=courses)]

        events = await self.db.run(work)
        await self.add_live_status(*events)
        return web.json_response({"events": events})

    async def create_event(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        data = ev.parse_payload(ev.EventCreate, await json_body(request))
        settings = self.settings

        def work(session: Session) -> dict[str, Any]:
            user = session.merge(identity.user, load=False)
            event = ev.create_event(session, user, data)
            return render_event(session, settings, event, user)

        body = await self.db.run(work)
        return web.json_response(body, status=201, headers={"Location": f"/api/v1/events/{body['id']}"})

    async def read_event(self, request: web.Request) -> web.Response:
        user = _user(request)
        settings = self.settings

        def work(session: Session) -> dict[str, Any]:
            event = ev.get_event(session, request.match_info["ref"], user)
            ev.ensure_readable(user, event)
            return render_event(session, settings, event, user)

        body = await self.db.run(work)
        await self.add_live_status(body)
        return web.json_response(body)

    async def add_live_status(self, *bodies: dict[str, Any]) -> None:
        """Viewer count and, for live events, whether the stream is interrupted for everyone; ingest
        health (bitrate, fps, keyframes, stalled) and the ingest node for the owner — from this process
        when it carries the stream, else from the status board the ingest nodes keep in Redis."""
        live = self.live
        asked = [b["id"] for b in bodies if "stream" in b or b.get("state") == "live"]
        local = {event_id: live.health(event_id) for event_id in asked} if live is not None else {}
        remote: dict[int, dict[str, Any]] = {}
        wanted = [b["id"] for b in bodies if b.get("state") == "live" and local.get(b["id"]) is None]
        if self.board is not None and wanted:
            try:
                remote = await self.board.lookup(wanted)
            except Exception as exc:  # Redis down: the event is still shown, without health
                log.warning("live status lookup failed: %r", exc)
        for body in bodies:
            body["viewers"] = self.viewers.count(body["id"])
            known = local.get(body["id"]) or remote.get(body["id"], {}).get("health")
            body["interrupted"] = body.get("state") == "live" and interrupted(known)
            if "stream" not in body:
                continue
            health = local.get(body["id"])
            if health is not None:
                body["stream"]["health"] = health
                body["stream"]["ingest_node"] = self.settings.effective_node_name
            else:
                status = remote.get(body["id"], {})
                body["stream"]["health"] = status.get("health")
                body["stream"]["ingest_node"] = status.get("node")

    async def update_event(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        data = ev.parse_payload(ev.EventUpdate, await json_body(request))
        settings = self.settings

        def work(session: Session) -> dict[str, Any]:
            event = _manageable_event(session, request, identity.user)
            ev.update_event(session, event, data)
            return render_event(session, settings, event, identity.user)

        body = await self.db.run(work)
        self.access_cache.invalidate()  # a new password, visibility or slug applies to media at once
        return web.json_response(body)

    async def delete_event(self, request: web.Request) -> web.Response:
        identity = require_identity(request)

        def work(session: Session) -> int:
            event = _manageable_event(session, request, identity.user)
            ev.ensure_deletable(identity.user, event)
            if event.state == EventState.LIVE:
                raise Conflict("the event is live; stop the stream before deleting it")
            session.delete(event)
            return event.id

        event_id = await self.db.run(work)
        # Its live runs go with it (its recordings are catalog items of their own, deleted on their own).
        folder = event_live_folder(self.settings.media_dir, event_id)
        await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(folder, ignore_errors=True))
        self.access_cache.invalidate()
        return web.Response(status=204)

    async def rotate_stream_key(self, request: web.Request) -> web.Response:
        """Issue a new stream key; the old one stops working at once (a live publish is not cut)."""
        identity = require_identity(request)
        settings = self.settings

        def work(session: Session) -> dict[str, Any]:
            event = _manageable_event(session, request, identity.user)
            ev.issue_stream_key(session, event)
            return render_event(session, settings, event, identity.user)

        return web.json_response(await self.db.run(work))


def interrupted(health: dict[str, Any] | None) -> bool:
    """No media is arriving on a live event: the publisher left (grace period) or is connected but silent.
    Players then show a frozen frame; the event page says why (and that it resumes by itself)."""
    if not health:
        return False
    return bool(health.get("in_grace_period") or (health.get("publishing") and health.get("stalled")))
