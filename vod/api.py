"""/api/v1/recordings, chapters, search, and the /vod/{id}/... media route."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.access import person_of
from live_server.errors import NotFound, Unprocessable
from live_server.db import Database
from live_server.http_request import identity_of, json_body, require_identity
from live_server.models import Chapter, Recording, RecordingState, User
from live_server.passes import MediaPasses
from live_server.settings import Settings
from web.media import MediaCache, PersonSource

from . import access, replay, search, tracks
from .catalog import RecordingCatalog, RecordingUpdate
from .media import RecordingDirectory, VodMediaHandler
from .page import decide


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


def _courses(request: web.Request) -> frozenset[int]:
    """The LTI courses the caller launched from, as the request resolved them (their course-only recordings)."""
    identity = identity_of(request)
    return identity.courses if identity else frozenset()


def _get(session: Session, recording_id: int) -> Recording:
    row = session.get(Recording, recording_id)
    if row is None:
        raise NotFound("no such recording")
    return row


def _parse(model: type[BaseModel], data: Any) -> Any:
    return ev.parse_payload(model, data)


def _manageable(session: Session, recording_id: int, user: User) -> Recording:
    row = _get(session, recording_id)
    access.ensure_manageable(user, row)
    return row


def _vtt(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/vtt", charset="utf-8", headers={"Cache-Control": "private, max-age=5"})


def _chapter_json(chapter: Chapter) -> dict[str, Any]:
    return {"id": chapter.id, "title": chapter.title, "offset": chapter.offset_seconds,
            "event_id": chapter.event_id, "recording_id": chapter.recording_id}


def _add_chapter(session: Session, event_id: int | None, recording_id: int, title: str, offset: float) -> dict[str, Any]:
    """A new chapter, as the API shows it (with its id: flushed)."""
    chapter = Chapter(event_id=event_id, recording_id=recording_id, title=title, offset_seconds=offset)
    session.add(chapter)
    session.flush()
    return _chapter_json(chapter)


def _chapter(session: Session, request: web.Request, recording_id: int, user: User) -> Chapter:
    _manageable(session, recording_id, user)
    ref = request.match_info["chapter"]
    chapter = session.get(Chapter, int(ref)) if ref.isdigit() else None
    if chapter is None or chapter.recording_id != recording_id:
        raise NotFound("no such chapter")
    return chapter


class RecordingsApi:
    """/api/v1/recordings, chapters, search, and the /vod/{id}/... media route."""

    def __init__(self, db: Database, catalog: RecordingCatalog, directory: RecordingDirectory, cache: MediaCache,
                 passes: MediaPasses, settings: Settings, media: VodMediaHandler,
                 people: PersonSource) -> None:
        self.db = db
        self.catalog = catalog
        self.directory = directory
        self.cache = cache
        self.passes = passes
        self.settings = settings
        self.media = media  # built once, at wiring
        self.people = people

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/recordings", self.list_recordings),
            web.get("/api/v1/recordings/{id}", self.read_recording),
            web.patch("/api/v1/recordings/{id}", self.update_recording),
            web.delete("/api/v1/recordings/{id}", self.delete_recording),
            web.get("/api/v1/recordings/{id}/download.mp4", self.download),
            web.get("/api/v1/recordings/{id}/replay", self.replay_data),
            web.get("/api/v1/recordings/{id}/captions.vtt", self.captions_vtt),
            web.get("/api/v1/recordings/{id}/chapters.vtt", self.chapters_vtt),
            web.get("/api/v1/recordings/{id}/transcript.{kind:vtt|srt|txt}", self.transcript_file),
            web.get("/api/v1/recordings/{id}/chapters", self.list_chapters),
            web.post("/api/v1/recordings/{id}/chapters", self.add_recording_chapter),
            web.patch("/api/v1/recordings/{id}/chapters/{chapter}", self.update_chapter),
            web.delete("/api/v1/recordings/{id}/chapters/{chapter}", self.delete_chapter),
            web.get("/api/v1/events/{ref}/chapters", self.list_event_chapters),
            web.post("/api/v1/events/{ref}/chapters", self.add_event_chapter),
            web.get("/api/v1/search", self.search_recordings),
            web.get("/vod/{id}/{tail:.+}", self.vod_media),
        ]

    async def _recording_id(self, request: web.Request) -> int:
        """The recording the path names (``vod.access.find``: unlisted ones only by their public id)."""
        ref, user = request.match_info["id"], _user(request)
        return await self.db.run(lambda s: access.find(s, ref, user).id)

    def readable(self, request: web.Request, session: Session, recording_id: int, user: User | None) -> Recording:
        """Read access to a recording's data: the API's rules plus, for password ones, a pass."""
        row = _get(session, recording_id)
        if not decide(self.passes, request, session, row).allowed:
            raise NotFound("no such recording")
        return row

    def _json(self, request: web.Request, row: Recording, user: User | None) -> dict[str, Any]:
        manage = access.manages(user, row, person_of(identity_of(request)))  # the caller's courses, as resolved
        return access.recording_json(row, self.settings.base_url, manage)

    async def list_recordings(self, request: web.Request) -> web.Response:
        user = _user(request)
        courses = _courses(request)
        event_ref = request.query.get("event")
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in RecordingState}:
            raise Unprocessable(f"state must be one of {', '.join(s.value for s in RecordingState)}")

        def work(session: Session) -> list[dict[str, Any]]:
            query = access.listed(user, courses)
            if event_ref:
                event = ev.get_event(session, event_ref, user)
                ev.ensure_readable(user, event)
                query = query.where(Recording.event_id == event.id)
            if state:
                query = query.where(Recording.state == RecordingState(state))
            rows = session.scalars(query.order_by(Recording.created_at.desc(), Recording.id.desc()).limit(200))
            return [self._json(request, r, user) for r in rows]

        return web.json_response({"recordings": await self.db.run(work)})

    async def read_recording(self, request: web.Request) -> web.Response:
        user = _user(request)
        recording_id = await self._recording_id(request)

        def work(session: Session) -> dict[str, Any]:
            row = _get(session, recording_id)
            access.ensure_readable(user, row)
            return self._json(request, row, user)

        return web.json_response(await self.db.run(work))

    async def update_recording(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        recording_id = await self._recording_id(request)
        data = _parse(RecordingUpdate, await json_body(request))
        await self.db.run(lambda s: access.ensure_manageable(identity.user, _get(s, recording_id)))
        row = await self.catalog.update(recording_id, data)
        self.directory.invalidate(recording_id)
        return web.json_response(self._json(request, row, identity.user))

    async def delete_recording(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        recording_id = await self._recording_id(request)

        def deletable(session: Session) -> Recording:
            row = _get(session, recording_id)
            access.ensure_deletable(identity.user, row)  # a course's other instructors edit it, they do not delete it
            return row

        row = await self.db.run(deletable)
        await self.catalog.delete(recording_id)
        self.directory.invalidate(recording_id)
        self.cache.forget_under(self.settings.media_dir / row.media_path)
        return web.Response(status=204)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """MP4 of the playable view for owners: a stream-copy remux, made once and kept beside the segments
        (for a recording in object storage: a 302 to a presigned URL of the MP4 object)."""
        identity = require_identity(request)
        recording_id = await self._recording_id(request)
        row = await self.db.run(lambda s: _manageable(s, recording_id, identity.user))
        if row.state != RecordingState.READY:
            raise NotFound("the recording is not ready")
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in row.title)[:80].strip("-") or f"recording-{row.id}"
        path = await self.catalog.download(row, f"{name}.mp4")
        if isinstance(path, str):
            raise web.HTTPFound(path, headers={"Cache-Control": "private, no-store"})
        return web.FileResponse(path, headers={
            "Content-Type": "video/mp4", "Content-Disposition": f'attachment; filename="{name}.mp4"',
            "Cache-Control": "private, no-store",
        })

    async def replay_data(self, request: web.Request) -> web.Response:
        """The recording with its captions, chapters, chat and answered questions, timed on the playable view."""
        user = _user(request)
        recording_id = await self._recording_id(request)
        catalog = self.catalog

        def work(session: Session) -> dict[str, Any]:
            row = self.readable(request, session, recording_id, user)
            segments = catalog.journal_segments(row.media_path, row.storage_url) if row.media_path else []
            return {"recording": self._json(request, row, user), **replay.replay_data(session, row, segments, row.trim_start)}

        return web.json_response(await self.db.run(work))

    async def captions_vtt(self, request: web.Request) -> web.Response:
        user = _user(request)
        recording_id = await self._recording_id(request)
        language = request.query.get("language") or None

        def work(session: Session) -> str:
            row = self.readable(request, session, recording_id, user)
            return replay.captions_vtt(session, row, row.trim_start, language)

        return _vtt(await self.db.run(work))

    async def transcript_file(self, request: web.Request) -> web.Response:
        """The captions as a file to keep: WebVTT, SubRip or plain text (``?language=`` as for captions.vtt)."""
        user = _user(request)
        recording_id = await self._recording_id(request)
        language = request.query.get("language") or None
        kind = request.match_info["kind"]

        def work(session: Session) -> tuple[str, str]:
            row = self.readable(request, session, recording_id, user)
            name = "".join(c if c.isalnum() or c in "-_" else "-" for c in row.title)[:80].strip("-") or f"recording-{row.id}"
            return name, replay.transcript(replay.caption_cues(session, row, row.trim_start, language), kind)

        name, text = await self.db.run(work)
        content_type = {"vtt": "text/vtt", "srt": "application/x-subrip", "txt": "text/plain"}[kind]
        return web.Response(text=text, content_type=content_type, charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}.{kind}"', "Cache-Control": "private, no-store"})

    async def chapters_vtt(self, request: web.Request) -> web.Response:
        user = _user(request)
        recording_id = await self._recording_id(request)

        def work(session: Session) -> str:
            row = self.readable(request, session, recording_id, user)
            return replay.chapters_vtt(session, row, row.trim_start)

        return _vtt(await self.db.run(work))

    async def list_chapters(self, request: web.Request) -> web.Response:
        user = _user(request)
        recording_id = await self._recording_id(request)

        def work(session: Session) -> list[dict[str, Any]]:
            row = self.readable(request, session, recording_id, user)
            return [_chapter_json(c) for c in replay.chapters_of(session, row)]

        return web.json_response({"chapters": await self.db.run(work)})

    async def add_recording_chapter(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        recording_id = await self._recording_id(request)
        data: ChapterCreate = _parse(ChapterCreate, await json_body(request))
        if data.offset is None:
            raise Unprocessable("invalid chapter: offset: required (seconds on the recording's timeline)")
        offset = data.offset

        def work(session: Session) -> dict[str, Any]:
            row = _manageable(session, recording_id, identity.user)
            return _add_chapter(session, row.event_id, row.id, data.title, offset)

        return web.json_response(await self.db.run(work), status=201)

    async def update_chapter(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        recording_id = await self._recording_id(request)
        data: ChapterUpdate = _parse(ChapterUpdate, await json_body(request))

        def work(session: Session) -> dict[str, Any]:
            chapter = _chapter(session, request, recording_id, identity.user)
            if data.title is not None:
                chapter.title = data.title
            if data.offset is not None:
                chapter.offset_seconds = data.offset
            return _chapter_json(chapter)

        return web.json_response(await self.db.run(work))

    async def delete_chapter(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        recording_id = await self._recording_id(request)
        await self.db.run(lambda s: s.delete(_chapter(s, request, recording_id, identity.user)))
        return web.Response(status=204)

    async def list_event_chapters(self, request: web.Request) -> web.Response:
        user = _user(request)

        def work(session: Session) -> list[dict[str, Any]]:
            event = ev.get_event(session, request.match_info["ref"], user)
            ev.ensure_readable(user, event)
            rows = session.scalars(select(Chapter).where(Chapter.event_id == event.id)
                                   .order_by(Chapter.recording_id, Chapter.offset_seconds, Chapter.id))
            return [_chapter_json(c) for c in rows]

        return web.json_response({"chapters": await self.db.run(work)})

    async def add_event_chapter(self, request: web.Request) -> web.Response:
        """A marker from the lecturer's dashboard: by default at the current time of the live stream."""
        identity = require_identity(request)
        data: ChapterCreate = _parse(ChapterCreate, await json_body(request))
        catalog = self.catalog  # it keeps, from the recorder's events, where a recorded live stream is now

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
            return _add_chapter(session, event.id, recording_id, data.title, round(offset, 3))

        return web.json_response(await self.db.run(work), status=201)

    async def search_recordings(self, request: web.Request) -> web.Response:
        """?q=words[&language=fr]: recordings whose title, description or captions (in that language) contain them,
        with the moments."""
        user = _user(request)
        query = request.query.get("q", "").strip()[:200]
        if not search.words(query):
            raise Unprocessable("q: give at least one word to search for")
        base_url = self.settings.base_url
        language = request.query.get("language", "").strip() or None
        if language is not None:
            try:
                language = tracks.language_tag(language)
            except tracks.TrackError as exc:
                raise Unprocessable(str(exc)) from None
        courses = _courses(request)
        results = await self.db.run(lambda s: search.search(s, user, query, base_url, courses=courses, language=language))
        return web.json_response({"query": query, "language": language, "results": results})

    async def vod_media(self, request: web.Request) -> web.StreamResponse:
        return await self.media(request, self.people)
