"""Opening and closing login sessions: the one login and logout, for the API and the login page alike.

The failed-login limit is counted before the first await; logout forgets the session in this
process's cache of media people at once. A module of its own beside ``accounts`` (which it uses) so
that ``accounts`` stays free of aiohttp and of ``session_people``, which imports it.
"""

from __future__ import annotations

from aiohttp import web

from live_server import accounts
from live_server.db import Database
from live_server.errors import TooManyRequests, Unauthorized
from live_server.http_request import SESSION_COOKIE, require_identity, set_session_cookie
from live_server.metrics import Metrics
from live_server.session_people import SessionPeople
from live_server.settings import Settings


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

    async def login_vouched(self, request: web.Request, user_id: int) -> str:
        """Open a session for an account another party has just vouched for (a verified LTI launch: the
        platform's signature stands for the password); returns the session token."""
        settings = self.settings

        def work(session):  # type: ignore[no-untyped-def]
            user = session.get(accounts.User, user_id)
            if user is None or not user.is_active:
                raise Unauthorized("this account cannot log in", code="inactive")
            token, _row = accounts.open_login_session(session, user, settings.session_max_age_seconds,
                                                      client_address(request))
            return token

        return await self.db.run(work)

    def set_cookie(self, request: web.Request, response: web.StreamResponse, token: str, cross_site: bool = False) -> None:
        set_session_cookie(request, response, token, self.settings.session_max_age_seconds, self.settings.cookie_secure,
                           cross_site)
