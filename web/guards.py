"""What page handlers share: who may open a page, and errors shown as pages in the visitor's language.

The API answers JSON errors (``live_server/middleware.py``); a person in a browser gets a page with a
way back instead, and the login form when they are not logged in.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from live_server.errors import ServiceError
from live_server.http_request import identity_of
from live_server.models import Role, User
from web.pages import ERROR_TITLES, error_page, render, wants_page

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def current_user(request: web.Request) -> User | None:
    identity = identity_of(request)
    return identity.user if identity is not None else None


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")


def require_login(request: web.Request) -> User:
    user = current_user(request)
    if user is None:
        raise login_redirect(request)
    return user


class PageError(Exception):
    """A page that cannot be shown to this visitor (rendered by ``html_errors``)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message


def require_role(request: web.Request, *roles: Role) -> User:
    user = require_login(request)
    if user.role not in roles:
        raise PageError(403)
    return user


def html_errors(handler: PageHandler) -> PageHandler:
    """Service and page errors become a page; not being logged in leads to the login form."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as exc:
            return error_page(request, exc.status, exc.message)
        except ServiceError as exc:
            if exc.status == 401:
                raise login_redirect(request) from None
            return error_page(request, exc.status)

    return wrapper


@web.middleware
async def error_pages_middleware(request: web.Request, handler: PageHandler) -> web.StreamResponse:
    """A person in a browser who reaches an unknown event, recording or path (or a page refused to them) gets a
    page in their language, with a title, landmarks, a heading and a way back, instead of the API's plain text.
    Wired inside the identity middleware (the page knows who is there; a CSRF refusal there stays plain text)
    and the security headers (it gets the CSP)."""
    try:
        return await handler(request)
    except ServiceError as exc:
        if exc.status not in ERROR_TITLES or not wants_page(request):
            raise
        return error_page(request, exc.status)
    except web.HTTPNotFound:
        if not wants_page(request):
            raise
        return error_page(request, 404)
