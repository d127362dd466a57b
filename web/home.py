"""The home page (live now, upcoming, recent recordings) and search over events and transcripts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.db import Database
from live_server.http_request import identity_of
from live_server.models import Event, EventState, Recording, RecordingState
from vod import access as recording_access
from vod import search as transcript_search
from web.guards import current_user
from web.media import ViewerCounter
from web.templating import page_context, site_url
from web.transcription_view import language_options
from web.pages import render


UPCOMING_SHOWN = 12
RECORDINGS_SHOWN = 8
QUERY_MAX = 200
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"  # drawn from favicon.svg (16, 32, 48 px)


def _courses(request: web.Request) -> frozenset[int]:
    """The LTI courses the visitor launched from: their course-only events and recordings are theirs to see too."""
    identity = identity_of(request)
    return identity.courses if identity else frozenset()


@dataclass
class LiveEvent:
    event: Event
    viewers: int


class HomePages:
    """The home page, search and the favicon."""

    def __init__(self, db: Database, viewers: ViewerCounter) -> None:
        self.db = db
        self.viewers = viewers

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.home, name="home"),
            web.get("/search", self.search, name="search"),
            web.get("/favicon.ico", self.favicon),
        ]

    async def home(self, request: web.Request) -> web.Response:
        user, courses = current_user(request), _courses(request)

        def work(session: Session) -> dict[str, Any]:
            recent = session.scalars(
                recording_access.listed(user, courses).where(Recording.state == RecordingState.READY)
                .order_by(Recording.created_at.desc(), Recording.id.desc()).limit(RECORDINGS_SHOWN)
            )
            return {
                "live": ev.list_events(session, user, EventState.LIVE, courses=courses),
                "upcoming": ev.list_events(session, user, EventState.SCHEDULED, limit=UPCOMING_SHOWN, courses=courses),
                "recordings": list(recent),
            }

        data = await self.db.run(work)
        viewers = self.viewers
        data["live"] = [LiveEvent(e, viewers.count(e.id)) for e in data["live"]]
        return render(request, "home.html", {**data, "query": ""})

    async def search(self, request: web.Request) -> web.Response:
        """Events by title, and recordings by title, description and what was said (vod/search.py)."""
        user, courses = current_user(request), _courses(request)
        query = request.query.get("q", "").strip()[:QUERY_MAX]
        base = site_url(request)
        wanted = request.query.get("language", "").strip()[:35]

        def work(session: Session) -> dict[str, Any]:
            languages = transcript_search.spoken_languages(session)
            language = wanted if wanted in languages else None  # only a language something was said in
            found: dict[str, Any] = {"languages": languages, "language": language}
            if not transcript_search.words(query):
                return {**found, "events": [], "recordings": []}
            return {
                **found,
                "events": ev.list_events(session, user, title_contains=query, limit=50, courses=courses),
                "recordings": transcript_search.search(session, user, query, base, courses=courses, language=language),
            }

        results = await self.db.run(work)
        lang = page_context(request)["lang"]
        results["language_options"] = language_options(results.pop("languages"), lang)
        return render(request, "search.html", {"query": query, **results})

    async def favicon(self, request: web.Request) -> web.FileResponse:
        """Browsers, feed readers and bookmarks ask for /favicon.ico whatever the page links (the pages link the SVG)."""
        return web.FileResponse(FAVICON, headers={"Cache-Control": "public, max-age=86400"})
