"""The home page (live now, upcoming, recent recordings) and search over events and transcripts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.keys import DB, VIEWERS
from live_server.models import Event, EventState, Recording, RecordingState
from vod import access as recording_access
from vod import search as transcript_search
from web.guards import current_user
from web.templating import site_url
from web.pages import render

routes = web.RouteTableDef()

UPCOMING_SHOWN = 12
RECORDINGS_SHOWN = 8
QUERY_MAX = 200
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"  # drawn from favicon.svg (16, 32, 48 px)


@dataclass
class LiveEvent:
    event: Event
    viewers: int


@routes.get("/", name="home")
async def home(request: web.Request) -> web.Response:
    user = current_user(request)

    def work(session: Session) -> dict[str, Any]:
        recent = session.scalars(
            recording_access.listed(user).where(Recording.state == RecordingState.READY)
            .order_by(Recording.created_at.desc(), Recording.id.desc()).limit(RECORDINGS_SHOWN)
        )
        return {
            "live": ev.list_events(session, user, EventState.LIVE),
            "upcoming": ev.list_events(session, user, EventState.SCHEDULED, limit=UPCOMING_SHOWN),
            "recordings": list(recent),
        }

    data = await request.app[DB].run(work)
    viewers = request.app[VIEWERS]
    data["live"] = [LiveEvent(e, viewers.count(e.id)) for e in data["live"]]
    return render(request, "home.html", {**data, "query": ""})


@routes.get("/search", name="search")
async def search(request: web.Request) -> web.Response:
    """Events by title, and recordings by title, description and what was said (vod/search.py)."""
    user = current_user(request)
    query = request.query.get("q", "").strip()[:QUERY_MAX]
    base = site_url(request)

    def work(session: Session) -> dict[str, Any]:
        if not transcript_search.words(query):
            return {"events": [], "recordings": []}
        return {
            "events": ev.list_events(session, user, title_contains=query, limit=50),
            "recordings": transcript_search.search(session, user, query, base),
        }

    results = await request.app[DB].run(work)
    return render(request, "search.html", {"query": query, **results})


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers, feed readers and bookmarks ask for /favicon.ico whatever the page links (the pages link the SVG)."""
    return web.FileResponse(FAVICON, headers={"Cache-Control": "public, max-age=86400"})
