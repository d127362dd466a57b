"""/api/v1 login, logout, the current user and personal API tokens."""

from __future__ import annotations

from aiohttp import web

from live_server import accounts
from live_server.errors import TooManyRequests, Unauthorized, Unprocessable
from live_server.db import Database
from live_server.metrics import Metrics
from live_server.settings import Settings
from live_server.middleware import SESSION_COOKIE, json_body, require_identity, set_session_cookie
from live_server.session_people import SessionPeople


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


class Logins:
    """Opening and closing login sessions, shared by the API and the login page."""

    def __init__(self, db: Database, limiter: accounts.FailedLoginLimiter, metrics: Metrics, people: SessionPeople,
                 settings: Settings) -> None:
        self.db = db
        self.limiter = limiter
        self.metrics = metrics
        self.people = people
        self.settings = settings

    async def login(self, request: web.Request, username: str, password: str) -> tuple[str, accounts.User, str]:
        """Check credentials under the failed-login limit; returns (session token, user, csrf token)."""
        limiter = self.limiter
        settings = self.settings
        attempt = limiter.begin(username, client_address(request))  # counted before the first await
        if not isinstance(attempt, accounts.LoginAttempt):
            raise TooManyRequests("too many failed logins; try again later", retry_after=attempt)

        def work(session):  # type: ignore[no-untyped-def]
            user = accounts.authenticate(session, username, password)
            if user is None:
                return None
            token, row = accounts.open_login_session(session, user, settings.session_max_age_seconds, client_address(request))
            return token, user, row.csrf_token

        try:
            result = await self.db.run(work)
        except BaseException:
            limiter.failed(attempt)  # an error or a cancelled request still spent the attempt
            raise
        if result is None:
            limiter.failed(attempt)
            self.metrics.login_failures.inc()
            raise Unauthorized("wrong username or password", code="invalid_credentials")
        limiter.succeeded(attempt)
        return result

    async def logout(self, request: web.Request, response: web.StreamResponse) -> None:
        """End the caller's login session (API and page alike): the catalog row, this process's cached
        person (media requests with the old cookie are refused at once) and the cookie."""
        require_identity(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.db.run(lambda s: accounts.close_login_session(s, token))
            self.people.forget_session(token)
        response.del_cookie(SESSION_COOKIE, path="/")

    def set_cookie(self, request: web.Request, response: web.StreamResponse, token: str) -> None:
        set_session_cookie(request, response, token, self.settings.session_max_age_seconds, self.settings.cookie_secure)


class AuthApi:
    """/api/v1 login, logout, the current user and personal API tokens."""

    def __init__(self, logins: Logins, db: Database) -> None:
        self.logins = logins
        self.db = db

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/auth/login", self.api_login),
            web.post("/api/v1/auth/logout", self.api_logout),
            web.get("/api/v1/me", self.me),
            web.get("/api/v1/tokens", self.list_tokens),
            web.post("/api/v1/tokens", self.create_token),
            web.delete("/api/v1/tokens/{token_id:\\d+}", self.revoke_token),
        ]

    async def api_login(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) or not isinstance(body.get("password"), str):
            raise Unprocessable("send {\"username\": ..., \"password\": ...}")
        token, user, csrf = await self.logins.login(request, body["username"], body["password"])
        response = web.json_response({"user": accounts.user_json(user), "csrf_token": csrf})
        self.logins.set_cookie(request, response, token)
        return response

    async def api_logout(self, request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        await self.logins.logout(request, response)
        return response

    async def me(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        data = {"user": accounts.user_json(identity.user), "auth": identity.via}
        if identity.csrf_token:
            data["csrf_token"] = identity.csrf_token
        return web.json_response(data)

    async def list_tokens(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        rows = await self.db.run(lambda s: accounts.list_api_tokens(s, identity.user))
        return web.json_response({"tokens": [accounts.token_json(r) for r in rows]})

    async def create_token(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or set(body) - {"name"}:
            raise Unprocessable("send {\"name\": \"what the token is for\"}")
        token, row = await self.db.run(lambda s: accounts.create_api_token(s, identity.user, body["name"]))
        # The token is shown once, here; only its hash is kept.
        return web.json_response({**accounts.token_json(row), "token": token}, status=201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        identity = require_identity(request)
        token_id = int(request.match_info["token_id"])
        await self.db.run(lambda s: accounts.revoke_api_token(s, identity.user, token_id))
        return web.Response(status=204)
