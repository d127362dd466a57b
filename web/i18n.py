"""Languages of the interface: the gettext catalogs (French, English) and how a visitor's language is chosen.

Source strings are English msgids in the templates and in Python (``_()``, ``N_()``); ``pybabel extract``
collects them into ``web/translations/messages.pot``, each language's ``.po`` translates them,
and ``make`` compiles the ``.mo`` files the server loads (see README, "Languages"). Pure code: no
aiohttp here, so the choice of a language is testable on its own.
"""

from __future__ import annotations

import gettext
import io
import logging
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.core import UnknownLocaleError
from babel.dates import format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

log = logging.getLogger(__name__)

DOMAIN = "messages"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LANGUAGE = "en"
# Languages offered, each named in itself (a language's own name is never translated).
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français"}
LANGUAGE_COOKIE = "live_lang"
TIMEZONE_COOKIE = "live_tz"


def N_(message: str) -> str:
    """Marks a Python string for extraction where it is defined; it is translated where it is shown."""
    return message


class Catalogs:
    """One gettext catalog per language, loaded once when the app starts.

    The ``.mo`` built by ``make`` is used when it is at least as new as its ``.po``; otherwise
    (a checkout where ``make`` has not run yet, or a ``.po`` just edited) the ``.po`` is compiled in
    memory with Babel, the same compiler ``pybabel compile`` uses, so a page never shows a stale string.
    """

    def __init__(self, directory: Path = TRANSLATIONS_DIR) -> None:
        self.directory = directory
        self._catalogs: dict[str, gettext.NullTranslations] = {DEFAULT_LANGUAGE: gettext.NullTranslations()}
        for lang in LANGUAGES:
            if lang != DEFAULT_LANGUAGE:
                self._catalogs[lang] = self._load(lang)

    def _load(self, lang: str) -> gettext.NullTranslations:
        folder = self.directory / lang / "LC_MESSAGES"
        po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
        if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
            with mo.open("rb") as fp:
                return gettext.GNUTranslations(fp)
        if not po.is_file():
            log.warning("no translation catalog for %r in %s; showing English", lang, folder)
            return gettext.NullTranslations()
        log.info("%s is missing or older than its .po: compiling in memory (run `make` to build it)", mo)
        with po.open("rb") as fp:
            catalog = read_po(fp, locale=lang, domain=DOMAIN)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        return gettext.GNUTranslations(buffer)

    def get(self, lang: str) -> gettext.NullTranslations:
        return self._catalogs.get(lang, self._catalogs[DEFAULT_LANGUAGE])


def parse_accept_language(header: str) -> list[str]:
    """Language tags from an Accept-Language header, most preferred first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _sep, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _eq, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _q, _i, tag in sorted(ranked)]


def _supported(tag: str | None) -> str | None:
    if not tag:
        return None
    base = tag.replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def choose_language(profile: str | None, cookie: str | None, accept_language: str) -> str:
    """The user's own choice (profile, else the switcher's cookie), else the browser's, else English."""
    for choice in (profile, cookie):
        if (lang := _supported(choice)) is not None:
            return lang
    for tag in parse_accept_language(accept_language):
        if (lang := _supported(tag)) is not None:
            return lang
    return DEFAULT_LANGUAGE


def zone(name: str | None) -> ZoneInfo:
    """A time zone by IANA name (``Europe/Paris``); UTC for anything unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def format_datetime(value: datetime | None, lang: str, tz: ZoneInfo) -> str:
    """A date and time as people of that language write it, in the visitor's time zone."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        locale = Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        locale = Locale.parse(DEFAULT_LANGUAGE)
    local = value.astimezone(tz)
    text = f"{format_skeleton('yMMMEd', local, locale=locale)} {format_time(local, 'short', locale=locale)}"
    return f"{text} ({tz.key})" if tz.key != "UTC" else f"{text} UTC"


def format_number(value: float | int, lang: str) -> str:
    return format_decimal(value, locale=lang)


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``4:05``: the same in every language."""
    if seconds is None:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
