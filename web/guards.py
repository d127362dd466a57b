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
from web.i18n import N_
from web.pages import render
from web.templating import translator

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TITLES = {
    403: N_("Not allowed"),
    404: N_("Page not found"),
    409: N_("That cannot be done now"),
    429: N_("Too many attempts"),
}
_MESSAGES = {
    403: N_("You do not have access to this page."),
    404: N_("This page does not exist, or it is not yours to see."),
    409: N_("That cannot be done now."),
    429: N_("Too many attempts; wait a little and try again."),
}
_OTHER_TITLE = N_("Something went wrong")
_OTHER_MESSAGE = N_("Something went wrong; try again later.")


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


def error_page(request: web.Request, status: int, message: str | None = None) -> web.Response:
    _ = translator(request)
    title = _(_TITLES.get(status, _OTHER_TITLE))
    text = message or _(_MESSAGES.get(status, _OTHER_MESSAGE))
    return render(request, "error.html", {"title": title, "message": text, "status": status}, status=status)


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


# Paths whose errors stay as they are: the API's JSON, media and scripts for players, oEmbed for LMS servers.
_NOT_PAGES = ("/api/", "/live/", "/vod/", "/static/", "/vendor/", "/socket.io/", "/whip", "/oembed", "/_media/")


def _wants_page(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept and not request.path.startswith(_NOT_PAGES)


@web.middleware
async def error_pages_middleware(request: web.Request, handler: PageHandler) -> web.StreamResponse:
    """A person in a browser who reaches an unknown event, recording or path (or a page refused to them) gets a
    page in their language, with a title, landmarks, a heading and a way back, instead of the API's plain text.
    Wired inside the identity middleware (the page knows who is there; a CSRF refusal there stays plain text)
    and the security headers (it gets the CSP)."""
    try:
        return await handler(request)
    except ServiceError as exc:
        if exc.status not in _TITLES or not _wants_page(request):
            raise
        return error_page(request, exc.status)
    except web.HTTPNotFound:
        if not _wants_page(request):
            raise
        return error_page(request, 404)
