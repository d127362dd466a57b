"""Account pages: the language switcher, the profile (name, language) and personal API tokens."""

from __future__ import annotations

from typing import Any, Iterable

from aiohttp import web
from sqlalchemy.orm import Session

from live_server import accounts
from live_server.errors import Unprocessable
from live_server.db import Database
from live_server.models import Role, User
from web import i18n
from web.guards import current_user, html_errors, require_login
from web.pages import _safe_next, render
from web.templating import language, translator
from web.transcription_view import language_options


def _profile_page(request: web.Request, values: dict[str, str], errors: dict[str, str], notice: str | None,
                  spoken: list[tuple[str, str]], status: int = 200) -> web.Response:
    return render(request, "profile.html", {"values": values, "errors": errors, "notice": notice, "spoken_languages": spoken},
                  status=status)


def _tokens_page(request: web.Request, tokens: list[Any], created: str | None = None, name: str = "",
                 error: str | None = None, notice: str | None = None, status: int = 200) -> web.Response:
    return render(request, "tokens.html", {"tokens": tokens, "created": created, "name": name, "error": error,
                                           "notice": notice}, status=status)


class AccountPages:
    """The language switcher, the profile and personal API tokens."""

    def __init__(self, db: Database, transcription_languages: Iterable[str] = ()) -> None:
        self.db = db
        self.transcription_languages = frozenset(transcription_languages)  # those with a speech model

    def _spoken(self, request: web.Request, user: User) -> list[tuple[str, str]]:
        """Lecturers choose the spoken language their imports and uncaptioned live runs are transcribed in."""
        if user.role not in (Role.LECTURER, Role.ADMIN):
            return []
        codes = set(self.transcription_languages) | ({user.transcription_language} if user.transcription_language else set())
        return language_options(codes, language(request))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/language", self.switch_language, name="language"),
            web.get("/profile", html_errors(self.profile), name="profile"),
            web.post("/profile", html_errors(self.save_profile)),
            web.get("/profile/tokens", html_errors(self.tokens), name="tokens"),
            web.post("/profile/tokens", html_errors(self.create_token)),
            web.post("/profile/tokens/{token_id:\\d+}/revoke", html_errors(self.revoke_token)),
        ]

    async def switch_language(self, request: web.Request) -> web.Response:
        """The switcher in every page's header: a cookie for everyone, and the profile for people logged in."""
        form = await request.post()
        lang = str(form.get("language", ""))
        target = _safe_next(str(form.get("next", "/")))
        response = web.HTTPSeeOther(target)
        if lang not in i18n.LANGUAGES:
            raise response
        response.set_cookie(i18n.LANGUAGE_COOKIE, lang, max_age=365 * 86400, samesite="Lax", path="/", httponly=True)
        user = current_user(request)
        if user is not None:
            await self.db.run(lambda s: accounts.update_profile(s, user.id, user.display_name, lang))
        raise response

    async def profile(self, request: web.Request) -> web.Response:
        user = require_login(request)
        _ = translator(request)
        notice = _("Your profile was saved.") if request.query.get("saved") else None
        return _profile_page(request, {"display_name": user.display_name, "language": user.language or "",
                                       "transcription_language": user.transcription_language or ""}, {}, notice,
                             self._spoken(request, user))

    async def save_profile(self, request: web.Request) -> web.Response:
        user = require_login(request)
        _ = translator(request)
        form = await request.post()
        spoken = self._spoken(request, user)
        values = {"display_name": str(form.get("display_name", "")).strip(), "language": str(form.get("language", "")),
                  "transcription_language": str(form.get("transcription_language", "")) if spoken else ""}
        errors: dict[str, str] = {}
        if not values["display_name"] or len(values["display_name"]) > 200:
            errors["display_name"] = _("Give a name of 1 to 200 characters.")
        if values["language"] and values["language"] not in i18n.LANGUAGES:
            errors["language"] = _("Choose a language from the list.")
        if values["transcription_language"] and values["transcription_language"] not in dict(spoken):
            errors["transcription_language"] = _("Choose a language from the list.")
        if errors:
            return _profile_page(request, values, errors, None, spoken, status=422)

        def save(session: Session) -> None:
            accounts.update_profile(session, user.id, values["display_name"], values["language"] or None)
            if spoken:
                row = session.get(User, user.id)
                if row is not None:
                    row.transcription_language = values["transcription_language"] or None

        await self.db.run(save)
        response = web.HTTPSeeOther("/profile?saved=1")
        response.del_cookie(i18n.LANGUAGE_COOKIE, path="/")  # the profile decides now ("Automatic": the browser)
        raise response

    async def _tokens(self, request: web.Request) -> list[Any]:
        user = require_login(request)
        return await self.db.run(lambda s: accounts.list_api_tokens(s, user))

    async def tokens(self, request: web.Request) -> web.Response:
        _ = translator(request)
        notice = _("The token was revoked; it no longer works.") if request.query.get("revoked") else None
        return _tokens_page(request, await self._tokens(request), notice=notice)

    async def create_token(self, request: web.Request) -> web.Response:
        """The token is shown once, in this response only: it is never stored in clear, nor put in a URL."""
        user = require_login(request)
        _ = translator(request)
        name = str((await request.post()).get("name", "")).strip()

        def work(session: Session) -> str:
            token, _row = accounts.create_api_token(session, user, name)
            return token

        try:
            token = await self.db.run(work)
        except Unprocessable:
            return _tokens_page(request, await self._tokens(request), name=name, status=422,
                                error=_("Give the token a name of 1 to 100 characters."))
        response = _tokens_page(request, await self._tokens(request), created=token, status=201)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def revoke_token(self, request: web.Request) -> web.Response:
        user = require_login(request)
        token_id = int(request.match_info["token_id"])
        await self.db.run(lambda s: accounts.revoke_api_token(s, user, token_id))
        raise web.HTTPSeeOther("/profile/tokens?revoked=1")
