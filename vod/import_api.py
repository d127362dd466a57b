"""POST /api/v1/recordings/import: a lecturer uploads an existing video (multipart, streamed to disk)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, Protocol

from aiohttp import BodyPartReader, web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.errors import BadRequest, Forbidden, PayloadTooLarge, Unprocessable
from live_server.db import Database
from live_server.settings import Settings
from live_server.http_request import require_identity
from live_server.models import Recording

from . import access
from .importer import Importer, ImportRejected, allowed_visibility

TEXT_FIELD_LIMIT = 10_000
CHUNK = 256 * 1024


async def _save(part: BodyPartReader, target: Path, limit: int) -> None:
    loop = asyncio.get_running_loop()
    size = 0
    with open(target, "wb") as fh:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the video is larger than the {limit // 2**20} MiB import limit")
            await loop.run_in_executor(None, fh.write, chunk)


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


class TranscriptionRequests(Protocol):
    """Transcription of imported recordings (``captions.transcription.Transcriptions``, wired in the app factory)."""

    @property
    def languages(self) -> set[str]: ...

    async def request(self, recording_id: int, language: str, trigger: str, requested_by_id: int | None) -> dict[str, Any]:
        """Queue a job; it starts once the recording is ready."""


class ImportApi:
    """Uploading a recording made elsewhere into the catalog."""

    def __init__(self, db: Database, importer: Importer, settings: Settings,
                 transcriptions: TranscriptionRequests | None = None) -> None:
        self.db = db
        self.importer = importer
        self.settings = settings
        self.transcriptions = transcriptions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/recordings/import", self.import_recording),
        ]

    async def import_recording(self, request: web.Request) -> web.Response:
        """Fields ``title``, ``description``, ``visibility``, ``language`` (optional, before the file) and ``file``.

        ``language``: the spoken language, to transcribe the video once imported (empty: the owner's
        transcription language, if any); 422 when no speech model is configured for it.

        Cookie sessions send the CSRF token as the ``X-CSRF-Token`` header (the body is not buffered).
        Answers 202 with the recording in ``processing``; poll it until ``ready`` or ``failed``.
        """
        identity = require_identity(request)
        if not ev.can_create_events(identity.user):
            raise Forbidden("only lecturers and admins import videos")
        if not request.content_type.startswith("multipart/"):
            raise BadRequest("send multipart/form-data with a file field")
        importer = self.importer
        limit = self.settings.import_max_bytes
        fields: dict[str, str] = {}
        upload: Path | None = None
        filename = ""
        reader = await request.multipart()
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise BadRequest("nested multipart is not supported")
                if part.name == "file":
                    filename = part.filename or "video"
                    if _has_control_characters(filename):
                        raise BadRequest("the file name must not contain control characters")
                    upload = importer.upload_path(secrets.token_hex(8))
                    await _save(part, upload, limit)
                elif part.name in ("title", "description", "visibility", "language"):
                    fields[part.name] = (await part.read(decode=True))[:TEXT_FIELD_LIMIT].decode("utf-8", "replace").strip()
                    if "\x00" in fields[part.name]:
                        raise BadRequest(f"the {part.name} must not contain NUL characters")
                else:
                    await part.release()
            if upload is None:
                raise Unprocessable("the file field is missing")
            try:
                visibility = allowed_visibility(fields.get("visibility"))
            except ImportRejected as exc:
                raise Unprocessable(str(exc)) from None
            language = fields.get("language", "")
            if language and (self.transcriptions is None or language not in self.transcriptions.languages):
                raise Unprocessable(f"no speech model for {language!r}: the video cannot be transcribed in it",
                                    code="unknown_language")
            title = fields.get("title") or Path(filename).stem or "Imported video"
            recording_id = await importer.create(identity.user, title, fields.get("description", ""), visibility, upload)
            if language and self.transcriptions is not None:
                await self.transcriptions.request(recording_id, language, "import", identity.user.id)
        except BaseException:
            if upload is not None:
                upload.unlink(missing_ok=True)
            raise
        settings = self.settings

        def work(session: Session) -> dict[str, Any]:
            row = session.get(Recording, recording_id)
            assert row is not None
            return access.recording_json(row, settings.base_url, True)

        body = await self.db.run(work)
        return web.json_response(body, status=202, headers={"Location": f"/api/v1/recordings/{recording_id}"})
