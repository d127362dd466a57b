"""``/api/v1/recordings/{ref}/audio-description`` (GET, POST, DELETE) and the replay page's two forms.

Owners, admins and the moderators of the recording's event only (``accounts.can_process_recording``: who may transcribe it may describe it);
everyone else gets the 404 a missing recording gets. Cookie sessions send the CSRF token (checked by the
request pipeline before any handler runs): the API as the ``X-CSRF-Token`` header (the body is then
streamed to disk, never buffered), the page's form as its ``csrf_token`` field.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from sqlalchemy import select
from sqlalchemy.orm import Session

from formats.webvtt import Cue
from live_server import accounts
from live_server.db import Database
from live_server.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, Unprocessable
from live_server.http_request import require_identity
from live_server.models import Recording, User

from . import tracks
from .access import PUBLIC_REF
from .audio_description import DescriptionsError, parse_descriptions
from .audio_descriptions import (
    AudioDescriptionConflict, AudioDescriptionRefused, AudioDescriptions, track_json,
)

__all__ = ["AudioDescriptionApi"]

LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
DESCRIPTIONS_LIMIT = 2 * 2**20
CHUNK = 256 * 1024


def _recording(session: Session, ref: str, user: User) -> Recording:
    row: Recording | None = None
    if ref.isascii() and ref.isdigit() and len(ref) < 19:
        row = session.get(Recording, int(ref))
    elif PUBLIC_REF.match(ref):
        row = session.scalar(select(Recording).where(Recording.public_id == ref))
    if row is None or not accounts.can_process_recording(session, user, row):
        raise NotFound("no such recording")
    return row


def _language(value: str | None) -> str:
    language = (value or "").strip().lower()
    if not LANGUAGE.match(language):
        raise Unprocessable("send the track's language as a code such as fr or en", code="bad_language")
    return language


class AudioDescriptionApi:
    """The recording's audio-description tracks: list, make (upload or generate), remove."""

    def __init__(self, db: Database, descriptions: AudioDescriptions, upload_folder: Path, max_upload_bytes: int) -> None:
        self.db = db
        self.descriptions = descriptions
        self.upload_folder = upload_folder
        self.max_upload_bytes = max_upload_bytes

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/recordings/{ref}/audio-description", self.status),
            web.post("/api/v1/recordings/{ref}/audio-description", self.create_api),
            web.delete("/api/v1/recordings/{ref}/audio-description", self.remove_api),
            web.post("/recordings/{ref}/audio-description", self.create_form),
            web.post("/recordings/{ref}/audio-description/delete", self.remove_form),
        ]

    async def _find(self, request: web.Request) -> Recording:
        user, ref = require_identity(request).user, request.match_info["ref"]
        return await self.db.run(lambda s: _recording(s, ref, user))

    async def status(self, request: web.Request) -> web.Response:
        """The recording's tracks (state ``pending``, ``ready`` or ``failed`` with the reason) and the voices."""
        row = await self._find(request)
        tracks = await self.descriptions.tracks(row.id)
        base = f"/vod/{row.public_ref}"
        return web.json_response({"tracks": [track_json(t, base) for t in tracks],
                                  "voices": sorted(v for v in await self.descriptions.voices() if "-" not in v)})

    # --- making a track ----------------------------------------------------------------------------
    async def _read(self, request: web.Request) -> tuple[dict[str, str], Path | None, str | None]:
        """The form's ``language``, and either its ``file`` (audio, saved to disk) or its ``descriptions`` (WebVTT)."""
        if not request.content_type.startswith("multipart/"):
            raise BadRequest("send multipart/form-data with a language and a file or descriptions field")
        fields: dict[str, str] = {}
        upload: Path | None = None
        descriptions: str | None = None
        self.upload_folder.mkdir(parents=True, exist_ok=True)
        try:
            if require_identity(request).via != "token" and request.headers.get("X-CSRF-Token") is None:
                # A page's form: the request pipeline read it for its CSRF field (within max_request_bytes).
                form = await request.post()
                for name, value in form.items():
                    if name == "file" and isinstance(value, web.FileField):
                        if value.filename:
                            upload = self.upload_folder / f"{secrets.token_hex(8)}.audio"
                            upload.write_bytes(value.file.read())
                    elif name == "descriptions" and isinstance(value, web.FileField):
                        if value.filename:
                            descriptions = _text(value.file.read(DESCRIPTIONS_LIMIT + 1))
                    elif name in ("language", "descriptions", "track") and isinstance(value, str):
                        if name == "descriptions" and value.strip():
                            descriptions = value
                        elif name in ("language", "track") and value.strip():
                            fields[name] = value.strip()
                return fields, upload, descriptions
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise BadRequest("nested multipart is not supported")
                if part.name in ("file", "descriptions") and part.filename == "":
                    await part.release()  # a form's file input left empty
                elif part.name == "file":
                    upload = self.upload_folder / f"{secrets.token_hex(8)}.audio"
                    await self._save(part, upload)
                elif part.name == "descriptions":
                    data = bytearray()
                    while chunk := await part.read_chunk(CHUNK):
                        data += chunk
                        if len(data) > DESCRIPTIONS_LIMIT:
                            raise PayloadTooLarge(f"a descriptions file is limited to {DESCRIPTIONS_LIMIT // 2**20} MiB")
                    descriptions = _text(bytes(data))
                elif part.name in ("language", "track"):
                    value = (await part.read(decode=True))[:100].decode("utf-8", "replace").strip()
                    if value:
                        fields[part.name] = value
                else:
                    await part.release()
        except BaseException:
            if upload is not None:
                upload.unlink(missing_ok=True)
            raise
        return fields, upload, descriptions

    async def _save(self, part: BodyPartReader, target: Path) -> None:
        size = 0
        with open(target, "wb") as fh:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > self.max_upload_bytes:
                    raise PayloadTooLarge(f"the audio file is larger than the {self.max_upload_bytes // 2**20} MiB limit")
                fh.write(chunk)

    async def _create(self, request: web.Request) -> dict[str, Any]:
        user = require_identity(request).user
        row = await self._find(request)  # before reading a large body: only its managers may send one
        fields, upload, descriptions = await self._read(request)
        try:
            if sum(x is not None for x in (upload, descriptions, fields.get("track"))) != 1:
                raise Unprocessable("send one source: an audio file (file), a WebVTT descriptions file (descriptions) "
                                    "or a descriptions track of the recording (track)", code="one_source")
            if "track" in fields:  # a stored text track of kind "descriptions": its published cues are spoken
                language, cues = await self.db.run(lambda s: _track_source(s, row, fields["track"], fields.get("language")))
                track = await self.descriptions.generate(row, language, cues, user.id)
            elif descriptions is not None:
                language = _language(fields.get("language"))
                seconds = await self.descriptions.timeline_seconds(row)
                try:
                    cues = parse_descriptions(descriptions, seconds)
                except DescriptionsError as exc:
                    raise Unprocessable(f"descriptions: {exc}", code="invalid_descriptions") from None
                track = await self.descriptions.generate(row, language, cues, user.id)
            else:
                language = _language(fields.get("language"))
                assert upload is not None
                track = await self.descriptions.upload(row, language, upload, user.id)
                upload = None  # the track's now
        except AudioDescriptionRefused as exc:
            raise Unprocessable(str(exc), code="audio_description_refused") from None
        except AudioDescriptionConflict as exc:
            raise Conflict(str(exc)) from None
        finally:
            if upload is not None:
                upload.unlink(missing_ok=True)
        return track_json(track, f"/vod/{row.public_ref}")

    async def create_api(self, request: web.Request) -> web.Response:
        """Multipart ``language`` and ``file`` (an audio track as long as the recording) or ``descriptions``
        (a WebVTT file whose cues are spoken): 202 with the ``pending`` track."""
        return web.json_response(await self._create(request), status=202)

    async def create_form(self, request: web.Request) -> web.Response:
        await self._create(request)
        raise web.HTTPSeeOther(f"/recordings/{request.match_info['ref']}#audio-description")

    # --- removing ----------------------------------------------------------------------------------
    async def _remove(self, request: web.Request, language: str | None) -> int:
        row = await self._find(request)
        removed = await self.descriptions.remove(row, _language(language) if language else None)
        if not removed:
            raise NotFound("this recording has no audio description" + (f" in {language!r}" if language else ""))
        return removed

    async def remove_api(self, request: web.Request) -> web.Response:
        """``?language=fr`` removes that track, no language every track; the renditions go from the master."""
        return web.json_response({"removed": await self._remove(request, request.query.get("language"))})

    async def remove_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        await self._remove(request, str(form.get("language", "")) or None)
        raise web.HTTPSeeOther(f"/recordings/{request.match_info['ref']}#audio-description")


def _track_source(session: Session, recording: Recording, ref: str, language: str | None) -> tuple[str, list[Cue]]:
    """A descriptions track's language (unless one is given) and published cues, refused with a reason otherwise."""
    track = tracks.find_track(session, recording, ref)
    if track.kind != "descriptions":
        raise Unprocessable("track: only a track of kind descriptions can be spoken", code="invalid_descriptions")
    cues = [c for c in tracks.published_cues(session, recording, track) if c.text.strip()]
    if not cues:
        raise Unprocessable("track: the descriptions track has no cue to speak", code="invalid_descriptions")
    return _language(language or track.language), cues


def _text(data: bytes) -> str:
    if len(data) > DESCRIPTIONS_LIMIT:
        raise PayloadTooLarge(f"a descriptions file is limited to {DESCRIPTIONS_LIMIT // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unprocessable("descriptions: the file is not UTF-8 text", code="invalid_descriptions") from None
    if "\x00" in text:
        raise Unprocessable("descriptions: the file contains NUL characters", code="invalid_descriptions")
    return text
