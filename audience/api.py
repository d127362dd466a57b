"""The audience API: owners' figures, the attendance list, and the replay player's watch beacons.

``GET /api/v1/events/{ref}/audience`` and ``GET /api/v1/recordings/{ref}/audience``: the numbers
the Audience tab draws, for the owner and admins (404 for anyone else, as for other private things).
``GET /api/v1/events/{ref}/attendance.csv``: logged-in viewers, for the owner when the event requires
attendance, for admins always. ``POST /api/v1/recordings/{ref}/watch``: ranges a replay player played,
under the one access rule; the API's CSRF rules apply (the identity middleware checks Origin and,
with a login, X-CSRF-Token).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server.access import Decision, Person, Target, can_manage, can_view, event_target, recording_target
from live_server.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from live_server.models import Event, Recording
from live_server.settings import Settings

from . import store
from .collector import Audience
from .ranges import BeaconError, parse_beacon

if TYPE_CHECKING:
    from live_server.db import Database


class People(Protocol):
    """Who is asking (``live_server.session_people.SessionPeople``: cached, login cookie or API token)."""

    async def person(self, request: web.Request) -> Person | None: ...


class PassesPresented(Protocol):
    """The media passes a request carries (``live_server.passes.MediaPasses``)."""

    def presented(self, cookies: Any) -> Any: ...


class RecordingPlace(Protocol):
    @property
    def recording_id(self) -> int: ...
    @property
    def event_id(self) -> int | None: ...
    @property
    def access(self) -> Target: ...


class RecordingDirectory(Protocol):
    """A recording's id and access facts by id or public id, cached (``vod.media.RecordingDirectory``)."""

    async def locate(self, ref: int | str) -> RecordingPlace | None: ...


class AudienceApi:
    """Handlers of the audience routes, given their collaborators at wiring."""

    def __init__(self, audience: Audience, db: "Database", people: People, passes: PassesPresented,
                 recordings: RecordingDirectory, viewer_of: Callable[[web.Request, web.StreamResponse], str],
                 settings: Settings) -> None:
        self.audience = audience
        self.db = db
        self.people = people
        self.passes = passes
        self.recordings = recordings
        self.settings = settings
        self.viewer_of = viewer_of  # the player's anonymous handle, given with the answer if new (``web.media.player_handle``)
        self.max_bytes = settings.audience_beacon_max_bytes
        self.max_ranges = settings.audience_beacon_max_ranges
        self.max_seconds = settings.audience_beacon_max_seconds
        self.refused = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/events/{ref}/audience", self.event_audience),
            web.get("/api/v1/events/{ref}/attendance.csv", self.attendance_csv),
            web.get("/api/v1/recordings/{ref}/audience", self.recording_audience),
            web.post("/api/v1/recordings/{ref}/watch", self.watch),
        ]

    async def _person(self, request: web.Request) -> Person | None:
        return await self.people.person(request)

    # --- owners' figures ---------------------------------------------------------------------

    async def event_audience(self, request: web.Request) -> web.Response:
        person = await self._person(request)
        ref = request.match_info["ref"]

        def work(session: Session) -> dict[str, Any]:
            return store.event_audience(session, _managed_event(session, ref, person))

        return web.json_response(await self.db.run(work))

    async def recording_audience(self, request: web.Request) -> web.Response:
        person = await self._person(request)
        ref = request.match_info["ref"]
        width = self.settings.audience_bucket_seconds

        def work(session: Session) -> dict[str, Any]:
            return store.recording_audience(session, _managed_recording(session, ref, person), width)

        return web.json_response(await self.db.run(work))

    async def attendance_csv(self, request: web.Request) -> web.Response:
        """Logged-in viewers as CSV (RFC 4180, UTF-8), or with ``?format=excel`` as Excel opens it in any locale
        with accents intact: UTF-16 with a BOM, tab-separated."""
        person = await self._person(request)
        ref = request.match_info["ref"]

        def work(session: Session) -> tuple[str, list[dict[str, Any]]]:
            event = _managed_event(session, ref, person)
            if not event.attendance_required and not (person is not None and person.admin):
                raise NotFound("attendance is not recorded for this event (turn on attendance_required)")
            return event.slug, store.attendance(session, event)

        excel = request.query.get("format") == "excel"
        slug, people = await self.db.run(work)
        out = io.StringIO()
        columns = ["name", "username", "email", "first_joined", "last_left", "minutes_live", "minutes_replay"]
        writer = csv.DictWriter(out, columns, lineterminator="\r\n", delimiter="\t" if excel else ",")
        writer.writeheader()
        for row in people:
            writer.writerow({k: _spreadsheet_safe(v) for k, v in row.items()})
        body = ("\ufeff" + out.getvalue()).encode("utf-16-le") if excel else out.getvalue().encode()
        return web.Response(body=body, headers={
            "Content-Type": "text/csv; charset=utf-16" if excel else "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="attendance-{slug}{"-excel" if excel else ""}.csv"',
            "Cache-Control": "private, no-store",
        })

    # --- replay beacons ----------------------------------------------------------------------

    async def watch(self, request: web.Request) -> web.Response:
        length = request.content_length  # limits checked before the first await: a big body is never read
        if length is None or length > self.max_bytes:
            self.refused += 1
            raise PayloadTooLarge(f"a watch beacon is at most {self.max_bytes} bytes, with a Content-Length")
        if request.content_type != "application/json":
            self.refused += 1
            raise BadRequest("send the body as application/json", code="unsupported_media_type")
        raw = await request.content.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:
            self.refused += 1
            raise PayloadTooLarge(f"a watch beacon is at most {self.max_bytes} bytes")
        try:
            beacon = parse_beacon(raw, self.max_ranges, self.max_seconds)
        except BeaconError as exc:
            self.refused += 1
            raise Unprocessable(f"invalid watch beacon: {exc}") from None
        place = await self.recordings.locate(request.match_info["ref"])
        if place is None:
            raise NotFound("no such recording")
        presented = self.passes.presented(request.cookies)
        person = await self._person(request)  # cached per login session; also who the watch time is for
        if can_view(person, place.access, presented) is not Decision.ALLOWED:
            raise NotFound("no such recording")
        response = web.Response(status=204)
        self.audience.watched(place.recording_id, place.event_id, self.viewer_of(request, response),
                              person.user_id if person is not None else None, beacon)
        return response


def _spreadsheet_safe(value: Any) -> Any:
    """Names starting with = + - @ would run as formulas in a spreadsheet: quoted (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _managed_event(session: Session, ref: str, person: Person | None) -> Event:
    event = session.get(Event, int(ref)) if ref.isdigit() and len(ref) < 12 else session.scalar(select(Event).where(Event.slug == ref))
    if event is None or not can_manage(person, event_target(event)):
        raise NotFound("no such event")
    return event


def _managed_recording(session: Session, ref: str, person: Person | None) -> Recording:
    if ref.isdigit() and len(ref) < 12:
        recording = session.get(Recording, int(ref))
    else:
        recording = session.scalar(select(Recording).where(Recording.public_id == ref))
    if recording is None:
        raise NotFound("no such recording")
    event = session.get(Event, recording.event_id) if recording.event_id is not None else None
    if not can_manage(person, recording_target(recording, event)):
        raise NotFound("no such recording")
    return recording
