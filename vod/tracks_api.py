"""A recording's text tracks over HTTP: ``/api/v1/recordings/{id}/tracks`` (list, upload, delete, each
track's WebVTT) and the replay page's upload and delete forms (``TrackForms``, rendered by ``web/pages.py``).

Reading follows the recording's access rule (``vod.page.decide``: a private recording's tracks need
its login or pass); adding and deleting, ``tracks.can_edit_tracks``. An upload is multipart
(``file``, ``language``, ``kind``, ``label``, ``forced``): its declared length is checked before the
body is read (and aiohttp stops reading at ``max_request_bytes``), the file is parsed whole, and only a
file without a problem is saved, track, version and search rows in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from sqlalchemy.orm import Session

from formats import webvtt
from formats.webvtt import Problem, SubtitleFileError
from live_server.db import Database
from live_server.errors import NotFound, PayloadTooLarge, Unprocessable
from live_server.http_request import identity_of, json_body, require_identity
from live_server.languages import own_name
from live_server.models import CaptionTrack, Recording, User
from live_server.passes import MediaPasses

from . import access, tracks as tr
from .page import decide
from .subtitles import SubtitleMedia

__all__ = ["TrackApi", "Upload", "UploadRefused"]

FORM_OVERHEAD = 64 * 1024  # the other fields and the multipart boundaries around the file


@dataclass
class Upload:
    language: str = ""
    kind: str = ""
    label: str = ""
    forced: bool = False
    filename: str = ""
    data: bytes = b""
    too_large: bool = False  # the file was over the limit (its first bytes only were read)


@dataclass
class UploadRefused(Exception):
    """What is wrong with an upload: per field (``language``, ``kind``, ``label``, ``file``) and, for the
    file, each problem with its line number."""

    fields: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def message(self) -> str:
        return "; ".join([f"{k}: {v}" for k, v in self.fields.items()] + [str(p) for p in self.problems])

    def problems_json(self) -> list[dict[str, Any]]:
        return [{"line": p.line, "code": p.code, "message": p.message, "fields": dict(p.fields)} for p in self.problems]


def _user(request: web.Request) -> User | None:
    identity = identity_of(request)
    return identity.user if identity else None


class TrackApi:
    """The tracks API and the forms' work (the pages call ``upload_form``/``delete_form``)."""

    def __init__(self, db: Database, passes: MediaPasses, subtitles: SubtitleMedia, max_bytes: int,
                 base_url: str) -> None:
        self.db = db
        self.passes = passes
        self.subtitles = subtitles
        self.max_bytes = max_bytes
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/recordings/{id}/tracks", self.list_api),
            web.post("/api/v1/recordings/{id}/tracks", self.upload_api),
            web.get("/api/v1/recordings/{id}/tracks/{track:[0-9]+}.vtt", self.track_vtt),
            web.delete("/api/v1/recordings/{id}/tracks/{track:[0-9]+}", self.delete_api),
            web.get("/api/v1/recordings/{id}/tracks/{track:[0-9]+}/cues", self.cues_api),
            web.get("/api/v1/recordings/{id}/tracks/{track:[0-9]+}/versions", self.versions_api),
            web.post("/api/v1/recordings/{id}/tracks/{track:[0-9]+}/versions", self.save_api),
            web.post("/api/v1/recordings/{id}/tracks/{track:[0-9]+}/versions/{number:[0-9]+}/publish", self.publish_api),
        ]

    # --- reading -----------------------------------------------------------------------------------------
    def _readable(self, request: web.Request, session: Session) -> Recording:
        row = access.find(session, request.match_info["id"], _user(request))
        if not decide(self.passes, request, session, row).allowed:
            raise NotFound("no such recording")
        return row

    def listing(self, session: Session, row: Recording, user: User | None) -> dict[str, Any]:
        """The recording's tracks as the API and the replay page show them."""
        rows = tr.tracks_of(session, row)
        names = {r.track_id: r for r in tr.renditions(tr.facts(rows), own_name)}
        api = f"{self.base_url}/api/v1/recordings/{row.public_ref}"
        return {"tracks": [{**tr.track_json(t, api, names[t.id].name), "default": names[t.id].default} for t in rows],
                "can_edit": tr.can_edit_tracks(session, user, row)}

    async def list_api(self, request: web.Request) -> web.Response:
        user = _user(request)
        return web.json_response(await self.db.run(lambda s: self.listing(s, self._readable(request, s), user)))

    async def track_vtt(self, request: web.Request) -> web.Response:
        """The whole track as one WebVTT file on the playable view (what ``<track>`` elements load)."""
        def work(session: Session) -> str:
            row = self._readable(request, session)
            track = tr.find_track(session, row, request.match_info["track"])
            return webvtt.render(tr.track_cues(session, row, track, row.trim_start))

        return web.Response(text=await self.db.run(work), content_type="text/vtt", charset="utf-8",
                            headers={"Cache-Control": "private, max-age=5"})

    # --- writing -----------------------------------------------------------------------------------------
    async def read_upload(self, request: web.Request) -> Upload:
        """The multipart fields; 413 before reading when the declared length is over the limit."""
        if not request.content_type.startswith("multipart/"):
            raise UploadRefused({"file": "send multipart/form-data with a file field"})
        if request.content_length is not None and request.content_length > self.max_bytes + FORM_OVERHEAD:
            raise PayloadTooLarge(f"a subtitle file may be at most {self.max_bytes} bytes")
        form = await request.post()  # bounded by max_request_bytes; the CSRF check may have read it already
        upload = Upload(language=str(form.get("language", "")), kind=str(form.get("kind", "")),
                        label=str(form.get("label", "")), forced=str(form.get("forced", "")) in ("1", "true", "on", "yes"))
        part = form.get("file")
        if not isinstance(part, FileField):
            raise UploadRefused({"file": "choose a WebVTT (.vtt) or SubRip (.srt) file"})
        data = part.file.read(self.max_bytes + 1)
        upload.filename, upload.data, upload.too_large = part.filename or "", data, len(data) > self.max_bytes
        return upload

    async def save(self, request: web.Request, user: User, upload: Upload) -> dict[str, Any]:
        """Validate everything, then save: a refused upload leaves nothing behind (UploadRefused)."""
        if upload.too_large:
            raise PayloadTooLarge(f"a subtitle file may be at most {self.max_bytes} bytes")
        refused = UploadRefused()
        values: dict[str, str] = {}
        for name, rule in (("language", tr.language_tag), ("kind", tr.kind_of), ("label", tr.label_of)):
            try:
                values[name] = rule(getattr(upload, name))
            except tr.TrackError as exc:
                refused.fields[name] = exc.message
        cues = []
        if not upload.data:
            refused.fields["file"] = "the file is empty"
        else:
            try:
                cues = tr.read_subtitles(upload.filename, upload.data)
            except SubtitleFileError as exc:
                refused.fields["file"] = "the file cannot be read as WebVTT or SubRip subtitles"
                refused.problems = list(exc.problems)
        if refused.fields:
            raise refused
        ref, api = request.match_info["id"], self.base_url

        def work(session: Session) -> dict[str, Any]:
            row = access.find(session, ref, user)
            if not tr.can_edit_tracks(session, user, row):
                raise NotFound("no such recording")
            track = tr.add_track(session, row, user.id, values["language"], values["kind"], values["label"],
                                  upload.forced, cues)
            session.flush()
            listing = self.listing(session, row, user)
            return next(t for t in listing["tracks"] if t["id"] == track.id) | {"cues": len(cues), "recording_id": row.id}

        body = await self.db.run(work)
        self.subtitles.invalidate(body["recording_id"])
        return body

    async def remove(self, request: web.Request, user: User, track_ref: str) -> None:
        ref = request.match_info["id"]

        def work(session: Session) -> int:
            row = access.find(session, ref, user)
            if not tr.can_edit_tracks(session, user, row):
                raise NotFound("no such recording")
            tr.delete_track(session, tr.find_track(session, row, track_ref))
            return row.id

        self.subtitles.invalidate(await self.db.run(work))

    async def upload_api(self, request: web.Request) -> web.Response:
        """201 with the track; 422 with ``details.problems`` (line numbers) when the file or a field is refused."""
        user = require_identity(request).user
        try:
            body = await self.save(request, user, await self.read_upload(request))
        except UploadRefused as exc:
            raise Unprocessable(exc.message(), code="invalid_subtitles",
                                details={"fields": exc.fields, "problems": exc.problems_json()}) from None
        body.pop("recording_id", None)
        return web.json_response(body, status=201, headers={"Location": body["url"].removesuffix(".vtt")})

    async def upload_form(self, request: web.Request, user: User) -> dict[str, Any]:
        """The replay page's form: ``{"saved": True}``, or what was refused (``fields``, ``problems``) with the
        values sent (to fill the form again)."""
        upload = Upload()
        try:
            upload = await self.read_upload(request)  # a declared length over the limit: 413, before reading
            await self.save(request, user, upload)
        except UploadRefused as exc:
            return {"saved": False, "fields": exc.fields, "problems": exc.problems_json(),
                    "values": {"language": upload.language, "kind": upload.kind, "label": upload.label}}
        except PayloadTooLarge:
            return {"saved": False, "fields": {"file": "too large"}, "problems": [], "too_large": self.max_bytes,
                    "values": {"language": upload.language, "kind": upload.kind, "label": upload.label}}
        return {"saved": True}

    async def delete_api(self, request: web.Request) -> web.Response:
        await self.remove(request, require_identity(request).user, request.match_info["track"])
        return web.Response(status=204)

    # --- the caption editor: versions -------------------------------------------------------------------
    def _editable(self, request: web.Request, session: Session, user: User) -> tuple[Recording, CaptionTrack]:
        row = access.find(session, request.match_info["id"], user)
        if not tr.can_edit_tracks(session, user, row):
            raise NotFound("no such recording")
        return row, tr.find_track(session, row, request.match_info["track"])

    async def cues_api(self, request: web.Request) -> web.Response:
        """The published cues on the recording's timeline, with the trim (``offset``) the player's view starts at."""
        user = require_identity(request).user

        def work(session: Session) -> dict[str, Any]:
            row, track = self._editable(request, session, user)
            return {"track_id": track.id, "language": track.language, "offset": row.trim_start,
                    "published": track.published_version or 1,
                    "cues": [[c.start, c.end, c.text] for c in tr.published_cues(session, row, track)]}

        return web.json_response(await self.db.run(work))

    async def versions_api(self, request: web.Request) -> web.Response:
        user = require_identity(request).user
        return web.json_response(await self.db.run(lambda s: tr.versions_json(s, self._editable(request, s, user)[1])))

    async def save_api(self, request: web.Request) -> web.Response:
        """``{"cues": [[start, end, text], ...]}`` (the recording's timeline): a new version, published; 201 with
        the versions. 422 names each refused cue by its position."""
        user = require_identity(request).user
        body = await json_body(request)
        try:
            cues = tr.checked_cues(body.get("cues") if isinstance(body, dict) else None)
        except tr.CuesRefused as exc:
            raise Unprocessable(str(exc), code="invalid_cues", details={
                "problems": [{"cue": p.index, "code": p.code} for p in exc.problems]}) from None

        def work(session: Session) -> dict[str, Any]:
            row, track = self._editable(request, session, user)
            tr.save_version(session, row, track, user.id, cues)
            return tr.versions_json(session, track) | {"recording_id": row.id}

        saved = await self.db.run(work)
        self.subtitles.invalidate(saved.pop("recording_id"))
        return web.json_response(saved, status=201)

    async def publish_api(self, request: web.Request) -> web.Response:
        """Viewers get that version from now on (``versions/1/publish``: back to the automatic captions, or the upload)."""
        user = require_identity(request).user
        number = int(request.match_info["number"][:9])

        def work(session: Session) -> dict[str, Any]:
            row, track = self._editable(request, session, user)
            tr.publish_version(session, row, track, number)
            return tr.versions_json(session, track) | {"recording_id": row.id}

        body = await self.db.run(work)
        self.subtitles.invalidate(body.pop("recording_id"))
        return web.json_response(body)
