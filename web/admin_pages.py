"""Admin pages: people (create, change role, deactivate) and every event on the site."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server import accounts
from live_server.errors import Conflict, Unprocessable
from live_server.db import Database
from live_server.models import Event, Role
from live_server.session_people import SessionPeople
from web.guards import PageError, html_errors, require_role
from web.pages import render
from web.templating import translator


def _user_id(request: web.Request) -> int:
    return int(request.match_info["user_id"])


class AdminPages:
    """Administrators: accounts, roles, and every event."""

    def __init__(self, db: Database, people: SessionPeople) -> None:
        self.db = db
        self.people = people

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/users", html_errors(self.users), name="admin_users"),
            web.post("/admin/users", html_errors(self.create_user)),
            web.post("/admin/users/{user_id:\\d+}/role", html_errors(self.change_role)),
            web.post("/admin/users/{user_id:\\d+}/active", html_errors(self.change_active)),
            web.get("/admin/events", html_errors(self.all_events), name="admin_events"),
        ]

    async def _users_page(self, request: web.Request, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                          notice: str | None = None, problem: str | None = None, status: int = 200) -> web.Response:
        users = await self.db.run(accounts.list_users)
        return render(request, "admin_users.html", {
            "users": users, "roles": [r.value for r in Role], "notice": notice, "errors": errors or {}, "problem": problem,
            "values": values or {"username": "", "display_name": "", "role": Role.VIEWER.value},
        }, status=status)

    async def users(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        _ = translator(request)
        notices = {"created": _("The account was created."), "role": _("The role was changed."),
                   "deactivated": _("The account was deactivated; its sessions and tokens no longer work."),
                   "activated": _("The account was reactivated.")}
        done = request.query.get("done", "")
        return await self._users_page(request, notice=notices.get(done))

    async def create_user(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)
        _ = translator(request)
        form = await request.post()
        values = {name: str(form.get(name, "")).strip() for name in ("username", "display_name", "role")}
        password = str(form.get("password", ""))
        errors: dict[str, str] = {}
        if not values["username"] or len(values["username"]) > 80 or any(c.isspace() for c in values["username"]):
            errors["new-username"] = _("A username has 1 to 80 characters, without spaces.")
        if len(password) < 8:
            errors["new-password"] = _("The password needs at least 8 characters.")
        if values["role"] not in {r.value for r in Role}:
            errors["new-role"] = _("Choose a role from the list.")
        if not errors:
            try:
                await self.db.run(lambda s: accounts.create_user(
                    s, values["username"], password, values["role"], display_name=values["display_name"]))
            except Conflict:
                errors["new-username"] = _("This username is already taken.")
            except Unprocessable:
                errors["new-username"] = _("A username has 1 to 80 characters, without spaces.")
        if errors:
            return await self._users_page(request, values, errors, status=422)
        raise web.HTTPSeeOther("/admin/users?done=created")

    async def change_role(self, request: web.Request) -> web.Response:
        admin = require_role(request, Role.ADMIN)
        _ = translator(request)
        role = str((await request.post()).get("role", ""))
        if role not in {r.value for r in Role}:
            raise PageError(422, _("Choose a role from the list."))
        try:
            await self.db.run(lambda s: accounts.set_role(s, admin, _user_id(request), role))
            self.people.forget_user(_user_id(request))  # media access follows the new role at once
        except Conflict:
            return await self._users_page(request, problem=_("You cannot remove your own admin role."), status=409)
        raise web.HTTPSeeOther("/admin/users?done=role")

    async def change_active(self, request: web.Request) -> web.Response:
        admin = require_role(request, Role.ADMIN)
        _ = translator(request)
        active = (await request.post()).get("active") == "yes"
        try:
            await self.db.run(lambda s: accounts.set_active(s, admin, _user_id(request), active))
            self.people.forget_user(_user_id(request))  # a deactivated viewer's media stops at once
        except Conflict:
            return await self._users_page(request, problem=_("You cannot deactivate your own account."), status=409)
        raise web.HTTPSeeOther(f"/admin/users?done={'activated' if active else 'deactivated'}")

    async def all_events(self, request: web.Request) -> web.Response:
        require_role(request, Role.ADMIN)

        def work(session: Session) -> list[Any]:
            return list(session.scalars(select(Event).order_by(Event.created_at.desc(), Event.id.desc()).limit(500)))

        return render(request, "admin_events.html", {"events": await self.db.run(work)})
