"""BigBlueButton pages: the lecturer's recordings (import in one click) and webinars; the admin's servers and
meeting mappings. The work is ``bbb/``'s, reached through the small protocols below (wired in the app factory).

What BigBlueButton says goes wrong (no answer, our signature refused, an unknown meeting) is shown as a
sentence in the visitor's language, with BBB's own message beside it, never as a traceback.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from formats.bbb import ALGORITHMS, BbbError, BbbFailed, BbbRecording, error_kind
from live_server.db import Database
from live_server.errors import Conflict, NotFound, ServiceError, Unprocessable
from live_server.models import Event, EventState, Role, User
from web.guards import PageError, html_errors, require_role
from web.i18n import N_
from web.pages import render
from web.templating import translator

EDITORS = (Role.LECTURER, Role.ADMIN)

PROBLEMS = {
    "unreachable": N_("The BigBlueButton server %(server)s cannot be reached right now; try again later."),
    "checksum": N_("The BigBlueButton server %(server)s refused our signature: its shared secret or checksum algorithm "
                   "is set wrongly here. Tell an administrator."),
    "unknown-meeting": N_("The BigBlueButton server %(server)s does not know this meeting (it may have ended)."),
    "malformed": N_("The BigBlueButton server %(server)s answered something that is not its API; check its URL."),
    "refused": N_("The BigBlueButton server %(server)s refused the request."),
    "not-yours": N_("This recording is not one of yours, or it is no longer on the server."),
    "no-video": N_("This recording has no video to import: ask the BigBlueButton administrator to enable the "
                   "\u201cvideo\u201d recording format."),
}


# --- what this page needs of bbb/ ------------------------------------------------------------------


class RecordingOffer(Protocol):
    @property
    def server_id(self) -> int: ...
    @property
    def server_name(self) -> str: ...
    @property
    def recording(self) -> BbbRecording: ...
    @property
    def import_state(self) -> str | None: ...
    @property
    def recording_ref(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


class ServerProblem(Protocol):
    @property
    def server_name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def detail(self) -> str: ...


class Deposit(Protocol):
    async def lecturer_recordings(self, user: User) -> tuple[Sequence[RecordingOffer], Sequence[ServerProblem]]: ...

    async def import_recording(self, user: User, server_id: int, record_id: str) -> bool: ...


class StartedWebinar(Protocol):
    @property
    def server_name(self) -> str: ...
    @property
    def meeting_id(self) -> str: ...
    @property
    def event_slug(self) -> str: ...
    @property
    def event_title(self) -> str: ...
    @property
    def join_url(self) -> str: ...
    @property
    def attached(self) -> bool: ...


class WebinarStarter(Protocol):
    async def start(self, user: User, event_ref: str, server_id: int, attach_to: str = "") -> StartedWebinar: ...


class ServerRow(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def api_url(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def secret_hint(self) -> str: ...


class MappingRow(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def server_name(self) -> str: ...
    @property
    def meeting_id(self) -> str: ...
    @property
    def owner_username(self) -> str: ...
    @property
    def auto_import(self) -> bool: ...
    @property
    def event_slug(self) -> str | None: ...


class ServerAdmin(Protocol):
    def callback_url(self, server_id: int) -> str: ...
    async def servers(self) -> Sequence[ServerRow]: ...
    async def add_server(self, name: str, api_url: str, secret: str, algorithm: str) -> None: ...
    async def remove_server(self, server_id: int) -> None: ...
    async def meetings(self, owner_id: int | None = None) -> Sequence[MappingRow]: ...
    async def map_meeting(self, server_id: int, meeting_id: str, owner: str, auto_import: bool) -> None: ...
    async def unmap_meeting(self, mapping_id: int) -> None: ...


def _int(value: object) -> int:
    text = str(value or "")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise PageError(422)
    return int(text)


def _detail(exc: BbbError) -> str:
    """BBB's own words (English), shown beside ours: its ``message`` for a FAILED answer."""
    return exc.message if isinstance(exc, BbbFailed) else ""


class BbbPages:
    """``/dashboard/bigbluebutton`` for lecturers, ``/admin/bigbluebutton`` for admins."""

    def __init__(self, db: Database, deposit: Deposit, webinars: WebinarStarter, admin: ServerAdmin) -> None:
        self.db = db
        self.deposit = deposit
        self.webinars = webinars
        self.admin = admin

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/dashboard/bigbluebutton", html_errors(self.lecturer_page), name="bbb_dashboard"),
            web.post("/dashboard/bigbluebutton/import", html_errors(self.import_recording)),
            web.post("/dashboard/bigbluebutton/webinar", html_errors(self.start_webinar)),
            web.get("/admin/bigbluebutton", html_errors(self.admin_page), name="admin_bbb"),
            web.post("/admin/bigbluebutton/servers", html_errors(self.add_server)),
            web.post("/admin/bigbluebutton/servers/{server_id:\\d+}/delete", html_errors(self.remove_server)),
            web.post("/admin/bigbluebutton/meetings", html_errors(self.map_meeting)),
            web.post("/admin/bigbluebutton/meetings/{mapping_id:\\d+}/delete", html_errors(self.unmap_meeting)),
        ]

    async def _name(self, server_id: int) -> str:
        return next((s.name for s in await self.admin.servers() if s.id == server_id), "")

    # --- lecturers -----------------------------------------------------------------------------

    async def _lecturer_page(self, request: web.Request, user: User, *, notice: str | None = None,
                             problem: str | None = None, problem_detail: str = "", webinar: StartedWebinar | None = None,
                             status: int = 200) -> web.Response:
        _ = translator(request)
        offers, problems = await self.deposit.lecturer_recordings(user)

        def my_events(session: Session) -> list[Event]:
            query = select(Event).where(Event.state != EventState.ENDED).order_by(Event.created_at.desc()).limit(200)
            if user.role != Role.ADMIN:
                query = query.where(Event.owner_id == user.id)
            return list(session.scalars(query))

        return render(request, "bbb_dashboard.html", {
            "offers": offers,
            "problems": [(_(PROBLEMS[p.kind]) % {"server": p.server_name}, p.detail) for p in problems],
            "servers": [(s.id, s.name) for s in await self.admin.servers()],
            "events": await self.db.run(my_events),
            "meetings": await self.admin.meetings(user.id),
            "notice": notice, "problem": problem, "problem_detail": problem_detail, "webinar": webinar,
        }, status=status)

    async def lecturer_page(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        _ = translator(request)
        notices = {"import": _("The import has started: the recording appears among your recordings when it is ready."),
                   "already": _("This recording is already imported, or being imported.")}
        return await self._lecturer_page(request, user, notice=notices.get(request.query.get("done", "")))

    async def import_recording(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        _ = translator(request)
        form = await request.post()
        server_id, record_id = _int(form.get("server")), str(form.get("record", "")).strip()
        if not record_id or len(record_id) > 256:
            raise PageError(422)
        try:
            started = await self.deposit.import_recording(user, server_id, record_id)
        except LookupError:
            return await self._lecturer_page(request, user, problem=_(PROBLEMS["not-yours"]), status=404)
        except BbbError as exc:
            kind = error_kind(exc)
            return await self._lecturer_page(request, user, problem=_(PROBLEMS[kind]) % {"server": await self._name(server_id)},
                                             problem_detail=_detail(exc), status=422 if kind == "no-video" else 502)
        raise web.HTTPSeeOther(f"/dashboard/bigbluebutton?done={'import' if started else 'already'}")

    async def start_webinar(self, request: web.Request) -> web.Response:
        user = require_role(request, *EDITORS)
        _ = translator(request)
        form = await request.post()
        server_id, event_ref = _int(form.get("server")), str(form.get("event", "")).strip()
        attach_to = str(form.get("meeting", "")).strip()[:256]
        if not event_ref:
            raise PageError(422)
        try:
            webinar = await self.webinars.start(user, event_ref, server_id, attach_to)
        except BbbError as exc:
            return await self._lecturer_page(request, user, problem=_(PROBLEMS[error_kind(exc)]) % {"server": await self._name(server_id)},
                                             problem_detail=_detail(exc), status=502)
        except NotFound:
            raise PageError(404) from None
        return await self._lecturer_page(request, user, webinar=webinar)

    # --- admins ----------------------------------------------------------------------------------

    async def _admin_page(self, request: web.Request, *, notice: str | None = None, errors: dict[str, str] | None = None,
                          values: dict[str, str] | None = None, status: int = 200) -> web.Response:
        servers = await self.admin.servers()
        return render(request, "admin_bbb.html", {
            "servers": servers, "callbacks": {s.id: self.admin.callback_url(s.id) for s in servers},
            "meetings": await self.admin.meetings(), "algorithms": ALGORITHMS, "notice": notice, "errors": errors or {},
            "values": values or {"name": "", "api_url": "", "algorithm": "sha256", "meeting_id": "", "owner": ""},
        }, status=status)

    async def admin_page(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        _ = translator(request)
        notices = {"added": _("The server was added."), "removed": _("The server was removed."),
                   "mapped": _("The meeting was mapped."), "unmapped": _("The mapping was removed.")}
        return await self._admin_page(request, notice=notices.get(request.query.get("done", "")))

    async def add_server(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        _ = translator(request)
        form = await request.post()
        values = {name: str(form.get(name, "")).strip() for name in ("name", "api_url", "algorithm")}
        try:
            await self.admin.add_server(values["name"], values["api_url"], str(form.get("secret", "")), values["algorithm"])
        except Conflict:
            return await self._admin_page(request, errors={"bbb-name": _("Another server already has this name.")},
                                          values={**values, "meeting_id": "", "owner": ""}, status=409)
        except Unprocessable as exc:
            messages = {"name": ("bbb-name", _("A name has 1 to 80 characters.")),
                        "api_url": ("bbb-api-url", _("Enter the API URL, such as https://bbb.example.edu/bigbluebutton/api.")),
                        "secret": ("bbb-secret", _("Enter the shared secret (bbb-conf --secret shows it).")),
                        "algorithm": ("bbb-algorithm", _("Choose an algorithm from the list."))}
            errors = dict(messages[d["field"]] for d in exc.details or [] if d.get("field") in messages)
            return await self._admin_page(request, errors=errors or {"bbb-name": _("This value is not valid.")},
                                          values={**values, "meeting_id": "", "owner": ""}, status=422)
        raise web.HTTPSeeOther("/admin/bigbluebutton?done=added")

    async def remove_server(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        await self.admin.remove_server(_int(request.match_info["server_id"]))
        raise web.HTTPSeeOther("/admin/bigbluebutton?done=removed")

    async def map_meeting(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        _ = translator(request)
        form = await request.post()
        values = {name: str(form.get(name, "")).strip() for name in ("meeting_id", "owner")}
        try:
            await self.admin.map_meeting(_int(form.get("server")), values["meeting_id"], values["owner"], "auto_import" in form)
        except (Unprocessable, NotFound) as exc:
            fields = {d.get("field") for d in (exc.details or [])} if isinstance(exc, ServiceError) else set()
            errors = {"map-owner": _("No account has this username.")} if "owner" in fields else \
                {"map-meeting": _("A meeting ID has 2 to 256 characters and no comma.")}
            return await self._admin_page(request, errors=errors,
                                          values={"name": "", "api_url": "", "algorithm": "sha256", **values}, status=422)
        raise web.HTTPSeeOther("/admin/bigbluebutton?done=mapped")

    async def unmap_meeting(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        await self.admin.unmap_meeting(_int(request.match_info["mapping_id"]))
        raise web.HTTPSeeOther("/admin/bigbluebutton?done=unmapped")
