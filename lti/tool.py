"""The LTI 1.3 tool's HTTP side, thin: login initiation, launch, deep linking picker, JWKS, admin page.

Each handler reads the request, hands the checks to ``launch.py`` (pure) and the catalog work to
``registry.py``, and answers; every refusal is a page in the visitor's language (4xx) and one log line.
Pages shown inside the LMS's iframe allow framing by the registered platforms' origins only.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlencode, urlsplit

import jwt
from aiohttp import web
from sqlalchemy.orm import Session

from live_server.db import Database
from live_server.errors import Conflict, Forbidden, NotFound, ServiceError, Unprocessable
from live_server.http_request import identity_of
from live_server.logins import Logins
from live_server.models import Role, User
from live_server.settings import Settings
from lti import keys, registry
from lti.deep_linking import Ticket, Tickets, resource_link, response_jwt
from lti.launch import DEEP_LINKING_REQUEST, Launch, Refusal, verify_launch
from lti.platform_keys import KeysUnavailable, PlatformKeys

log = logging.getLogger(__name__)

BROWSER_COOKIE = "live_lti_browser"  # binds a login's state to the browser that started it
TICKET_SECONDS = 3600  # an instructor has an hour to pick what to put in the course
REFUSAL_STATUS = {"malformed_token": 400, "missing_roles": 400, "no_course": 400, "wrong_message_type": 400,
                  "wrong_version": 400, "wrong_target": 400, "anonymous": 400, "unknown_platform": 400,
                  "platform_error": 400, "keys_unavailable": 502}  # others (signature, state, audience...): 403


class Render(Protocol):
    """The site's page renderer (``web.pages.render``), handed over at wiring: LTI pages look like the others."""

    def __call__(self, request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response: ...


def tool_url(request: web.Request, settings: Settings) -> str:
    """Where platforms reach us: the configured public URL, else what this request used."""
    return settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"


def moodle_values(base: str) -> dict[str, str]:
    """What a platform's administrator pastes when adding the tool (Moodle's names)."""
    return {"tool_url": f"{base}/lti/launch", "login_url": f"{base}/lti/login", "redirect_url": f"{base}/lti/launch",
            "deep_linking_url": f"{base}/lti/launch", "jwks_url": f"{base}/lti/jwks"}


class LtiTool:
    """The LTI 1.3 tool's handlers."""

    def __init__(self, db: Database, settings: Settings, platform_keys: PlatformKeys, sealer: keys.Sealer,
                 tickets: Tickets, logins: Logins, render: Render, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settings = settings
        self.platform_keys = platform_keys
        self.sealer = sealer
        self.tickets = tickets
        self.logins = logins
        self.render = render
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/lti/jwks", self.jwks, name="lti_jwks"),
            web.get("/lti/login", self.login, name="lti_login"),
            web.post("/lti/login", self.login),
            web.post("/lti/launch", self.launch, name="lti_launch"),
            web.get("/lti/deep-link", self.picker, name="lti_deep_link"),
            web.post("/lti/deep-link", self.picked),
            web.get("/lti/courses/{context_id:\\d+}", self.course, name="lti_course"),
            web.get("/admin/lti", self.admin, name="admin_lti"),
            web.post("/admin/lti/platforms", self.admin_register),
            web.post("/admin/lti/platforms/{platform_id:\\d+}/remove", self.admin_remove),
            web.post("/admin/lti/keys/rotate", self.admin_rotate),
        ]

    # --- pages inside the LMS -----------------------------------------------------------------

    async def frame_ancestors(self) -> list[str]:
        """The registered platforms' origins (``web.pages.LmsFraming``: event and replay pages put in a course)."""
        return await self.db.run(registry.platform_origins)

    async def _framable(self, response: web.StreamResponse, form_action: str | None = None) -> web.StreamResponse:
        """Let the registered platforms frame this page (and, for the deep-linking return, post to one)."""
        origins = await self.db.run(registry.platform_origins)
        policy = f"frame-ancestors 'self' {' '.join(origins)}".strip()
        if form_action is not None:
            policy += f"; form-action 'self' {form_action}"
        response.headers["Content-Security-Policy"] = policy
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _refuse(self, request: web.Request, code: str, detail: str, issuer: str = "") -> web.StreamResponse:
        log.warning("LTI refused (%s): %s [issuer %r, from %s]", code, detail, issuer, request.remote)
        status = REFUSAL_STATUS.get(code, 403)
        return await self._framable(self.render(request, "lti_refused.html", {"code": code}, status=status))

    # --- keys -----------------------------------------------------------------------------------

    async def jwks(self, request: web.Request) -> web.Response:
        body = await self.db.run(lambda s: keys.jwks(s, self.sealer))
        return web.json_response(body, headers={"Cache-Control": "max-age=300", "Access-Control-Allow-Origin": "*"})

    # --- OIDC third-party login initiation, then the launch ---------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Third-party initiated login (LTI 1.3 section 5.1.1): answer with the authentication request."""
        params: Mapping[str, Any] = await request.post() if request.method == "POST" else request.query
        issuer, login_hint = str(params.get("iss", "")), str(params.get("login_hint", ""))
        target = str(params.get("target_link_uri", ""))
        client_id = str(params.get("client_id", "")) or None
        if not issuer or not login_hint or not target:
            return await self._refuse(request, "malformed_token", "login initiation without iss, login_hint or target_link_uri", issuer)
        base = tool_url(request, self.settings)
        if urlsplit(target).netloc != urlsplit(base).netloc or urlsplit(target).scheme != urlsplit(base).scheme:
            return await self._refuse(request, "wrong_target", f"target_link_uri {target!r} is not ours", issuer)
        browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(24)

        def work(session: Session) -> tuple[registry.LoginStarted, str, str] | None:
            platform = registry.find_platform(session, issuer, client_id)
            if platform is None:
                return None
            started = registry.open_login(session, platform, target, browser, self.settings.lti_login_lifetime_seconds)
            return started, platform.auth_login_url, platform.client_id

        found = await self.db.run(work)
        if found is None:
            return await self._refuse(request, "unknown_platform", f"no registration for issuer {issuer!r} client {client_id!r}", issuer)
        started, auth_url, registered_client = found
        query = {
            "scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
            "client_id": registered_client, "redirect_uri": f"{base}/lti/launch", "login_hint": login_hint,
            "state": started.state, "nonce": started.nonce,
        }
        if params.get("lti_message_hint"):
            query["lti_message_hint"] = str(params["lti_message_hint"])
        separator = "&" if urlsplit(auth_url).query else "?"
        response = web.HTTPFound(auth_url + separator + urlencode(query))
        self._set_browser_cookie(request, response, browser)
        raise response

    def _set_browser_cookie(self, request: web.Request, response: web.StreamResponse, browser: str) -> None:
        """Over https the platform's POST back to us is cross-site: only SameSite=None; Secure comes along.
        Over plain http (development, tests on one host) Lax, which same-site frames still send."""
        secure = self.settings.cookie_secure == "always" or (self.settings.cookie_secure == "auto" and request.secure)
        lifetime = self.settings.lti_login_lifetime_seconds
        if secure:
            response.set_cookie(BROWSER_COOKIE, browser, max_age=lifetime, httponly=True, samesite="None", secure=True,
                                path="/lti/", partitioned=True)
        else:
            response.set_cookie(BROWSER_COOKIE, browser, max_age=lifetime, httponly=True, samesite="Lax", path="/lti/")

    async def launch(self, request: web.Request) -> web.StreamResponse:
        """The platform's authentication response (form_post): check everything, then log the person in."""
        form = await request.post()
        if form.get("error"):
            return await self._refuse(request, "platform_error", f"platform error {str(form.get('error'))[:100]!r}")
        id_token, state = str(form.get("id_token", "")), str(form.get("state", ""))
        browser = request.cookies.get(BROWSER_COOKIE)
        pending = await self.db.run(lambda s: registry.take_login(s, state, browser))
        if pending is None:
            return await self._refuse(request, "wrong_state", "unknown, used or expired state")
        issuer = pending.platform.issuer
        if not pending.same_browser and (browser is not None or self.settings.lti_state_cookie_required):
            return await self._refuse(request, "wrong_state", "the state was issued to another browser", issuer)
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")  # the JOSE header only: which key to fetch
        except jwt.PyJWTError:
            kid = None
        try:
            jwks = await self.platform_keys.get(pending.jwks_url, kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            return await self._refuse(request, "keys_unavailable", str(exc), issuer)
        result = verify_launch(id_token, jwks, pending.platform, pending.expected, self.clock(),
                               self.settings.lti_clock_leeway_seconds)
        if isinstance(result, Refusal):
            return await self._refuse(request, result.code, result.detail, issuer)
        try:
            launched = await self.db.run(lambda s: registry.record_launch(s, pending.platform_id, result))
            token = await self.logins.login_vouched(request, launched.user_id)
        except ServiceError as exc:
            return await self._refuse(request, "inactive_account", exc.message, issuer)
        log.info("LTI launch: %s of course %d as %s (user %d)", result.message_type, launched.context_id,
                 "instructor" if launched.teaching else "learner", launched.user_id)
        response = web.HTTPSeeOther(self._after_launch(result, launched, pending))
        self.logins.set_cookie(request, response, token, cross_site=True)
        response.del_cookie(BROWSER_COOKIE, path="/lti/")
        raise response

    def _after_launch(self, launch: Launch, launched: registry.Launched, pending: registry.PendingLogin) -> str:
        if launch.message_type == DEEP_LINKING_REQUEST and launch.deep_link is not None:
            if not launched.teaching:
                return f"/lti/courses/{launched.context_id}"  # learners cannot add content
            ticket = Ticket(launched.user_id, launched.context_id, pending.platform_id, pending.platform.issuer,
                            pending.platform.client_id, launch.deployment_id, launch.deep_link.return_url,
                            launch.deep_link.data, self.clock() + TICKET_SECONDS)
            return "/lti/deep-link?" + urlencode({"ticket": self.tickets.sign(ticket)})
        event, recording = launch.custom.get("event", ""), launch.custom.get("recording", "")
        if event and event.replace("-", "").isalnum():
            return f"/events/{event}"
        if recording and recording.replace("-", "").replace("_", "").isalnum():
            return f"/recordings/{recording}"
        return f"/lti/courses/{launched.context_id}"

    # --- course page and deep linking --------------------------------------------------------------

    def _user(self, request: web.Request) -> User | None:
        identity = identity_of(request)
        return identity.user if identity is not None else None

    async def course(self, request: web.Request) -> web.StreamResponse:
        """What a course has from us, for its members (each item still goes through the access rule on open)."""
        context_id = int(request.match_info["context_id"])
        identity = identity_of(request)
        if identity is None or (context_id not in identity.courses and identity.user.role != Role.ADMIN):
            return await self._refuse(request, "not_member", f"course {context_id} page by a non-member")

        def work(session: Session) -> dict[str, Any]:
            events, recordings = registry.course_items(session, context_id)
            return {"course_title": registry.course_title(session, context_id), "events": events,
                    "recordings": recordings, "teaching": context_id in identity.teaching}

        return await self._framable(self.render(request, "lti_course.html", await self.db.run(work)))

    def _ticket(self, request: web.Request, signed: str) -> tuple[Ticket, User] | None:
        ticket = self.tickets.open(signed, self.clock())
        user = self._user(request)
        if ticket is None or user is None or user.id != ticket.user_id:
            return None
        return ticket, user

    async def picker(self, request: web.Request) -> web.StreamResponse:
        """The instructor picks one of their events or recordings, or names a new event, for the course."""
        signed = request.query.get("ticket", "")
        opened = self._ticket(request, signed)
        if opened is None:
            return await self._refuse(request, "wrong_ticket", "deep linking ticket missing, expired or not this person's")
        ticket, user = opened
        return await self._picker_page(request, ticket, user, signed)

    async def _picker_page(self, request: web.Request, ticket: Ticket, user: User, signed: str,
                           error: str | None = None, status: int = 200) -> web.StreamResponse:
        def work(session: Session) -> dict[str, Any]:
            events, recordings = registry.pickable(session, user)
            return {"events": events, "recordings": recordings, "ticket": signed, "error": error,
                    "course_title": registry.course_title(session, ticket.context_id)}

        return await self._framable(self.render(request, "lti_deep_link.html", await self.db.run(work), status=status))

    async def picked(self, request: web.Request) -> web.StreamResponse:
        """Bind the choice to the course and send the platform our signed LtiDeepLinkingResponse (auto-posted)."""
        form = await request.post()
        signed = str(form.get("ticket", ""))
        opened = self._ticket(request, signed)
        if opened is None:
            return await self._refuse(request, "wrong_ticket", "deep linking ticket missing, expired or not this person's")
        ticket, user = opened
        choice, title = str(form.get("choice", "")), str(form.get("title", "")).strip()
        course_only = form.get("course_only") == "yes"
        kind, _, ref = choice.partition(":")

        def work(session: Session) -> tuple[str, str, keys.SigningKey]:
            owner = session.get(User, user.id)
            assert owner is not None
            if kind == "new":
                if not title or len(title) > 200:
                    raise Unprocessable("title")
                path, name = registry.create_course_event(session, owner, title, ticket.context_id)
            elif kind in ("event", "recording") and ref:
                path, name = registry.bind(session, owner, kind, ref, ticket.context_id, course_only)
            else:
                raise Unprocessable("choice")
            return path, name, keys.signing_key(session, self.sealer)

        try:
            path, name, key = await self.db.run(work)
        except Unprocessable as exc:
            error = "title" if exc.message == "title" else "choice"
            return await self._picker_page(request, ticket, user, signed, error=error, status=422)
        except (NotFound, Conflict):
            return await self._picker_page(request, ticket, user, signed, error="choice", status=422)
        kind_of, _, ref_of = path.strip("/").partition("/")
        custom = {"event": ref_of} if kind_of == "events" else {"recording": ref_of}
        item = resource_link(f"{tool_url(request, self.settings)}/lti/launch", name, custom)
        token = response_jwt(ticket, [item], key.kid, key.private_pem, self.clock())
        log.info("LTI deep linking: %s put in course %d by user %d", path, ticket.context_id, user.id)
        parts = urlsplit(ticket.return_url)
        response = self.render(request, "lti_return.html", {"return_url": ticket.return_url, "jwt": token, "title": name})
        return await self._framable(response, form_action=f"{parts.scheme}://{parts.netloc}")

    # --- administration ----------------------------------------------------------------------

    def _admin(self, request: web.Request) -> User:
        user = self._user(request)
        if user is None:
            raise web.HTTPSeeOther("/login?next=/admin/lti")
        if user.role != Role.ADMIN:
            raise Forbidden("administrators only")  # a page for browsers (web.guards.error_pages_middleware)
        return user

    async def admin(self, request: web.Request, error: str | None = None, values: dict[str, str] | None = None,
                    status: int = 200) -> web.StreamResponse:
        self._admin(request)

        def work(session: Session) -> dict[str, Any]:
            return {"platforms": registry.list_platforms(session), "keys": keys.listing(session)}

        await self.db.run(lambda s: keys.ensure_key(s, self.sealer))
        context = {**await self.db.run(work), "values": moodle_values(tool_url(request, self.settings)),
                   "error": error, "form": values or {}, "notice": request.query.get("done")}
        return self.render(request, "admin_lti.html", context, status=status)

    async def admin_register(self, request: web.Request) -> web.StreamResponse:
        self._admin(request)
        form = await request.post()
        values = {name: str(form.get(name, "")).strip() for name in
                  ("name", "issuer", "client_id", "deployment_ids", "auth_login_url", "token_url", "jwks_url")}
        try:
            await self.db.run(lambda s: registry.register_platform(
                s, name=values["name"], issuer=values["issuer"], client_id=values["client_id"],
                deployment_ids=values["deployment_ids"].replace(",", "\n").splitlines(),
                auth_login_url=values["auth_login_url"], token_url=values["token_url"], jwks_url=values["jwks_url"]))
        except Conflict:
            return await self.admin(request, error="duplicate", values=values, status=409)
        except Unprocessable as exc:
            return await self.admin(request, error=(exc.details or [{}])[0].get("field", "form"), values=values, status=422)
        raise web.HTTPSeeOther("/admin/lti?done=registered")

    async def admin_remove(self, request: web.Request) -> web.StreamResponse:
        self._admin(request)
        platform_id = int(request.match_info["platform_id"])
        try:
            await self.db.run(lambda s: registry.remove_platform(s, platform_id))
        except NotFound:
            return await self.admin(request, status=404)
        raise web.HTTPSeeOther("/admin/lti?done=removed")

    async def admin_rotate(self, request: web.Request) -> web.StreamResponse:
        self._admin(request)
        await self.db.run(lambda s: keys.rotate(s, self.sealer))
        raise web.HTTPSeeOther("/admin/lti?done=rotated")
