"""What the pages show of a recording's text tracks: each track's name in the page's language, and an
upload's refusal in words (field messages, and each problem of the file with its line number).

The problems come as codes with their fields (``formats.webvtt.PROBLEMS``), so they are said here in
French or English; the API says them in English.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from web.i18n import N_
from live_server.languages import language_name

__all__ = ["decorate_tracks", "refusal", "KIND_NAMES"]

KIND_NAMES = {"captions": N_("captions"), "subtitles": N_("subtitles"), "descriptions": N_("descriptions")}
ORIGIN_NAMES = {"live": N_("live captions"), "transcription": N_("automatic transcription"), "upload": N_("uploaded")}

FIELD_MESSAGES = {
    "language": N_("Give the language as a BCP 47 tag, for example fr, en or pt-BR."),
    "kind": N_("Choose captions, subtitles or descriptions."),
    "label": N_("The label may have at most 100 characters, without double quotes."),
    "file": N_("Choose a WebVTT (.vtt) or SubRip (.srt) file; nothing was saved."),
}

TOO_LARGE = N_("A subtitle file may be at most %(size)s KiB; nothing was saved.")

PROBLEM_MESSAGES = {
    "signature": N_("a WebVTT file starts with the line WEBVTT"),
    "header_not_ended": N_("a blank line must separate the WEBVTT line from the first cue"),
    "timing_expected": N_("expected a timing line “start --> end”, found “%(found)s”"),
    "bad_start": N_("bad start time “%(found)s” (expected %(expected)s)"),
    "bad_end": N_("bad end time “%(found)s” (expected %(expected)s)"),
    "ends_before_start": N_("the cue ends (%(end)s) before it starts (%(start)s)"),
    "past_a_day": N_("the cue ends after 24 hours (%(end)s)"),
    "blank_line_missing": N_("a blank line is missing before this timing line"),
    "number_missing": N_("a cue number is missing before the timing line"),
    "number_expected": N_("expected a cue number, found “%(found)s”"),
    "timing_missing": N_("a cue number without a timing line after it"),
    "no_text": N_("the cue has no text"),
    "not_utf8": N_("the file is not UTF-8 text; save it as UTF-8 and send it again"),
    "nul": N_("the file holds a NUL character"),
    "no_cues": N_("the file holds no cue with text"),
    "too_many_cues": N_("more than %(limit)s cues"),
}


def decorate_tracks(tracks: Iterable[dict[str, Any]], lang: str, _: Callable[[str], str]) -> list[dict[str, Any]]:
    """Each track with ``page_label``: its label, else its language in the page's language and its kind
    ("French (subtitles)"), as the player's menu and the list of tracks say it."""
    out = []
    for track in tracks:
        language = language_name(track["language"], lang)
        label = track["label"] or f"{language} ({_(KIND_NAMES.get(track['kind'], track['kind']))})"
        out.append({**track, "page_label": label, "language_name": language,
                    "kind_name": _(KIND_NAMES.get(track["kind"], track["kind"])),
                    "origin_name": _(ORIGIN_NAMES.get(track["origin"], track["origin"]))})
    return out


def refusal(result: dict[str, Any], _: Callable[[str], str]) -> dict[str, Any]:
    """An upload refused, for the form: ``errors`` per field (the error summary) and ``problems`` of the file."""
    errors = {name: _(FIELD_MESSAGES.get(name, FIELD_MESSAGES["file"])) for name in result["fields"]}
    if result.get("too_large"):
        errors["file"] = _(TOO_LARGE) % {"size": max(1, int(result["too_large"]) // 1024)}
    problems = []
    for p in result["problems"]:
        template = PROBLEM_MESSAGES.get(p["code"])
        text = _(template) % p["fields"] if template else p["message"]
        problems.append(_("Line %(line)s: %(problem)s") % {"line": p["line"], "problem": text})
    return {"errors": errors, "problems": problems, "sent": result.get("values", {})}
