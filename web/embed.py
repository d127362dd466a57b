"""Embedding: an iframe player page for public and unlisted events and recordings, and oEmbed for LMSs.

Moodle and other LMSs ask ``/oembed?url=<event or replay page>`` and get an ``<iframe>`` of
``/embed/...``. Only what anyone with the link may watch is embeddable: a private event (logged-in
users, password) answers 404 here, so its existence does not leak into another site. Embed pages
allow framing from anywhere (``frame-ancestors *``); every other page stays same-origin only.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.errors import NotFound
from live_server.db import Database
from live_server.models import Event, Recording, RecordingState, User, Visibility

from vod.access import find as find_recording
from web.pages import render
from web.templating import page_context, site_url, translator
from web.track_view import decorate_tracks


EMBEDDABLE = (Visibility.PUBLIC, Visibility.UNLISTED)
FRAMING = {"Content-Security-Policy": "frame-ancestors *", "Cache-Control": "no-cache"}
DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH = 640, 1920, 160
_EVENT_PATH = re.compile(r"^/(?:embed/)?events/([a-z0-9][a-z0-9-]*)/?$")
_RECORDING_PATH = re.compile(r"^/(?:embed/)?recordings/([A-Za-z0-9_-]+)/?$")


def _embeddable_event(session: Session, slug: str) -> Event:
    event = ev.get_event(session, slug)
    if event.visibility not in EMBEDDABLE:
        raise NotFound("no such event")
    return event


def _embeddable_recording(session: Session, ref: str) -> Recording:
    row = find_recording(session, ref, None)  # unlisted: only by its public id
    if row.visibility not in EMBEDDABLE or row.state != RecordingState.READY:
        raise NotFound("no such recording")
    return row


def _caption_language(session: Session, row: Recording) -> str | None:
    """The language of a recording's captions: its event's (what the live captions were made in)."""
    event = session.get(Event, row.event_id) if row.event_id is not None else None
    return event.caption_language if event is not None else None


def _framable(response: web.StreamResponse) -> web.StreamResponse:
    # The security-headers middleware merges this directive into the site's Content-Security-Policy and,
    # framing being allowed, sends no X-Frame-Options (it would contradict frame-ancestors *).
    response.headers.update(FRAMING)
    return response


def _unavailable(request: web.Request) -> web.StreamResponse:
    _ = translator(request)
    return _framable(render(request, "embed.html", {
        "title": _("This video cannot be shown here"), "unavailable": True, "page_url": site_url(request) + "/",
    }, status=404))


def _size(request: web.Request) -> tuple[int, int]:
    """16:9 within the consumer's maxwidth/maxheight (oEmbed 1.0, section 2.2)."""
    def limit(name: str) -> int | None:
        raw = request.query.get(name, "")
        return max(MIN_WIDTH // 2, min(int(raw), MAX_WIDTH * 2)) if raw.isdigit() else None

    width = min(DEFAULT_WIDTH, limit("maxwidth") or DEFAULT_WIDTH)
    height = round(width * 9 / 16)
    max_height = limit("maxheight")
    if max_height is not None and height > max_height:
        height = max_height
        width = round(height * 16 / 9)
    return width, height


class RecordingTracks(Protocol):
    """A recording's text tracks as the replay page lists them (``vod.page.page_tracks``, handed over at wiring)."""

    def __call__(self, session: Session, row: Recording) -> list[dict[str, Any]]: ...


class EmbedPages:
    """Embeddable players for other sites, and oEmbed."""

    def __init__(self, db: Database, tracks: RecordingTracks | None = None) -> None:
        self.db = db
        self.tracks = tracks  # every text track in the embedded replay's menu, as on the replay page

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/embed/events/{slug}", self.embed_event, name="embed_event"),
            web.get("/embed/recordings/{id}", self.embed_recording, name="embed_recording"),
            web.get("/oembed", self.oembed, name="oembed"),
        ]

    async def embed_event(self, request: web.Request) -> web.StreamResponse:
        slug, site = request.match_info["slug"], site_url(request)

        def context(session: Session) -> dict[str, Any]:
            event = _embeddable_event(session, slug)
            return {
                "title": event.title, "kind": "event", "state": event.state.value,
                "page_url": f"{site}/events/{event.slug}",
                "playback_url": f"/live/{event.slug}/master.m3u8", "api_url": f"/api/v1/events/{event.slug}",
                "poster": None, "caption_language": event.caption_language, "tracks": [],
            }

        return await self._embed_page(request, context)

    async def embed_recording(self, request: web.Request) -> web.StreamResponse:
        ref, site = request.match_info["id"], site_url(request)

        def context(session: Session) -> dict[str, Any]:
            row = _embeddable_recording(session, ref)
            return {
                "title": row.title, "kind": "recording", "state": "vod",
                "page_url": f"{site}/recordings/{row.public_ref}",
                "playback_url": f"/vod/{row.public_ref}/master.m3u8", "api_url": "",
                "poster": f"/vod/{row.public_ref}/thumbnail.jpg" if row.thumbnail_path else None,
                # the same text tracks as the replay page: an LMS shows students this player (WCAG 1.2.2)
                "caption_language": _caption_language(session, row),
                "tracks": self.tracks(session, row) if self.tracks is not None else [],
            }

        found = await self._found(context)
        if found is None:
            return _unavailable(request)
        found["tracks"] = decorate_tracks(found["tracks"], page_context(request)["lang"], translator(request))
        return _framable(render(request, "embed.html", {**found, "unavailable": False}))

    async def _found(self, context: Callable[[Session], dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return await self.db.run(context)
        except NotFound:
            return None

    async def _embed_page(
        self, request: web.Request, context: Callable[[Session], dict[str, Any]],
    ) -> web.StreamResponse:
        """The framable player page of what ``context`` finds embeddable, else the same 404 page for every refusal."""
        found = await self._found(context)
        if found is None:
            return _unavailable(request)
        return _framable(render(request, "embed.html", {**found, "unavailable": False}))

    async def oembed(self, request: web.Request) -> web.Response:
        """oEmbed 1.0 (JSON): a ``video`` whose ``html`` is an iframe of the embed page."""
        headers = {"Access-Control-Allow-Origin": "*"}
        if request.query.get("format", "json") != "json":
            raise web.HTTPNotImplemented(text="only format=json is offered\n", headers=headers)
        target = urlsplit(request.query.get("url", "").strip())
        base = site_url(request)
        ours = {urlsplit(base).netloc, request.host}
        event_match, recording_match = _EVENT_PATH.match(target.path), _RECORDING_PATH.match(target.path)
        if target.scheme not in ("http", "https") or target.netloc not in ours or not (event_match or recording_match):
            raise web.HTTPNotFound(text="no embeddable page at this URL\n", headers=headers)

        def work(session: Session) -> dict[str, Any]:
            if event_match:
                event = _embeddable_event(session, event_match.group(1))
                return {"title": event.title, "author_name": event.owner.display_name,
                        "src": f"{base}/embed/events/{event.slug}"}
            assert recording_match is not None
            row = _embeddable_recording(session, recording_match.group(1))
            owner_row = session.get(User, row.owner_id)
            owner = owner_row.display_name if owner_row is not None else None
            return {"title": row.title, "author_name": owner, "src": f"{base}/embed/recordings/{row.public_ref}"}

        try:
            found = await self.db.run(work)
        except NotFound:
            raise web.HTTPNotFound(text="no embeddable page at this URL\n", headers=headers) from None
        width, height = _size(request)
        _ = translator(request)
        html = (f'<iframe src="{escape(found["src"])}" width="{width}" height="{height}" title="{escape(found["title"])}" '
                'frameborder="0" allow="autoplay; fullscreen; picture-in-picture" allowfullscreen></iframe>')
        body = {
            "version": "1.0", "type": "video", "title": found["title"],
            "provider_name": _("Live lectures"), "provider_url": base + "/",
            "width": width, "height": height, "html": html, "cache_age": 300,
        }
        if found["author_name"]:
            body["author_name"] = found["author_name"]
        return web.json_response(body, headers=headers)
