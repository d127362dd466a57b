"""/api/v1/events: list, create, read, update, delete, rotate the stream key."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.errors import Conflict, Unprocessable
from live_server.layout import event_live_folder
from live_server.keys import DB, LIVE, LIVE_BOARD, MEDIA_DIRECTORY, SETTINGS, VIEWERS
from live_server.middleware import identity_of, json_body, require_identity
from live_server.models import Event, EventState, User
from live_server.settings import Settings

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def render_event(session: Session, settings: Settings, event: Event, user: User | None) -> dict[str, Any]:
    include = ev.can_manage(user, event)
    return ev.event_json(
        event,
        base_url=settings.base_url,
        rtmp_url=settings.rtmp_url,
        stream_key=ev.revealed_stream_key(session, event) if include else None,
        include_stream=include,
    )


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    identity = identity_of(request)
    user = identity.user if identity else None
    state_param = request.query.get("state")
    try:
        state = EventState(state_param) if state_param else None
    except ValueError:
        raise Unprocessable(f"state must be one of {', '.join(s.value for s in EventState)}") from None
    settings = request.app[SETTINGS]

    def work(session: Session) -> list[dict[str, Any]]:
        return [render_event(session, settings, e, user) for e in ev.list_events(session, user, state)]

    events = await request.app[DB].run(work)
    await add_live_status(request.app, *events)
    return web.json_response({"events": events})


@routes.post("/api/v1/events")
async def create_event(request: web.Request) -> web.Response:
    identity = require_identity(request)
    data = ev.parse_payload(ev.EventCreate, await json_body(request))
    settings = request.app[SETTINGS]

    def work(session: Session) -> dict[str, Any]:
        user = session.merge(identity.user, load=False)
        event = ev.create_event(session, user, data)
        return render_event(session, settings, event, user)

    body = await request.app[DB].run(work)
    return web.json_response(body, status=201, headers={"Location": f"/api/v1/events/{body['id']}"})


@routes.get("/api/v1/events/{ref}")
async def read_event(request: web.Request) -> web.Response:
    identity = identity_of(request)
    user = identity.user if identity else None
    settings = request.app[SETTINGS]

    def work(session: Session) -> dict[str, Any]:
        event = ev.get_event(session, request.match_info["ref"], user)
        ev.ensure_readable(user, event)
        return render_event(session, settings, event, user)

    body = await request.app[DB].run(work)
    await add_live_status(request.app, body)
    return web.json_response(body)


async def add_live_status(app: web.Application, *bodies: dict[str, Any]) -> None:
    """Viewer count and, for live events, whether the stream is interrupted for everyone; ingest
    health (bitrate, fps, keyframes, stalled) and the ingest node for the owner — from this process
    when it carries the stream, else from the status board the ingest nodes keep in Redis."""
    live = app.get(LIVE)
    asked = [b["id"] for b in bodies if "stream" in b or b.get("state") == "live"]
    local = {event_id: live.health(event_id) for event_id in asked} if live is not None else {}
    remote: dict[int, dict[str, Any]] = {}
    board = app.get(LIVE_BOARD)
    wanted = [b["id"] for b in bodies if b.get("state") == "live" and local.get(b["id"]) is None]
    if board is not None and wanted:
        try:
            remote = await board.lookup(wanted)
        except Exception as exc:  # Redis down: the event is still shown, without health
            log.warning("live status lookup failed: %r", exc)
    for body in bodies:
        body["viewers"] = app[VIEWERS].count(body["id"])
        known = local.get(body["id"]) or remote.get(body["id"], {}).get("health")
        body["interrupted"] = body.get("state") == "live" and interrupted(known)
        if "stream" not in body:
            continue
        health = local.get(body["id"])
        if health is not None:
            body["stream"]["health"] = health
            body["stream"]["ingest_node"] = app[SETTINGS].effective_node_name
        else:
            status = remote.get(body["id"], {})
            body["stream"]["health"] = status.get("health")
            body["stream"]["ingest_node"] = status.get("node")


def interrupted(health: dict[str, Any] | None) -> bool:
    """No media is arriving on a live event: the publisher left (grace period) or is connected but silent.
    Players then show a frozen frame; the event page says why (and that it resumes by itself)."""
    if not health:
        return False
    return bool(health.get("in_grace_period") or (health.get("publishing") and health.get("stalled")))


@routes.patch("/api/v1/events/{ref}")
async def update_event(request: web.Request) -> web.Response:
    identity = require_identity(request)
    data = ev.parse_payload(ev.EventUpdate, await json_body(request))
    settings = request.app[SETTINGS]

    def work(session: Session) -> dict[str, Any]:
        event = ev.get_event(session, request.match_info["ref"], identity.user)
        ev.ensure_manageable(identity.user, event)
        ev.update_event(session, event, data)
        return render_event(session, settings, event, identity.user)

    body = await request.app[DB].run(work)
    request.app[MEDIA_DIRECTORY].invalidate()  # a new password, visibility or slug applies to media at once
    return web.json_response(body)


@routes.delete("/api/v1/events/{ref}")
async def delete_event(request: web.Request) -> web.Response:
    identity = require_identity(request)

    def work(session: Session) -> int:
        event = ev.get_event(session, request.match_info["ref"], identity.user)
        ev.ensure_manageable(identity.user, event)
        if event.state == EventState.LIVE:
            raise Conflict("the event is live; stop the stream before deleting it")
        session.delete(event)
        return event.id

    event_id = await request.app[DB].run(work)
    # Its live runs go with it (its recordings are catalog items of their own, deleted on their own).
    folder = event_live_folder(request.app[SETTINGS].media_dir, event_id)
    await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(folder, ignore_errors=True))
    request.app[MEDIA_DIRECTORY].invalidate()
    return web.Response(status=204)


@routes.post("/api/v1/events/{ref}/stream-key")
async def rotate_stream_key(request: web.Request) -> web.Response:
    """Issue a new stream key; the old one stops working at once (a live publish is not cut)."""
    identity = require_identity(request)
    settings = request.app[SETTINGS]

    def work(session: Session) -> dict[str, Any]:
        event = ev.get_event(session, request.match_info["ref"], identity.user)
        ev.ensure_manageable(identity.user, event)
        ev.issue_stream_key(session, event)
        return render_event(session, settings, event, identity.user)

    return web.json_response(await request.app[DB].run(work))
