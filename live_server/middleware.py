"""Request pipeline: errors as JSON, metrics, who is calling, CSRF, security headers."""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from live_server import accounts, security
from live_server.accounts import Identity
from live_server.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceError, TooManyRequests, Unauthorized
from live_server.db import Database
from live_server.http_request import ANON_CSRF_COOKIE, IDENTITY, SESSION_COOKIE
from live_server.metrics import Metrics

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Cross-site form posts by design: an LMS posts the LTI login initiation and the launch (lti/tool.py) from its
# own origin, with no token of ours. Each is checked otherwise: the launch's signed id_token, single-use state
# and nonce; the login initiation only starts a login (a redirect to the registered platform).
CROSS_SITE_POSTS = frozenset({"/lti/login", "/lti/launch"})
# the HLS routes and nginx's decisions for them; their identity is resolved lazily (session_people.py)
MEDIA_PREFIXES = ("/live/", "/vod/", "/live-decision/")
LAZY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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

    warnings = UntrustedProxyWarnings(bool(networks))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if "X-Forwarded-For" in request.headers and not (networks and trusted(request.remote)):
            warnings.seen(request.remote or "unknown")
        elif networks and trusted(request.remote):
            hops = _forwarded_hops(request.headers.getall("X-Forwarded-For", []))
            client = next((hop for hop in reversed(hops) if not trusted(hop)), hops[0] if hops else request.remote)
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                request = request.clone(remote=client or "", scheme=proto)
            else:
                request = request.clone(remote=client or "")
        return await handler(request)

    return middleware


class UntrustedProxyWarnings:
    """Say when X-Forwarded-For comes from a peer that is not a trusted proxy: behind nginx without
    ``trusted_proxies`` every student has nginx's address and shares its login limits. Once per peer
    (per hour), and at most ``per_minute`` lines a minute, so a client sending the header cannot flood the log."""

    def __init__(self, configured: bool, per_minute: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.configured = configured
        self.per_minute = per_minute
        self._clock = clock
        self._warned: dict[str, float] = {}
        self._minute_start = 0.0
        self._minute_count = 0

    def seen(self, peer: str) -> bool:
        now = self._clock()
        last = self._warned.get(peer)
        if last is not None and now - last < 3600:
            return False
        if now - self._minute_start >= 60:
            self._minute_start, self._minute_count = now, 0
        if self._minute_count >= self.per_minute:
            return False
        self._minute_count += 1
        if len(self._warned) >= 4096:
            self._warned.clear()
        self._warned[peer] = now
        hint = "add it to trusted_proxies (LIVE_TRUSTED_PROXIES) if it is your reverse proxy" if not self.configured \
            else "it is not in trusted_proxies"
        log.warning("X-Forwarded-For from %s ignored: %s; otherwise every client behind it shares its address "
                    "(login limits, viewer counts)", peer, hint)
        return True


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
    except HttpProcessingError as exc:  # a malformed form or multipart body (control characters in a part header...)
        log.info("malformed request body on %s %s from %s: %s", request.method, request.path, request.remote,
                 exc.__class__.__name__)
        return error_response(request, BadRequest("malformed request body", code="malformed_body"))
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


MAX_ROW_ID = 2**31 - 1  # catalog ids are INTEGER columns: 32-bit on PostgreSQL (64 on SQLite)
ID_PARAMETERS = frozenset({"id", "ref", "slug", "chapter"})


def _bad_id(value: str) -> bool:
    """A route id that no row can have: Unicode digits (``²`` passes ``isdigit`` but not ``int``) or beyond the id columns (32-bit)."""
    if not value.isdigit():
        return False  # a slug, looked up as text
    return not value.isascii() or len(value) > 10 or int(value) > MAX_ROW_ID


@web.middleware
async def route_ids_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One check for every route's id parameters (``{id}``, ``{ref}``, ``{slug}``, ``{chapter}``, ``{*_id}``),
    before any handler turns them into a database lookup that would overflow."""
    for name, value in request.match_info.items():
        if (name in ID_PARAMETERS or name.endswith("_id")) and _bad_id(value):
            raise NotFound("not found")
    return await handler(request)


def metrics_middleware(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Count and time every request by route (``live_http_requests_total``, ``live_http_latency_seconds``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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

    return middleware


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def identity_middleware(db: Database) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Resolve the caller from an API token or the session cookie; enforce CSRF on cookie-authenticated writes."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/socket.io/" and "sid" in request.query:
            # An engine.io session's later requests (long-polling GETs/POSTs): who it is was resolved at
            # its handshake, and its unguessable sid, known only to that client, is what a cross-site
            # form cannot forge (the chat checks Origin too). No query per poll, no CSRF header to add.
            return await handler(request)
        if request.method in LAZY_METHODS and request.path.startswith(MEDIA_PREFIXES):
            # Live and replay media: players poll them every couple of seconds. Their handlers ask
            # ``SessionPeople`` (cached) and only when the access rule needs a person; nothing to do here.
            return await handler(request)
        identity: Identity | None = None
        bearer = _bearer(request)
        if bearer is not None and bearer.startswith(accounts.API_TOKEN_PREFIX):
            identity = await db.run(lambda s: accounts.resolve_api_token(s, bearer))
            if identity is None:
                raise Unauthorized("invalid or revoked API token")
        elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
            identity = await db.run(lambda s: accounts.resolve_login_session(s, cookie))
        if identity is not None:
            request[IDENTITY] = identity
        if request.method in UNSAFE_METHODS and request.path not in CROSS_SITE_POSTS:
            await _check_csrf(request, identity)
        return await handler(request)

    return middleware


# Server-to-server callbacks that carry their own signature (a form post with no cookie): BigBlueButton's
# recording-ready callback is a JWT signed with the shared secret, checked by its handler (bbb/deposit.py).
SIGNED_CALLBACKS = ("/api/v1/bbb/recording-ready/",)


async def _check_csrf(request: web.Request, identity: Identity | None) -> None:
    if identity is None and request.path.startswith(SIGNED_CALLBACKS):
        return
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


def content_security_policy(extra_origins: Sequence[str] = ()) -> dict[str, str]:
    """The policy every page satisfies: scripts and styles only from our files (no inline script or style;
    data for scripts comes in ``<script type="application/json">`` blocks, which are not executed), media
    and fetches from us (``blob:`` for hls.js's MediaSource; ``data:`` for the empty ``data:,WEBVTT`` track
    hls.js adds for each subtitle rendition), from the public URL and, with object storage,
    from the bucket's presigned URLs. Framing: same origin unless a page says otherwise (embed pages)."""
    extra = " ".join(dict.fromkeys(extra_origins))
    with_extra = f"'self' {extra}".strip()
    return {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": f"{with_extra} data: blob:",
        "media-src": f"{with_extra} blob: data:",
        "connect-src": with_extra,
        "worker-src": "'self' blob:",
        "font-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'self'",
    }


def _merged_policy(base: dict[str, str], own: str | None) -> tuple[str, str]:
    """Our policy with the directives a handler set itself (e.g. ``frame-ancestors *``) taking precedence."""
    directives = dict(base)
    for part in (own or "").split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name.lower()] = value.strip()
    return "; ".join(f"{name} {value}" for name, value in directives.items()), directives["frame-ancestors"]


def security_headers_middleware(policy: dict[str, str], hsts_max_age: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """nosniff everywhere; on pages a Content-Security-Policy, X-Frame-Options only where framing is same-origin
    (it would contradict an embed page's ``frame-ancestors *``), and HSTS when the request came over TLS
    (directly, or through a trusted proxy that said X-Forwarded-Proto: https)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.content_type == "text/html":
            csp, frame_ancestors = _merged_policy(policy, response.headers.get("Content-Security-Policy"))
            response.headers["Content-Security-Policy"] = csp
            if frame_ancestors in ("'self'", "'none'"):
                response.headers.setdefault("X-Frame-Options", "SAMEORIGIN" if frame_ancestors == "'self'" else "DENY")
            else:
                response.headers.pop("X-Frame-Options", None)
            response.headers.setdefault("Referrer-Policy", "same-origin")
        if hsts_max_age > 0 and request.secure:
            response.headers.setdefault("Strict-Transport-Security", f"max-age={hsts_max_age}")
        return response

    return middleware
