"""SubRip (``.srt``) subtitles: cues in, text out (the transcript download).

Pure code. A cue is a sequence number, ``hh:mm:ss,mmm --> hh:mm:ss,mmm`` and its lines, then a blank
line. SubRip has no escaping, so the writer keeps a cue's text from ending the cue early: blank
lines are dropped and ``-->`` (which a reader takes for a timing line) is written ``->``.
"""

from __future__ import annotations

import math
from typing import Iterable

from formats.webvtt import MIN_CUE_SECONDS, Cue

__all__ = ["format_timestamp", "render"]


def format_timestamp(seconds: float) -> str:
    """``hh:mm:ss,mmm`` (a comma before the milliseconds: SubRip's one difference from WebVTT's)."""
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"negative or NaN time {seconds!r}")
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


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
