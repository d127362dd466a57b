"""/api/v1 login, logout, the current user and personal API tokens."""

from __future__ import annotations

from aiohttp import web

from live_server import accounts
from live_server.errors import Unprocessable
from live_server.db import Database
from live_server.http_request import json_body, require_identity
from live_server.logins import Logins


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
