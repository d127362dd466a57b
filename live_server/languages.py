"""Languages as people read them: one CLDR name lookup (Babel) for captions, replay subtitles and pages."""

from __future__ import annotations

from babel import Locale, UnknownLocaleError

__all__ = ["language_name", "own_name"]


def language_name(code: str, in_language: str | None = None, *, capital: bool = True) -> str:
    """``code``'s name in ``in_language`` (``fr`` → "French" in ``en``, in a sentence "français" in ``fr`` with
    ``capital=False``), or in itself when None; the code itself when CLDR does not know it."""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(in_language) or code
    except (ValueError, UnknownLocaleError):
        return code
    return name[:1].upper() + name[1:] if capital else name


def own_name(code: str) -> str:
    """A language's name in itself ("한국어", "Français"): a rendition's NAME, since RFC 8216 asks for a NAME in
    the rendition's language and one playlist serves every viewer, so no interface language fits all."""
    return language_name(code)
