"""The lecturer's dashboard: my events, the create/edit form, stream settings (RTMP, key, WHIP).

Plain HTML forms (CSRF field checked by the middleware) over the events service
(``live_server/events.py``): its pydantic models validate, and each problem is shown next to its
field, in the visitor's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, TypeVar

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server.errors import Conflict, ServiceError, Unprocessable
from live_server.db import Database
from live_server.http_request import identity_of
from live_server.languages import language_name
from live_server.settings import Settings
from live_server.models import Event, EventState, Role, User, Visibility
from web import i18n
from web.guards import PageError, html_errors, require_role
from web.i18n import N_
from web.audience_tab import AudienceFigures
from web.media import ViewerCounter
from web.pages import render
from web.transcription_view import TranscriptionStatus, decorate
from web.templating import language, site_url, timezone_of, translator


EDITORS = (Role.LECTURER, Role.ADMIN)
FLAGS = ("dvr", "record", "abr", "chat_enabled", "guests_allowed", "attendance_required")
# The form's order: problems are listed in it, and "who can watch" from the most to the least open.
FIELD_ORDER = ("title", "description", "slug", "scheduled_start", "scheduled_end", "timezone", "visibility", "password",
               "caption_language", "caption_vocabulary", *FLAGS)
VISIBILITY_ORDER = (Visibility.PUBLIC, Visibility.UNLISTED, Visibility.AUTHENTICATED, Visibility.PASSWORD)
DATETIME_INPUT = "%Y-%m-%dT%H:%M"

# Field problems, in words people understand (the service's own messages are for API clients).
_MESSAGES: dict[tuple[str, str], str] = {
    ("title", "missing"): N_("Give the event a title."),
    ("title", "string_too_short"): N_("Give the event a title."),
    ("title", "string_too_long"): N_("The title is too long (200 characters at most)."),
    ("slug", "*"): N_("Use lowercase letters, digits and hyphens (3 to 120 characters)."),
    ("slug", "conflict"): N_("Another event already uses this address."),
    ("description", "*"): N_("The description is too long."),
    ("visibility", "*"): N_("Choose who can watch."),
    ("password", "string_too_short"): N_("The password needs at least 4 characters."),
    ("password", "required"): N_("A password-protected event needs a password."),
    ("password", "*"): N_("This password cannot be used."),
    ("scheduled_start", "*"): N_("Enter a date and time."),
    ("scheduled_end", "*"): N_("Enter a date and time."),
    ("scheduled_end", "order"): N_("The end must be after the start."),
    ("timezone", "*"): N_("Unknown time zone; use a name such as Europe/Paris."),
    ("caption_language", "*"): N_("Choose a language from the list."),
    ("caption_vocabulary", "*"): N_("The vocabulary is too long."),
}


_INVALID = N_("This value is not valid.")


def _message(_: Callable[[str], str], name: str, kind: str) -> str:
    text = _MESSAGES.get((name, kind)) or _MESSAGES.get((name, "*")) or _INVALID
    return _(text)


@dataclass
class EventForm:
    """What the form shows: the values as typed (so nothing is lost on an error) and the problems."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank(cls, tz_name: str) -> "EventForm":
        return cls({"title": "", "slug": "", "description": "", "scheduled_start": "", "scheduled_end": "",
                    "timezone": tz_name, "visibility": Visibility.PUBLIC.value, "caption_language": "",
                    "caption_vocabulary": "", "dvr": True, "record": True, "abr": False, "chat_enabled": True,
                    "guests_allowed": False, "attendance_required": False})

    @classmethod
    def of(cls, event: Event, tz_name: str) -> "EventForm":
        zone = i18n.zone(tz_name)

        def local(value: datetime | None) -> str:
            return value.astimezone(zone).strftime(DATETIME_INPUT) if value else ""

        return cls({"title": event.title, "slug": event.slug, "description": event.description,
                    "scheduled_start": local(event.scheduled_start), "scheduled_end": local(event.scheduled_end),
                    "timezone": zone.key, "visibility": event.visibility.value,
                    "caption_language": event.caption_language or "", "caption_vocabulary": event.caption_vocabulary,
                    **{flag: getattr(event, flag) for flag in FLAGS}})

    @classmethod
    def posted(cls, form: MultiDictProxy[Any]) -> "EventForm":
        values: dict[str, Any] = {name: str(form.get(name, "")).strip() for name in (
            "title", "slug", "description", "scheduled_start", "scheduled_end", "timezone", "visibility",
            "caption_language", "caption_vocabulary")}
        values.update({flag: flag in form for flag in FLAGS})
        values["password"] = str(form.get("password", ""))
        return cls(values)

    def payload(self, _: Callable[[str], str], current_slug: str | None) -> dict[str, Any]:
        """The service's payload; times typed in the form's time zone. Problems go to ``errors``."""
        v = self.values
        data: dict[str, Any] = {"title": v["title"], "description": v["description"], "visibility": v["visibility"],
                                "caption_language": v["caption_language"] or None,
                                "caption_vocabulary": v["caption_vocabulary"],
                                **{flag: v[flag] for flag in FLAGS}}
        if v["slug"] and v["slug"] != current_slug:
            data["slug"] = v["slug"]
        if v.get("password"):
            data["password"] = v["password"]
        zone = i18n.zone(v["timezone"])
        if v["timezone"] and zone.key != v["timezone"]:
            self.errors["timezone"] = _message(_, "timezone", "*")
        for name in ("scheduled_start", "scheduled_end"):
            if not v[name]:
                data[name] = None
                continue
            try:
                data[name] = datetime.fromisoformat(v[name]).replace(tzinfo=zone)
            except ValueError:
                self.errors[name] = _message(_, name, "*")
        start, end = data.get("scheduled_start"), data.get("scheduled_end")
        if start is not None and end is not None and end <= start:  # also when other fields fail validation
            self.errors["scheduled_end"] = _message(_, "scheduled_end", "order")
        return data

    def add_validation_errors(self, _: Callable[[str], str], exc: ValidationError) -> None:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if not loc:  # the model's own check: the schedule's order
                self.errors.setdefault("scheduled_end", _message(_, "scheduled_end", "order"))
                continue
            self.errors.setdefault(loc[0], _message(_, loc[0], err["type"]))

    def add_service_error(self, _: Callable[[str], str], exc: ServiceError) -> None:
        if isinstance(exc, Conflict):
            self.errors["slug"] = _message(_, "slug", "conflict")
            return
        fields = [d.get("field", "") for d in exc.details or []] if isinstance(exc, Unprocessable) else []
        if "password" in fields:
            self.errors["password"] = _message(_, "password", "required")
        elif fields:
            for name in fields:
                self.errors[name] = _message(_, name, "*")
        else:
            raise exc


Payload = TypeVar("Payload", bound=BaseModel)


class Dashboard:
    """The lecturer's dashboard: their events, creating and editing them."""

    def __init__(self, db: Database, settings: Settings, viewers: ViewerCounter, figures: AudienceFigures | None = None,
                 transcriptions: TranscriptionStatus | None = None) -> None:
        self.db = db
        self.transcriptions = transcriptions  # the lecturer's transcriptions in progress; None: no list
        self.settings = settings
        self.viewers = viewers
        self.figures = figures  # each event's peak viewers (audience.store); None: no column figures

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/dashboard", html_errors(self.my_events), name="dashboard"),
            web.get("/dashboard/events/new", html_errors(self.new_event), name="event_new"),
            web.post("/dashboard/events/new", html_errors(self.create_event)),
            web.get("/dashboard/events/{slug}", html_errors(self.edit_event), name="event_edit"),
            web.post("/dashboard/events/{slug}", html_errors(self.update_event)),
            web.post("/dashboard/events/{slug}/stream-key", html_errors(self.rotate_key)),
            web.post("/dashboard/events/{slug}/delete", html_errors(self.delete_event)),
        ]

    def _caption_languages(self, request: web.Request, current: str) -> list[tuple[str, str]]:
        """Languages offered for captions (those with a Vosk model, plus French and English), named in the page's language."""
        codes = set(self.settings.vosk_models) | {"en", "fr"} | ({current} if current else set())
        lang = language(request)
        return sorted(((code, language_name(code, lang)) for code in sorted(codes)), key=lambda o: o[1])

    def _form_page(self, request: web.Request, form: EventForm, event: Event | None, stream: dict[str, Any] | None,
                   status: int = 200, notice: str | None = None) -> web.Response:
        order = {name: i for i, name in enumerate(FIELD_ORDER)}
        form.errors = dict(sorted(form.errors.items(), key=lambda item: order.get(item[0], len(order))))
        return render(request, "event_form.html", {
            "form": form, "event": event, "stream": stream, "notice": notice,
            "caption_languages": self._caption_languages(request, form.values.get("caption_language", "")),
            # "course" only for events put in an LMS course (deep linking binds them; live_server/events.py checks)
            "visibilities": [v.value for v in VISIBILITY_ORDER] + (
                [Visibility.COURSE.value] if event is not None and event.lti_context_id is not None else []),
            "viewers": self.viewers.count(event.id) if event is not None else 0,
        }, status=status)

    async def my_events(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        identity = identity_of(request)
        teaching = sorted(identity.teaching) if identity is not None else []
        # theirs, and the course-only events of the courses they teach (access.can_manage: they edit those too)
        theirs = or_(Event.owner_id == user.id, and_(Event.visibility == Visibility.COURSE, Event.lti_context_id.in_(teaching))) \
            if teaching else Event.owner_id == user.id

        def work(session: Session) -> tuple[list[Event], dict[int, int]]:
            events = list(session.scalars(select(Event).where(theirs)
                                          .order_by(Event.scheduled_start.is_(None), Event.scheduled_start.desc(), Event.id.desc())))
            return events, self.figures.peak_viewers(session, [e.id for e in events]) if self.figures else {}  # one query for the list

        events, peaks = await self.db.run(work)
        _ = translator(request)
        notice = _("The event was deleted.") if request.query.get("deleted") else None
        transcriptions = []
        if self.transcriptions is not None:
            lang = language(request)
            transcriptions = [decorate(job, lang) for job in await self.transcriptions.owner_jobs(user.id)]
        return render(request, "dashboard.html", {"events": events, "notice": notice, "peaks": peaks,
                                                  "transcriptions": transcriptions})

    async def new_event(self, request: web.Request) -> web.Response:
        require_role(request, *EDITORS)
        return self._form_page(request, EventForm.blank(timezone_of(request).key), None, None)

    async def _save_form(self, request: web.Request, event: Event | None, stream: dict[str, Any] | None,
                         model: type[Payload], save: Callable[[Session, Payload], str], done: str) -> web.Response:
        """The posted event form, checked as ``model`` and saved by ``save`` (which returns the slug); then the
        edit page with the ``done`` notice. A form the model or the service refuses comes back with its errors (422)."""
        _ = translator(request)
        form = EventForm.posted(await request.post())
        data = form.payload(_, event.slug if event is not None else None)
        payload = None
        try:
            payload = model.model_validate(data)
        except ValidationError as exc:
            form.add_validation_errors(_, exc)
        if form.errors or payload is None:
            return self._form_page(request, form, event, stream, status=422)
        valid = payload
        try:
            slug = await self.db.run(lambda session: save(session, valid))
        except (Conflict, Unprocessable) as exc:
            form.add_service_error(_, exc)
            return self._form_page(request, form, event, stream, status=422)
        raise web.HTTPSeeOther(f"/dashboard/events/{slug}?{done}=1")

    async def create_event(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)

        def save(session: Session, payload: ev.EventCreate) -> str:
            owner = session.merge(user, load=False)
            return ev.create_event(session, owner, payload).slug

        return await self._save_form(request, None, None, ev.EventCreate, save, "created")

    async def _manageable(self, request: web.Request, user: User) -> tuple[Event, dict[str, Any]]:
        """The event (owner or admin only; others get 403, or 404 where it must not be probed) and its stream settings."""
        settings = self.settings
        base = site_url(request)

        def work(session: Session) -> tuple[Event, dict[str, Any]]:
            event = ev.get_event(session, request.match_info["slug"], user)
            ev.ensure_manageable(user, event)
            body = ev.event_json(event, base_url=base, rtmp_url=settings.rtmp_url,
                                 stream_key=ev.revealed_stream_key(session, event), include_stream=True)
            return event, body["stream"]

        return await self.db.run(work)

    async def edit_event(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        event, stream = await self._manageable(request, user)
        _ = translator(request)
        notice = None
        if request.query.get("created"):
            notice = _("The event was created. Its stream settings are below.")
        elif request.query.get("saved"):
            notice = _("Your changes were saved.")
        elif request.query.get("rotated"):
            notice = _("A new stream key was issued; the old one no longer works.")
        return self._form_page(request, EventForm.of(event, timezone_of(request).key), event, stream, notice=notice)

    async def update_event(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        event, stream = await self._manageable(request, user)

        def save(session: Session, payload: ev.EventUpdate) -> str:
            row = ev.get_event(session, event.id, user)
            ev.ensure_manageable(user, row)
            return ev.update_event(session, row, payload).slug

        return await self._save_form(request, event, stream, ev.EventUpdate, save, "saved")

    async def rotate_key(self, request: web.Request) -> web.Response:
        """A new stream key; the old one stops working at once (a publish in progress is not cut)."""
        user = require_role(request, *EDITORS)

        def work(session: Session) -> str:
            event = ev.get_event(session, request.match_info["slug"], user)
            ev.ensure_manageable(user, event)
            ev.issue_stream_key(session, event)
            return event.slug

        slug = await self.db.run(work)
        raise web.HTTPSeeOther(f"/dashboard/events/{slug}?rotated=1#stream")

    async def delete_event(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        form = await request.post()
        _ = translator(request)
        if form.get("confirm") != "yes":
            raise PageError(422, _("Tick the box to confirm the deletion."))

        def work(session: Session) -> None:
            event = ev.get_event(session, request.match_info["slug"], user)
            ev.ensure_deletable(user, event)
            if event.state == EventState.LIVE:
                raise PageError(409, _("The event is live; stop the stream before deleting it."))
            session.delete(event)

        await self.db.run(work)
        raise web.HTTPSeeOther("/dashboard?deleted=1")
