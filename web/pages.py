"""Server-rendered pages: login/logout, the event page, the replay page; ``render`` for every page.

The full interface (player, chat panels, dashboard, translations) grows in web/ with its own issue;
these pages already follow its rules: plain forms that work without JavaScript, CSRF on every form.
"""

from __future__ import annotations

import asyncio
import unicodedata
import urllib.parse
from typing import Any, Awaitable, Callable, Protocol

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.orm import Session

from live_server import events as ev
from live_server import security
from live_server.db import Database
from live_server.logins import Logins
from live_server.passes import MediaPasses
from live_server.settings import Settings
from live_server.errors import NotFound, ServiceError
from live_server.access import Decision, can_manage, can_view, event_target, person_of
from live_server.http_request import ANON_CSRF_COOKIE, identity_of
from live_server.languages import language_name
from live_server.models import Event, EventState, Visibility
from web.i18n import N_
from web.templating import page_context, translator
from vod.page import ReplayPages, event_replay, password_matches
from web.media import ViewerCounter
from web.audience_tab import AudienceTab
from web.transcription_view import TranscriptionStatus, decorate, language_options
from web.track_view import decorate_tracks, refusal


def _csrf_for(request: web.Request, response_cookies: dict[str, str]) -> str:
    identity = identity_of(request)
    if identity is not None and identity.csrf_token:
        return identity.csrf_token
    token = request.cookies.get(ANON_CSRF_COOKIE) or security.new_token(24)
    response_cookies[ANON_CSRF_COOKIE] = token
    return token


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    cookies: dict[str, str] = {}
    identity = identity_of(request)
    context = {
        **page_context(request),  # language, catalog, time zone (web/templating.py)
        "user": identity.user if identity else None, "csrf_token": _csrf_for(request, cookies),
        "status": status,  # base.html starts the title with "Error:" on 4xx pages (a form refused, a page not found)
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    for name, value in cookies.items():
        response.set_cookie(name, value, httponly=True, samesite="Strict", path="/")
    return response


ERROR_TITLES = {
    403: N_("Not allowed"),
    404: N_("Page not found"),
    409: N_("That cannot be done now"),
    429: N_("Too many attempts"),
}
ERROR_MESSAGES = {
    403: N_("You do not have access to this page."),
    404: N_("This page does not exist, or it is not yours to see."),
    409: N_("That cannot be done now."),
    429: N_("Too many attempts; wait a little and try again."),
}
_OTHER_TITLE = N_("Something went wrong")
_OTHER_MESSAGE = N_("Something went wrong; try again later.")


# Paths whose errors stay as they are: the API's JSON, media and scripts for players, oEmbed for LMS servers.
_NOT_PAGES = ("/api/", "/live/", "/vod/", "/static/", "/vendor/", "/socket.io/", "/whip", "/oembed", "/_media/")


def wants_page(request: web.Request) -> bool:
    """A person in a browser, on a page path: errors become pages (the API, media and scripts keep theirs)."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept and not request.path.startswith(_NOT_PAGES)


def error_page(request: web.Request, status: int, message: str | None = None) -> web.Response:
    _ = translator(request)
    title = _(ERROR_TITLES.get(status, _OTHER_TITLE))
    text = message or _(ERROR_MESSAGES.get(status, _OTHER_MESSAGE))
    return render(request, "error.html", {"title": title, "message": text, "status": status}, status=status)


def _safe_next(target: str) -> str:
    """A same-site path to go to after a form, else ``/``. Browsers and yarl drop tabs and newlines and read
    ``\\`` as ``/``, so ``/<TAB>/evil.example`` would become ``//evil.example``: any control character,
    whitespace or backslash is refused, and the parsed target must have no scheme and no host."""
    if not target.startswith("/") or len(target) > 2048:
        return "/"
    if any(c == "\\" or c.isspace() or unicodedata.category(c)[0] in "CZ" for c in target):
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


class LmsFraming(Protocol):
    """Which sites may frame the pages of what was put in an LMS course (the LTI tool's registered platforms)."""

    async def frame_ancestors(self) -> list[str]: ...


class TrackForms(Protocol):
    """The replay page's text-track forms (``vod.tracks_api.TrackApi``, handed over by the app factory)."""

    async def upload_form(self, request: web.Request, user: Any) -> dict[str, Any]: ...

    async def remove(self, request: web.Request, user: Any, track_ref: str) -> None: ...


class Pages:
    """Login and logout, the event page and the replay page."""

    def __init__(self, db: Database, passes: MediaPasses, viewers: ViewerCounter, settings: Settings, logins: Logins, replays: ReplayPages,
                 audience: AudienceTab | None = None, lms: LmsFraming | None = None,
                 transcriptions: TranscriptionStatus | None = None, tracks: TrackForms | None = None) -> None:
        self.db = db
        self.tracks = tracks  # the text tracks' upload and delete forms; None: no forms
        self.lms = lms
        self.transcriptions = transcriptions  # the recording page's transcription panel; None: no panel
        self.audience = audience  # the owners' Audience tab (issue 21); None: no tab
        self.passes = passes
        self.viewers = viewers
        self.settings = settings
        self.logins = logins
        self.replays = replays

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/login", self.login_form, name="login"),
            web.post("/login", self.login_submit),
            web.post("/logout", self.logout_submit),
            web.get("/events/{slug}", self._not_found_in_lms(self.event_page), name="event"),
            web.post("/events/{slug}/unlock", self.unlock_event),
            web.get("/recordings/{id}", self._not_found_in_lms(self.replay_page), name="replay"),
            web.post("/recordings/{id}/unlock", self.unlock_replay),
            web.post("/recordings/{id}/tracks", self.upload_track),
            web.post("/recordings/{id}/tracks/{track:[0-9]+}/delete", self.delete_track),
        ]

    async def login_form(self, request: web.Request) -> web.Response:
        return render(request, "login.html", {"error": None, "next": request.query.get("next", "/")})

    async def login_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "/")))
        try:
            token, _user, _csrf = await self.logins.login(request, username, password)
        except ServiceError as exc:
            _ = translator(request)
            message = _("Too many failed logins; wait a few minutes and try again.") if exc.status == 429 else \
                _("Wrong username or password.")
            return render(request, "login.html", {"error": message, "next": target}, status=exc.status)
        response = web.HTTPSeeOther(target)
        self.logins.set_cookie(request, response, token)
        raise response

    async def logout_submit(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        await self.logins.logout(request, response)
        raise response

    def _grant_pass(self, request: web.Request, response: web.StreamResponse, event: Event) -> None:
        self.passes.grant(request, response, event_target(event), self.settings.cookie_secure)

    async def _load_event(self, request: web.Request) -> tuple[Event, Decision]:
        """The event and what this visitor may see of it (``live_server/access.py``)."""
        identity = identity_of(request)
        person = person_of(identity)
        passes = self.passes.presented(request.cookies)

        def work(session: Session) -> tuple[Event, Decision]:
            event = ev.get_event(session, request.match_info["slug"], identity.user if identity else None)
            decision = can_view(person, event_target(event), passes)
            if decision is Decision.LOGIN_REQUIRED:
                raise web.HTTPSeeOther(f"/login?next=/events/{event.slug}")
            if decision is Decision.NOT_FOUND:
                raise NotFound("no such event")
            return event, decision

        return await self.db.run(work)

    async def _event_context(self, request: web.Request, event: Event, manager: bool, locked: bool) -> dict[str, Any]:
        """What event.html needs; the player follows the event's state by itself (player.js polls the API)."""
        identity = identity_of(request)
        user = identity.user if identity else None
        replay = None
        if not locked and event.state == EventState.ENDED:
            replay = await self.db.run(lambda s: event_replay(s, event, user))
        return {
            "event": event,
            "can_manage": manager,
            "locked": locked,
            "unlock_error": None,
            # DVR events play the EVENT playlist (every segment so far): viewers can seek back.
            "playback_url": f"/live/{event.slug}/{'master-dvr.m3u8' if event.dvr else 'master.m3u8'}",
            "api_url": f"/api/v1/events/{event.slug}",
            "replay": replay,
            "viewers": self.viewers.count(event.id) if event.state == EventState.LIVE else 0,
            "base_url": self.settings.base_url,
            "audience": await self._event_audience(request, event) if manager and not locked else None,
        }

    async def _event_audience(self, request: web.Request, event: Event) -> dict[str, Any] | None:
        """The owner's Audience tab, once viewers could have come (during the live run and after)."""
        if self.audience is None or event.state == EventState.SCHEDULED and event.started_at is None:
            return None
        context = page_context(request)
        return await self.audience.for_event(event, translator(request), context["timezone"], context["lang"])

    async def event_page(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        event, decision = await self._load_event(request)
        manager = can_manage(person_of(identity), event_target(event))  # owners and the course's instructors
        locked = decision is Decision.PASSWORD_REQUIRED
        response = render(request, "event.html", await self._event_context(request, event, manager, locked=locked))
        if not locked and not manager and event.visibility == Visibility.PASSWORD:
            self._grant_pass(request, response, event)  # opening the page renews the pass the password earned
        if event.lti_context_id is not None:
            await self._lms_framable(response)
        return response

    async def _lms_framable(self, response: web.StreamResponse) -> None:
        """Put in a course: the LMS shows this page in its frame (the security headers merge this directive)."""
        if self.lms is not None:
            response.headers["Content-Security-Policy"] = " ".join(
                ["frame-ancestors 'self'", *await self.lms.frame_ancestors()])

    def _not_found_in_lms(self, handler: Callable[[web.Request], Awaitable[web.Response]]
                          ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Someone outside a course who opens its lecture from the LMS reads "not found" inside the LMS's frame,
        not the browser's blocked-frame error. Every 404 of these pages allows the registered platforms alike,
        whether or not the event exists: the headers do not tell a course-only event from no event."""

        async def page(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except NotFound:
                if not wants_page(request):
                    raise
                response = error_page(request, 404)
                await self._lms_framable(response)
                return response

        return page

    async def unlock_event(self, request: web.Request) -> web.Response:
        """Password-protected events: the right password earns a signed media pass (a cookie)."""
        event, _decision = await self._load_event(request)
        form = await request.post()
        password = str(form.get("password", ""))
        ok = await asyncio.get_running_loop().run_in_executor(
            None, lambda: bool(event.password_hash) and security.verify_password(password, event.password_hash or "")
        )
        if not ok:
            _ = translator(request)
            context = await self._event_context(request, event, False, locked=True)
            return render(request, "event.html", {**context, "unlock_error": _("Wrong password.")}, status=403)
        response = web.HTTPSeeOther(f"/events/{event.slug}")
        self._grant_pass(request, response, event)
        raise response

    async def replay_page(self, request: web.Request) -> web.Response:
        """A recording's replay: the VOD with its captions, chapters and chat (logic in vod/page.py)."""
        return await self._replay(request)

    async def _replay(self, request: web.Request, extra: dict[str, Any] | None = None, status: int = 200) -> web.Response:
        view = await self.replays.replay_view(request)
        context = view.context
        page = page_context(request)
        context["tracks"] = decorate_tracks(view.tracks, page["lang"], translator(request))
        context["track_form"] = {"errors": {}, "problems": [], "sent": {}} if self.tracks is not None else None
        context["request_track"] = request.query.get("track")
        context.update(extra or {})
        if self.settings.audience_enabled:  # the player's watch beacons, paced and bounded by the settings
            context["beacon"] = {"url": f"{context['api_url']}/watch", "seconds": self.settings.audience_beacon_seconds,
                                 "max_ranges": self.settings.audience_beacon_max_ranges,
                                 "max_seconds": self.settings.audience_beacon_max_seconds}
        if self.audience is not None and view.manager and not view.locked:
            page = page_context(request)
            context["audience"] = await self.audience.for_recording(view.recording, view.event, translator(request),
                                                                    page["timezone"], page["lang"])
        identity = identity_of(request)
        if self.transcriptions is not None and identity is not None and not view.locked:
            panel = await self.transcriptions.panel(view.recording.id, identity.user)
            if panel is not None:
                lang = page_context(request)["lang"]
                context["transcription"] = {
                    "job": decorate(panel["job"], lang) if panel["job"] else None,
                    "languages": language_options(panel["languages"], lang),
                    "default": (panel["job"] or {}).get("language") or view.caption_language or identity.user.transcription_language,
                }
        described = await self.replays.audio_description_panel(view, identity.user if identity else None)
        if described is not None:
            lang = page_context(request)["lang"]
            context["audio_description"] = {
                "tracks": [{**t, "language_name": language_name(t["language"], lang),
                            "language_word": language_name(t["language"], lang, capital=False)} for t in described["tracks"]],
                # espeak-ng's voices that have a name (it also speaks Klingon, "piqd", which no page language names)
                "languages": [o for o in language_options(described["voices"], lang) if o[1] != o[0]],
                "default": view.caption_language or lang,
            }
        response = render(request, "replay.html", context, status=status)
        self.replays.grant_pass(request, response, view)
        if view.recording.lti_context_id is not None or (view.event is not None and view.event.lti_context_id is not None):
            await self._lms_framable(response)
        return response

    async def upload_track(self, request: web.Request) -> web.Response:
        """The replay page's upload form: back to the list of tracks, or the page again (422) with every
        problem of the file by line; nothing is saved then."""
        identity = identity_of(request)
        if identity is None or self.tracks is None:
            raise web.HTTPSeeOther(f"/login?next=/recordings/{request.match_info['id']}")
        result = await self.tracks.upload_form(request, identity.user)
        if result["saved"]:
            raise web.HTTPSeeOther(f"/recordings/{request.match_info['id']}?track=added#tracks")
        _ = translator(request)
        return await self._replay(request, {"track_form": refusal(result, _)}, status=422)

    async def delete_track(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        if identity is None or self.tracks is None:
            raise web.HTTPSeeOther(f"/login?next=/recordings/{request.match_info['id']}")
        await self.tracks.remove(request, identity.user, request.match_info["track"])
        raise web.HTTPSeeOther(f"/recordings/{request.match_info['id']}?track=deleted#tracks")

    async def unlock_replay(self, request: web.Request) -> web.Response:
        view = await self.replays.replay_view(request)
        form = await request.post()
        if view.locked and not await password_matches(view, str(form.get("password", ""))):
            _ = translator(request)
            return render(request, "replay.html", {**view.context, "unlock_error": _("Wrong password.")}, status=403)
        view.locked = False
        response = web.HTTPSeeOther(f"/recordings/{view.recording.public_ref}")
        self.replays.grant_pass(request, response, view)
        raise response
