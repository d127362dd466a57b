"""BigBlueButton recordings into the catalog: a lecturer's recordings listed from ``getRecordings``, one imported
in one click, and (optionally) every new recording of a mapped meeting imported without one.

Whose recordings: those of meetings mapped to the lecturer (``bbb_meetings``: by an admin, or the lecturer's
webinars) and those whose meeting metadata names them (``meta_live-server-owner=<username>``, set by the
front-end that creates the meeting). The "video" playback format's file is downloaded and handed to the
existing importer (``vod.importer``, reached through :class:`RecordingImporter`), so thumbnails, search and
everything an upload gets follow. ``bbb_imports`` holds each record id once: a poll, a callback and a click
never import the same recording twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from formats.bbb import (
    OWNER_META, BbbError, BbbFailed, BbbRecording, NoVideoFormat, error_kind, parse_recordings, video_file_candidates,
)
from live_server.db import Database
from live_server.errors import NotFound
from live_server.models import BbbImport, BbbMeeting, Recording, User, Visibility

from . import servers as srv
from .callback import CallbackRejected, recording_ready_claims
from .client import BbbClient

log = logging.getLogger(__name__)


class RecordingImporter(Protocol):
    """What the deposit needs of the catalog's importer (``vod.importer.Importer``, wired in the app factory)."""

    def upload_path(self, token: str) -> Path: ...

    async def create(self, owner: User, title: str, description: str, visibility: Visibility, upload: Path) -> int: ...


class NotYours(LookupError):
    """The recording is not one of the lecturer's (or it is gone from the server)."""


@dataclass(frozen=True)
class Offer:
    """One of the lecturer's BigBlueButton recordings, and what became of it here."""

    server_id: int
    server_name: str
    recording: BbbRecording
    import_state: str | None  # None (not imported), "downloading", "imported", "failed"
    recording_ref: str | None  # the imported recording's public id (its replay page is /recordings/<ref>)
    error: str | None


@dataclass(frozen=True)
class _Done:
    state: str
    recording_ref: str | None
    error: str | None


@dataclass(frozen=True)
class Problem:
    """Why a server's recordings are missing from the list: ``kind`` is what the page words in the visitor's
    language (``unreachable``, ``checksum``, ``unknown-meeting``, ``refused``, ``malformed``), ``detail`` is BBB's."""

    server_name: str
    kind: str
    detail: str


def problem_of(server_name: str, exc: BbbError) -> Problem:
    return Problem(server_name, error_kind(exc), exc.message if isinstance(exc, BbbFailed) else str(exc))


def owns(recording: BbbRecording, username: str, meeting_ids: set[str]) -> bool:
    """The one ownership rule: a mapped meeting, or the owner named in the meeting's metadata."""
    return recording.meeting_id in meeting_ids or recording.metadata.get(OWNER_META) == username


class BbbDeposit:
    """Lists, imports and auto-imports BigBlueButton recordings; ``close`` stops what it started."""

    def __init__(self, db: Database, client: BbbClient, importer: RecordingImporter, *, max_bytes: int,
                 visibility: Visibility, poll_seconds: float, poll_max_seconds: float) -> None:
        self.db = db
        self.client = client
        self.importer = importer
        self.max_bytes = max_bytes
        self.visibility = visibility
        self.poll_seconds = poll_seconds
        self.poll_max_seconds = poll_max_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the lecturer sees -----------------------------------------------------------------

    async def lecturer_recordings(self, user: User) -> tuple[list[Offer], list[Problem]]:
        """Every server is asked at once; one that fails is a :class:`Problem`, the others still list."""
        def work(session: Session) -> tuple[list[srv.ServerConfig], dict[int, set[str]], dict[tuple[int, str], _Done]]:
            configs = srv.server_configs(session)
            mapped: dict[int, set[str]] = {}
            for row in session.scalars(select(BbbMeeting).where(BbbMeeting.owner_id == user.id)):
                mapped.setdefault(row.server_id, set()).add(row.meeting_id)
            imports = {(i.server_id, i.record_id): _Done(i.state, public_id, i.error) for i, public_id in session.execute(
                select(BbbImport, Recording.public_id).outerjoin(Recording, Recording.id == BbbImport.recording_id)
                .where(BbbImport.owner_id == user.id))}
            return configs, mapped, imports

        configs, mapped, imports = await self.db.run(work)
        results = await asyncio.gather(*(self._server_recordings(c, user.username, mapped.get(c.id, set())) for c in configs),
                                       return_exceptions=True)
        offers: list[Offer] = []
        problems: list[Problem] = []
        for config, result in zip(configs, results):
            if isinstance(result, BbbError):
                problems.append(problem_of(config.name, result))
                continue
            if isinstance(result, BaseException):
                raise result
            for rec in result:
                done = imports.get((config.id, rec.record_id))
                offers.append(Offer(config.id, config.name, rec, done.state if done else None,
                                    done.recording_ref if done else None, done.error if done else None))
        offers.sort(key=lambda o: (o.recording.start is None, -(o.recording.start.timestamp() if o.recording.start else 0)))
        return offers, problems

    async def _server_recordings(self, server: srv.ServerConfig, username: str, meeting_ids: set[str]) -> list[BbbRecording]:
        found: dict[str, BbbRecording] = {}
        queries = [{f"meta_{OWNER_META}": username}]
        if meeting_ids:
            queries.append({"meetingID": ",".join(sorted(meeting_ids))})
        for params in queries:
            for rec in parse_recordings(await self.client.call(server, "getRecordings", params)):
                if owns(rec, username, meeting_ids):  # also when a server ignores the filter
                    found[rec.record_id] = rec
        return list(found.values())

    # --- one click -----------------------------------------------------------------------------

    async def import_recording(self, user: User, server_id: int, record_id: str) -> bool:
        """Start importing one of the lecturer's recordings; False when it is already imported or under way.
        :class:`NotYours` when it is not theirs (or gone); :class:`BbbError` when BBB cannot say."""
        def work(session: Session) -> tuple[srv.ServerConfig, set[str]]:
            try:
                config = srv.server_config(session, server_id)
            except NotFound:
                raise NotYours("no such server") from None
            ids = set(session.scalars(select(BbbMeeting.meeting_id).where(
                BbbMeeting.owner_id == user.id, BbbMeeting.server_id == server_id)))
            return config, ids

        config, meeting_ids = await self.db.run(work)
        recs = parse_recordings(await self.client.call(config, "getRecordings", {"recordID": record_id}))
        rec = next((r for r in recs if r.record_id == record_id), None)
        if rec is None or not owns(rec, user.username, meeting_ids):
            raise NotYours("not one of your recordings")
        if rec.video is None:
            raise NoVideoFormat("this recording has no \"video\" playback format")
        return await self._start(config, rec, user.id)

    async def _start(self, server: srv.ServerConfig, rec: BbbRecording, owner_id: int) -> bool:
        """Claim the record id (once per server), then download and import in the background."""
        def claim(session: Session) -> int | None:
            row = session.scalar(select(BbbImport).where(BbbImport.server_id == server.id, BbbImport.record_id == rec.record_id))
            if row is not None:
                if row.state != "failed":
                    return None
                row.state, row.error, row.owner_id = "downloading", None, owner_id  # a failed one may be tried again
                return row.id
            row = BbbImport(server_id=server.id, record_id=rec.record_id, meeting_id=rec.meeting_id, owner_id=owner_id)
            session.add(row)
            session.flush()
            return row.id

        try:
            claimed = await self.db.run(claim)
        except IntegrityError:  # claimed at the same moment by another poll, callback or click
            return False
        if claimed is None:
            return False
        task = asyncio.create_task(self._fetch(server, rec, owner_id, claimed), name=f"bbb-import-{claimed}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _fetch(self, server: srv.ServerConfig, rec: BbbRecording, owner_id: int, import_id: int) -> None:
        upload = self.importer.upload_path(secrets.token_hex(8))
        try:
            assert rec.video is not None
            source = await self.client.download(server, video_file_candidates(rec.video.url), upload, self.max_bytes)
            owner = await self.db.run(lambda s: s.get(User, owner_id))
            if owner is None:
                raise BbbError("the lecturer's account is gone")
            title = rec.name or "BigBlueButton recording"
            if rec.start is not None:
                title = f"{title} ({rec.start:%Y-%m-%d %H:%M} UTC)"
            description = f"BigBlueButton recording {rec.record_id} ({server.name})"
            recording_id = await self.importer.create(owner, title[:200], description, self.visibility, upload)
        except BbbError as exc:
            upload.unlink(missing_ok=True)
            log.warning("bbb %s: recording %s not imported: %s", server.name, rec.record_id, exc)
            await self.db.run(lambda s: _mark(s, import_id, "failed", None, str(exc)))
            return
        except BaseException:
            upload.unlink(missing_ok=True)
            raise
        log.info("bbb %s: recording %s downloaded from %s, importing as recording %d", server.name, rec.record_id,
                 source.rsplit("/", 1)[-1], recording_id)
        await self.db.run(lambda s: _mark(s, import_id, "imported", recording_id, None))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settled(self) -> None:
        """Wait for the downloads under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- automatic mode --------------------------------------------------------------------------

    async def poll_once(self) -> tuple[int, list[Problem]]:
        """Ask each server for the published recordings of its auto-import meetings; start the new ones.
        Returns how many started and the servers that could not be asked."""
        def work(session: Session) -> list[tuple[srv.ServerConfig, dict[str, int]]]:
            wanted: dict[int, dict[str, int]] = {}
            for row in session.scalars(select(BbbMeeting).where(BbbMeeting.auto_import.is_(True))):
                wanted.setdefault(row.server_id, {})[row.meeting_id] = row.owner_id
            return [(srv.server_config(session, server_id), owners) for server_id, owners in wanted.items()]

        started, problems = 0, []
        for config, owners in await self.db.run(work):
            try:
                recs = parse_recordings(await self.client.call(
                    config, "getRecordings", {"meetingID": ",".join(sorted(owners)), "state": "published"}))
            except BbbError as exc:
                problems.append(problem_of(config.name, exc))
                continue
            for rec in recs:
                owner = owners.get(rec.meeting_id)
                if owner is not None and rec.video is not None and await self._start(config, rec, owner):
                    started += 1
        return started, problems

    async def poll_forever(self) -> None:
        """``poll_once`` every ``bbb_poll_seconds``; while a server fails, the wait doubles up to ``bbb_poll_max_seconds``."""
        delay = self.poll_seconds
        while True:
            await asyncio.sleep(delay)
            try:
                started, problems = await self.poll_once()
            except Exception as exc:  # the catalog hiccuped: try again later, never stop polling
                log.warning("bbb: polling failed: %r", exc)
                problems = [Problem("", "refused", repr(exc))]
                started = 0
            for problem in problems:
                log.warning("bbb %s: polling: %s (%s)", problem.server_name, problem.kind, problem.detail)
            if started:
                log.info("bbb: %d new recording(s) being imported", started)
            delay = next_poll_delay(delay, self.poll_seconds, self.poll_max_seconds, failed=bool(problems))

    async def recording_ready(self, server_id: int, token: str) -> bool:
        """BBB's recording-ready callback: True when it started an import. :class:`CallbackRejected` when the
        JWT was not signed with this server's secret; :class:`BbbError` when BBB cannot be asked (it retries)."""
        def work(session: Session) -> srv.ServerConfig:
            try:
                return srv.server_config(session, server_id)
            except NotFound:
                raise CallbackRejected("unknown server") from None

        config = await self.db.run(work)
        meeting_id, record_id = recording_ready_claims(token, config.secret)

        def mapping(session: Session) -> int | None:
            row = session.scalar(select(BbbMeeting).where(BbbMeeting.server_id == server_id, BbbMeeting.meeting_id == meeting_id,
                                                          BbbMeeting.auto_import.is_(True)))
            return row.owner_id if row is not None else None

        owner = await self.db.run(mapping)
        if owner is None:
            return False
        recs = parse_recordings(await self.client.call(config, "getRecordings", {"recordID": record_id}))
        rec = next((r for r in recs if r.record_id == record_id and r.meeting_id == meeting_id), None)
        if rec is None or rec.video is None:
            return False
        return await self._start(config, rec, owner)


def next_poll_delay(current: float, base: float, ceiling: float, *, failed: bool) -> float:
    """The wait before the next poll: back to ``base`` after a good round, doubled (up to ``ceiling``) after a failed one."""
    return min(current * 2, max(base, ceiling)) if failed else base


def _mark(session: Session, import_id: int, state: str, recording_id: int | None, error: str | None) -> None:
    row = session.get(BbbImport, import_id)
    if row is not None:
        row.state, row.recording_id, row.error = state, recording_id, (error or None) and error[:1000]


class RecordingReadyApi:
    """``POST /api/v1/bbb/recording-ready/{server_id}``: the URL given to BBB as ``meta_bbb-recording-ready-url``.

    Answers as BBB's documentation asks: 2xx received (imported or nothing to do), 401 when the JWT is not signed
    with the server's shared secret, 503 (transient: BBB retries) when BBB cannot be asked about the recording."""

    PATH = "/api/v1/bbb/recording-ready/{server_id:\\d+}"

    def __init__(self, deposit: BbbDeposit) -> None:
        self.deposit = deposit

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.PATH, self.recording_ready)]

    async def recording_ready(self, request: web.Request) -> web.Response:
        server_id = int(request.match_info["server_id"])
        if server_id >= 2**63:
            raise web.HTTPNotFound()
        form = await request.post()
        token = str(form.get("signed_parameters", ""))
        try:
            started = await self.deposit.recording_ready(server_id, token)
        except CallbackRejected as exc:
            log.warning("bbb callback for server %d refused: %s", server_id, exc)
            return web.json_response({"error": {"code": "unauthorized", "message": "signed_parameters refused"}}, status=401)
        except BbbError as exc:
            log.warning("bbb callback for server %d: cannot ask the server: %s", server_id, exc)
            return web.json_response({"error": {"code": "unavailable", "message": "try again later"}}, status=503)
        return web.json_response({"importing": started}, status=202 if started else 200)




BBB_DEPOSIT = web.AppKey("bbb_deposit", BbbDeposit)  # for tests and the CLI
