"""SubRip (``.srt``) subtitles: cues in, text out (the transcript download), and uploaded files read back.

Pure code. A cue is a sequence number, ``hh:mm:ss,mmm --> hh:mm:ss,mmm`` and its lines, then a blank
line. SubRip has no escaping, so the writer keeps a cue's text from ending the cue early: blank
lines are dropped and ``-->`` (which a reader takes for a timing line) is written ``->``. The reader
(:func:`parse`) refuses a file with every problem's line number (``webvtt.SubtitleFileError``).
"""

from __future__ import annotations

import re
from typing import Iterable

from formats import webvtt
from formats.webvtt import MIN_CUE_SECONDS, Cue, Problem, SubtitleFileError

__all__ = ["format_timestamp", "render", "parse"]


def format_timestamp(seconds: float) -> str:
    """``hh:mm:ss,mmm``: WebVTT's timestamp with a comma before the milliseconds, SubRip's one difference."""
    return webvtt.format_timestamp(seconds).replace(".", ",")


def _lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line.strip().replace("-->", "->") for line in lines if line.strip()]


def render(cues: Iterable[Cue]) -> str:
    """A whole ``.srt`` file; cues without visible text are left out and the others numbered from 1."""
    out: list[str] = []
    number = 0
    for cue in cues:
        lines = _lines(cue.text)
        if not lines:
            continue
        number += 1
        start = max(0.0, cue.start)
        end = max(cue.end, start + MIN_CUE_SECONDS)
        out += [str(number), f"{format_timestamp(start)} --> {format_timestamp(end)}", *lines, ""]
    return "\n".join(out) + ("\n" if out else "")


# Hours may have one to three digits; some tools write a dot instead of the comma (accepted).
_TIMESTAMP = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})$")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} and the like, written by some converters


def _timestamp(text: str) -> float | None:
    match = _TIMESTAMP.match(text)
    if not match:
        return None
    hours, minutes, secs, ms = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(ms) / 1000


def parse(text: str) -> list[Cue]:
    """Cues of a SubRip file as plain text (``<i>``, ``<font>`` and ``{\\an8}`` dropped), in start order.

    Each block is a number, a timing line and at least one line of text; anything else is reported
    with its line number, every problem at once, and nothing is returned.
    """
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    problems: list[Problem] = []
    cues: list[Cue] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        first = i
        block: list[str] = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i].strip())
            i += 1
        timing_at = 1
        if "-->" in block[0]:  # the number is missing: said, and the timing read anyway
            problems.append(Problem.at(first + 1, "number_missing"))
            timing_at = 0
        elif not block[0].isdigit():
            problems.append(Problem.at(first + 1, "number_expected", found=block[0]))
            continue
        if timing_at >= len(block):
            problems.append(Problem.at(first + 1, "timing_missing"))
            continue
        line_no = first + timing_at + 1
        timing = block[timing_at]
        if "-->" not in timing:
            problems.append(Problem.at(line_no, "timing_expected", found=timing))
            continue
        left, _, rest = timing.partition("-->")
        right = (rest.split() or [""])[0]  # coordinates (X1:… Y2:…) after the end time are ignored
        start, end = _timestamp(left.strip()), _timestamp(right)
        problem = webvtt.timing_problem(line_no, start, end, left.strip(), right, "hh:mm:ss,mmm")
        if problem is not None:
            problems.append(problem)
            continue
        assert start is not None and end is not None
        payload = block[timing_at + 1:]
        for offset, line in enumerate(payload, start=line_no + 1):
            if "-->" in line:
                problems.append(Problem.at(offset, "blank_line_missing"))
        if not payload:
            problems.append(Problem.at(line_no, "no_text"))
            continue
        words = "\n".join(t for t in (webvtt.plain_text(_ASS_OVERRIDE.sub("", line)).strip() for line in payload) if t)
        if words:
            cues.append(Cue(start, end, words))
    if problems:
        raise SubtitleFileError(problems)
    return sorted(cues, key=lambda c: (c.start, c.end))
