"""Pages in the visitor's language: the Jinja2 environment (with ``jinja2.ext.i18n``) and what every page knows.

Every template gets its strings from the request's catalog: ``{{ _("...") }}`` and
``{% trans %}`` look up ``_translations`` in the render context, which ``page_context`` puts
there. Handlers translate their own messages with ``_ = translator(request)``.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from live_server.http_request import identity_of
from web import i18n

LANGUAGE = web.RequestKey("language", str)
_FALLBACK = gettext.NullTranslations()


class Templating:
    """What every page's rendering needs besides the request: the translation catalogs and the public URL."""

    def __init__(self, catalogs: i18n.Catalogs, public_url: str) -> None:
        self.catalogs = catalogs
        self.public_url = public_url


# Kept on the app beside aiohttp_jinja2's environment (its own key), for the render helpers of every page.
TEMPLATING = web.AppKey("templating", Templating)


def setup_templates(app: web.Application, templates: Path, public_url: str = "") -> jinja2.Environment:
    """The app's Jinja2 environment: autoescaped HTML, gettext callables bound to the page's language."""
    app[TEMPLATING] = Templating(i18n.Catalogs(), public_url)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["datetime"] = _datetime
    env.filters["number"] = _number
    env.filters["duration"] = i18n.format_duration
    return env


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    return context.get("_translations", _FALLBACK).gettext(message)


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    return context.get("_translations", _FALLBACK).ngettext(singular, plural, n)


@jinja2.pass_context
def _datetime(context: jinja2.runtime.Context, value: datetime | None) -> str:
    return i18n.format_datetime(value, context.get("lang", i18n.DEFAULT_LANGUAGE), context.get("timezone", ZoneInfo("UTC")))


@jinja2.pass_context
def _number(context: jinja2.runtime.Context, value: float | int) -> str:
    return i18n.format_number(value, context.get("lang", i18n.DEFAULT_LANGUAGE))


def language(request: web.Request) -> str:
    """The request's language: profile, else the switcher's cookie, else Accept-Language, else English."""
    lang = request.get(LANGUAGE)
    if lang is None:
        identity = identity_of(request)
        profile = identity.user.language if identity is not None else None
        lang = i18n.choose_language(profile, request.cookies.get(i18n.LANGUAGE_COOKIE),
                                    request.headers.get("Accept-Language", ""))
        request[LANGUAGE] = lang
    return lang


def translations(request: web.Request) -> gettext.NullTranslations:
    templating = request.config_dict.get(TEMPLATING)
    return templating.catalogs.get(language(request)) if templating is not None else _FALLBACK


def translator(request: web.Request) -> Callable[[str], str]:
    """``_ = translator(request)``: the gettext of the request's language, for messages made in Python."""
    return translations(request).gettext


def timezone_of(request: web.Request) -> ZoneInfo:
    """The visitor's time zone, which site.js stores in a cookie from the browser's own setting."""
    return i18n.zone(request.cookies.get(i18n.TIMEZONE_COOKIE))


def site_url(request: web.Request) -> str:
    """The address people reach this site at: the configured public URL, else what this request used."""
    templating = request.config_dict.get(TEMPLATING)
    public = templating.public_url if templating is not None else ""
    return public.rstrip("/") if public else f"{request.scheme}://{request.host}"


def page_context(request: web.Request) -> dict[str, Any]:
    """What base.html needs on every page: language, catalog, time zone, where the language switcher returns."""
    lang = language(request)
    return {
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "_translations": translations(request),
        "timezone": timezone_of(request),
        "current_path": request.path_qs,
        "site_url": site_url(request),
    }
