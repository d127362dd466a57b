"""What handlers read from a request (who is calling, its JSON body) and the session cookie they set.

The request pipeline (``live_server.middleware``, the roof) fills these in; every handler group, in
any component, reads them here, so no component imports the pipeline itself.
"""

from __future__ import annotations

import json

from aiohttp import web

from live_server.accounts import Identity
from live_server.errors import BadRequest, Unauthorized
from live_server.session_people import SESSION_COOKIE

__all__ = ["ANON_CSRF_COOKIE", "IDENTITY", "SESSION_COOKIE", "identity_of", "json_body", "require_identity",
           "set_session_cookie"]

IDENTITY = web.RequestKey("identity", Identity)
ANON_CSRF_COOKIE = "live_csrf"


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
    raw = await request.read()  # bounded by client_max_size (max_request_bytes)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from None
    except RecursionError:
        body = None
    else:
        problem = _json_problem(body, MAX_JSON_DEPTH)
        if problem is None:
            return body
        raise BadRequest(f"malformed JSON: {problem}", code="malformed_json")
    raise BadRequest(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels", code="malformed_json")


MAX_JSON_DEPTH = 32  # our payloads are two levels deep; deeper ones only serve to exhaust the stack later


def _json_problem(value: object, limit: int) -> str | None:
    """What makes a parsed body unusable: nesting beyond ``limit`` (it would exhaust the stack later) or a NUL
    character (PostgreSQL text refuses it). Iterative: no recursion on hostile input."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text must not contain NUL characters"
        elif isinstance(item, (list, dict)):
            if depth > limit:
                return f"nested deeper than {limit} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str, max_age: int, secure_mode: str,
                       cross_site: bool = False) -> None:
    """The login cookie: SameSite=Lax; ``cross_site`` (a session opened by an LTI launch, used inside the LMS's
    iframe on another site) makes it SameSite=None; Secure; Partitioned when the cookie can be Secure, the only
    way browsers send it in a cross-site frame. Over plain http it stays Lax (same-site frames only)."""
    secure = secure_mode == "always" or (secure_mode == "auto" and request.secure)
    if cross_site and secure:
        response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="None", secure=True,
                            partitioned=True, path="/")
        return
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="Lax", secure=secure, path="/"
    )
