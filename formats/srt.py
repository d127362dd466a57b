"""SubRip (``.srt``) subtitles: cues in, text out (the transcript download).

Pure code. A cue is a sequence number, ``hh:mm:ss,mmm --> hh:mm:ss,mmm`` and its lines, then a blank
line. SubRip has no escaping, so the writer keeps a cue's text from ending the cue early: blank
lines are dropped and ``-->`` (which a reader takes for a timing line) is written ``->``.
"""

from __future__ import annotations

from typing import Iterable

from formats import webvtt
from formats.webvtt import MIN_CUE_SECONDS, Cue

__all__ = ["format_timestamp", "render"]


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
