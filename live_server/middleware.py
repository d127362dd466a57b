"""Request pipeline: errors as JSON, metrics, who is calling, CSRF, security headers."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

from live_server import accounts, security
from live_server.accounts import Identity
from live_server.errors import BadRequest, Forbidden, PayloadTooLarge, ServiceError, TooManyRequests, Unauthorized
from live_server.keys import DB, METRICS

log = logging.getLogger(__name__)
IDENTITY = web.RequestKey("identity", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "live_session"
ANON_CSRF_COOKIE = "live_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def error_response(request: web.Request, exc: ServiceError) -> web.Response:
    headers = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    if isinstance(exc, Unauthorized) and request.path.startswith("/api/"):
        headers["WWW-Authenticate"] = 'Bearer realm="live-server"'
    if wants_json(request):
        return web.json_response(exc.body(), status=exc.status, headers=headers)
    return web.Response(text=f"{exc.status} {exc.message}\n", status=exc.status, headers=headers)


def forwarded_middleware(trusted_proxies: Sequence[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Behind nginx, take the client address and scheme from X-Forwarded-For/-Proto — only when the
    direct peer is a trusted proxy, so nobody can forge their address (login limits, viewer counts)."""
    networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def trusted(address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in networks)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if networks and trusted(request.remote):
            hops = _forwarded_hops(request.headers.getall("X-Forwarded-For", []))
            client = next((hop for hop in reversed(hops) if not trusted(hop)), hops[0] if hops else request.remote)
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                request = request.clone(remote=client or "", scheme=proto)
            else:
                request = request.clone(remote=client or "")
        return await handler(request)

    return middleware


def _forwarded_hops(values: Iterable[str]) -> list[str]:
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": {"code", "message"}}`` with the right status; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(request, exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(request, PayloadTooLarge("the request body is too large"))
    except web.HTTPException as exc:
        if exc.status >= 400 and wants_json(request):
            code = exc.reason.lower().replace(" ", "_")
            return web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status, headers={
                k: v for k, v in exc.headers.items() if k.lower() in ("allow", "location")
            })
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"error": {"code": "internal", "message": "internal server error"}}
        if wants_json(request):
            return web.json_response(body, status=500)
        return web.Response(text="500 internal server error\n", status=500)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        info = request.match_info
        route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_latency.labels(request.method, route).observe(time.perf_counter() - start)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the caller from an API token or the session cookie; enforce CSRF on cookie-authenticated writes."""
    if request.path == "/socket.io/" and "sid" in request.query:
        # An engine.io session's later requests (long-polling GETs/POSTs): who it is was resolved at
        # its handshake, and its unguessable sid, known only to that client, is what a cross-site
        # form cannot forge (the chat checks Origin too). No query per poll, no CSRF header to add.
        return await handler(request)
    identity: Identity | None = None
    db = request.app[DB]
    bearer = _bearer(request)
    if bearer is not None and bearer.startswith(accounts.API_TOKEN_PREFIX):
        identity = await db.run(lambda s: accounts.resolve_api_token(s, bearer))
        if identity is None:
            raise Unauthorized("invalid or revoked API token")
    elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        identity = await db.run(lambda s: accounts.resolve_login_session(s, cookie))
    if identity is not None:
        request[IDENTITY] = identity
    if request.method in UNSAFE_METHODS:
        await _check_csrf(request, identity)
    return await handler(request)


async def _check_csrf(request: web.Request, identity: Identity | None) -> None:
    if identity is not None and identity.via == "token":
        return  # bearer tokens are not sent by browsers on their own: no CSRF exposure
    if identity is None and _bearer(request) is not None:
        return  # same for other bearer credentials (WHIP stream keys): a cross-site page cannot add the header
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise Forbidden("cross-origin request refused", code="csrf_failed")
    if identity is None:
        # Anonymous writes: JSON bodies cannot be sent cross-site without CORS; forms need the double-submit cookie.
        if request.content_type == "application/x-www-form-urlencoded" or request.content_type.startswith("multipart/"):
            form = await request.post()
            cookie = request.cookies.get(ANON_CSRF_COOKIE, "")
            field = str(form.get("csrf_token", ""))
            if not cookie or not security.constant_time_equals(cookie, field):
                raise Forbidden("the form expired; reload the page and try again", code="csrf_failed")
        return
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and (request.content_type == "application/x-www-form-urlencoded" or request.content_type.startswith("multipart/")):
        sent = str((await request.post()).get("csrf_token", ""))
    if not sent or not identity.csrf_token or not security.constant_time_equals(sent, identity.csrf_token):
        raise Forbidden("missing or wrong CSRF token (send X-CSRF-Token or the csrf_token form field)", code="csrf_failed")


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html":
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def identity_of(request: web.Request) -> Identity | None:
    return request.get(IDENTITY)


def require_identity(request: web.Request) -> Identity:
    identity = identity_of(request)
    if identity is None:
        raise Unauthorized("log in or send an API token")
    return identity


async def json_body(request: web.Request) -> object:
    """The request's JSON body; malformed JSON is a 400 that says where."""
    if request.content_type != "application/json":
        raise BadRequest("send the body as application/json", code="unsupported_media_type")
    raw = await request.read()
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from None


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str, max_age: int, secure_mode: str) -> None:
    secure = secure_mode == "always" or (secure_mode == "auto" and request.secure)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="Lax", secure=secure, path="/"
    )
