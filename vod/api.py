"""/api/v1/recordings, chapters, search, and the /vod/{id}/... media route."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.errors import NotFound, Unprocessable
from live_server.keys import (
    DB, MEDIA_CACHE, MEDIA_PASS, RECORDING_DIRECTORY, RECORDING_STORES, RECORDINGS, SETTINGS,
)
from live_server.middleware import identity_of, json_body, require_identity
from live_server.models import Chapter, Recording, RecordingState, User
from live_server.session_people import SESSION_PEOPLE

from . import access, replay, search
from .catalog import RecordingUpdate
from .media import VodMediaHandler
from .page import decide

routes = web.RouteTableDef()


class ChapterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    offset: float | None = Field(None, ge=0)


class ChapterUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = Field(None, min_length=1, max_length=200)
    offset: float | None = Field(None, ge=0)


def _user(request: web.Request) -> User | None:
    identity = identity_of(request)
    return identity.user if identity else None


async def _recording_id(request: web.Request) -> int:
    """The recording the path names (``vod.access.find``: unlisted ones only by their public id)."""
    ref, user = request.match_info["id"], _user(request)
    return await request.app[DB].run(lambda s: access.find(s, ref, user).id)


def _get(session: Session, recording_id: int) -> Recording:
    row = session.get(Recording, recording_id)
    if row is None:
        raise NotFound("no such recording")
    return row


def readable(request: web.Request, session: Session, recording_id: int, user: User | None) -> Recording:
    """Read access to a recording's data: the API's rules plus, for password ones, a pass."""
    row = _get(session, recording_id)
    if not decide(request, session, row).allowed:
        raise NotFound("no such recording")
    return row


def _json(request: web.Request, row: Recording, user: User | None) -> dict[str, Any]:
    return access.recording_json(row, request.app[SETTINGS].base_url, access.can_manage(user, row))


def _parse(model: type[BaseModel], data: Any) -> Any:
    return ev.parse_payload(model, data)


# --- recordings ----------------------------------------------------------------------------


@routes.get("/api/v1/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    user = _user(request)
    event_ref = request.query.get("event")
    state = request.query.get("state")
    if state is not None and state not in {s.value for s in RecordingState}:
        raise Unprocessable(f"state must be one of {', '.join(s.value for s in RecordingState)}")

    def work(session: Session) -> list[dict[str, Any]]:
        query = access.listed(user)
        if event_ref:
            event = ev.get_event(session, event_ref, user)
            ev.ensure_readable(user, event)
            query = query.where(Recording.event_id == event.id)
        if state:
            query = query.where(Recording.state == RecordingState(state))
        rows = session.scalars(query.order_by(Recording.created_at.desc(), Recording.id.desc()).limit(200))
        return [_json(request, r, user) for r in rows]

    return web.json_response({"recordings": await request.app[DB].run(work)})


@routes.get("/api/v1/recordings/{id}")
async def read_recording(request: web.Request) -> web.Response:
    user = _user(request)
    recording_id = await _recording_id(request)

    def work(session: Session) -> dict[str, Any]:
        row = _get(session, recording_id)
        access.ensure_readable(user, row)
        return _json(request, row, user)

    return web.json_response(await request.app[DB].run(work))


@routes.patch("/api/v1/recordings/{id}")
async def update_recording(request: web.Request) -> web.Response:
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    data = _parse(RecordingUpdate, await json_body(request))
    await request.app[DB].run(lambda s: access.ensure_manageable(identity.user, _get(s, recording_id)))
    row = await request.app[RECORDINGS].update(recording_id, data)
    request.app[RECORDING_DIRECTORY].invalidate(recording_id)
    return web.json_response(_json(request, row, identity.user))


@routes.delete("/api/v1/recordings/{id}")
async def delete_recording(request: web.Request) -> web.Response:
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    row = await request.app[DB].run(lambda s: _manageable(s, recording_id, identity.user))
    await request.app[RECORDINGS].delete(recording_id)
    request.app[RECORDING_DIRECTORY].invalidate(recording_id)
    request.app[MEDIA_CACHE].forget_under(request.app[SETTINGS].media_dir / row.media_path)
    return web.Response(status=204)


def _manageable(session: Session, recording_id: int, user: User) -> Recording:
    row = _get(session, recording_id)
    access.ensure_manageable(user, row)
    return row


@routes.get("/api/v1/recordings/{id}/download.mp4")
async def download(request: web.Request) -> web.StreamResponse:
    """MP4 of the playable view for owners: a stream-copy remux, made once and kept beside the segments
    (for a recording in object storage: a 302 to a presigned URL of the MP4 object)."""
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    row = await request.app[DB].run(lambda s: _manageable(s, recording_id, identity.user))
    if row.state != RecordingState.READY:
        raise NotFound("the recording is not ready")
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in row.title)[:80].strip("-") or f"recording-{row.id}"
    path = await request.app[RECORDINGS].download(row, f"{name}.mp4")
    if isinstance(path, str):
        raise web.HTTPFound(path, headers={"Cache-Control": "private, no-store"})
    return web.FileResponse(path, headers={
        "Content-Type": "video/mp4", "Content-Disposition": f'attachment; filename="{name}.mp4"',
        "Cache-Control": "private, no-store",
    })


@routes.get("/api/v1/recordings/{id}/replay")
async def replay_data(request: web.Request) -> web.Response:
    """The recording with its captions, chapters, chat and answered questions, timed on the playable view."""
    user = _user(request)
    recording_id = await _recording_id(request)
    catalog = request.app[RECORDINGS]

    def work(session: Session) -> dict[str, Any]:
        row = readable(request, session, recording_id, user)
        segments = catalog.journal_segments(row.media_path, row.storage_url) if row.media_path else []
        return {"recording": _json(request, row, user), **replay.replay_data(session, row, segments, row.trim_start)}

    return web.json_response(await request.app[DB].run(work))


@routes.get("/api/v1/recordings/{id}/captions.vtt")
async def captions_vtt(request: web.Request) -> web.Response:
    user = _user(request)
    recording_id = await _recording_id(request)
    language = request.query.get("language") or None

    def work(session: Session) -> str:
        row = readable(request, session, recording_id, user)
        return replay.captions_vtt(session, row, row.trim_start, language)

    return _vtt(await request.app[DB].run(work))


@routes.get("/api/v1/recordings/{id}/chapters.vtt")
async def chapters_vtt(request: web.Request) -> web.Response:
    user = _user(request)
    recording_id = await _recording_id(request)

    def work(session: Session) -> str:
        row = readable(request, session, recording_id, user)
        return replay.chapters_vtt(session, row, row.trim_start)

    return _vtt(await request.app[DB].run(work))


def _vtt(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/vtt", charset="utf-8", headers={"Cache-Control": "private, max-age=5"})


# --- chapters ------------------------------------------------------------------------------


def _chapter_json(chapter: Chapter) -> dict[str, Any]:
    return {"id": chapter.id, "title": chapter.title, "offset": chapter.offset_seconds,
            "event_id": chapter.event_id, "recording_id": chapter.recording_id}


@routes.get("/api/v1/recordings/{id}/chapters")
async def list_chapters(request: web.Request) -> web.Response:
    user = _user(request)
    recording_id = await _recording_id(request)

    def work(session: Session) -> list[dict[str, Any]]:
        row = readable(request, session, recording_id, user)
        return [_chapter_json(c) for c in replay.chapters_of(session, row)]

    return web.json_response({"chapters": await request.app[DB].run(work)})


@routes.post("/api/v1/recordings/{id}/chapters")
async def add_recording_chapter(request: web.Request) -> web.Response:
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    data: ChapterCreate = _parse(ChapterCreate, await json_body(request))
    if data.offset is None:
        raise Unprocessable("invalid chapter: offset: required (seconds on the recording's timeline)")

    def work(session: Session) -> dict[str, Any]:
        row = _manageable(session, recording_id, identity.user)
        chapter = Chapter(event_id=row.event_id, recording_id=row.id, title=data.title, offset_seconds=data.offset)
        session.add(chapter)
        session.flush()
        return _chapter_json(chapter)

    return web.json_response(await request.app[DB].run(work), status=201)


@routes.patch("/api/v1/recordings/{id}/chapters/{chapter}")
async def update_chapter(request: web.Request) -> web.Response:
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    data: ChapterUpdate = _parse(ChapterUpdate, await json_body(request))

    def work(session: Session) -> dict[str, Any]:
        chapter = _chapter(session, request, recording_id, identity.user)
        if data.title is not None:
            chapter.title = data.title
        if data.offset is not None:
            chapter.offset_seconds = data.offset
        return _chapter_json(chapter)

    return web.json_response(await request.app[DB].run(work))


@routes.delete("/api/v1/recordings/{id}/chapters/{chapter}")
async def delete_chapter(request: web.Request) -> web.Response:
    identity = require_identity(request)
    recording_id = await _recording_id(request)
    await request.app[DB].run(lambda s: s.delete(_chapter(s, request, recording_id, identity.user)))
    return web.Response(status=204)


def _chapter(session: Session, request: web.Request, recording_id: int, user: User) -> Chapter:
    _manageable(session, recording_id, user)
    ref = request.match_info["chapter"]
    chapter = session.get(Chapter, int(ref)) if ref.isdigit() else None
    if chapter is None or chapter.recording_id != recording_id:
        raise NotFound("no such chapter")
    return chapter


@routes.get("/api/v1/events/{ref}/chapters")
async def list_event_chapters(request: web.Request) -> web.Response:
    user = _user(request)

    def work(session: Session) -> list[dict[str, Any]]:
        event = ev.get_event(session, request.match_info["ref"], user)
        ev.ensure_readable(user, event)
        rows = session.scalars(select(Chapter).where(Chapter.event_id == event.id)
                               .order_by(Chapter.recording_id, Chapter.offset_seconds, Chapter.id))
        return [_chapter_json(c) for c in rows]

    return web.json_response({"chapters": await request.app[DB].run(work)})


@routes.post("/api/v1/events/{ref}/chapters")
async def add_event_chapter(request: web.Request) -> web.Response:
    """A marker from the lecturer's dashboard: by default at the current time of the live stream."""
    identity = require_identity(request)
    data: ChapterCreate = _parse(ChapterCreate, await json_body(request))
    catalog = request.app[RECORDINGS]  # it follows the recorder's events: where the live stream is now

    def work(session: Session) -> dict[str, Any]:
        event = ev.get_event(session, request.match_info["ref"], identity.user)
        ev.ensure_manageable(identity.user, event)
        now = catalog.stream_time(event.id)
        if now is not None:
            recording_id, offset = now
            if data.offset is not None:
                offset = data.offset
        else:
            if data.offset is None:
                raise Unprocessable("invalid chapter: offset: required when the event is not being recorded live here")
            latest = session.scalar(select(Recording.id).where(Recording.event_id == event.id)
                                    .order_by(Recording.created_at.desc(), Recording.id.desc()).limit(1))
            if latest is None:
                raise Unprocessable("invalid chapter: the event has no recording to put a chapter in")
            recording_id, offset = latest, data.offset
        chapter = Chapter(event_id=event.id, recording_id=recording_id, title=data.title, offset_seconds=round(offset, 3))
        session.add(chapter)
        session.flush()
        return _chapter_json(chapter)

    return web.json_response(await request.app[DB].run(work), status=201)


# --- search and media ----------------------------------------------------------------------


@routes.get("/api/v1/search")
async def search_recordings(request: web.Request) -> web.Response:
    """?q=words: recordings whose title, description or captions contain them, with the moments."""
    user = _user(request)
    query = request.query.get("q", "").strip()[:200]
    if not search.words(query):
        raise Unprocessable("q: give at least one word to search for")
    base_url = request.app[SETTINGS].base_url
    results = await request.app[DB].run(lambda s: search.search(s, user, query, base_url))
    return web.json_response({"query": query, "results": results})


@routes.get("/vod/{id}/{tail:.+}")
async def vod_media(request: web.Request) -> web.StreamResponse:
    app = request.app
    handler = VodMediaHandler(app[RECORDING_DIRECTORY], app[MEDIA_CACHE], app[MEDIA_PASS], app[RECORDING_STORES],
                              app[SETTINGS].cookie_secure)
    return await handler(request, app[SESSION_PEOPLE])

