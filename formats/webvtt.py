"""WebVTT (W3C WebVTT, as HLS subtitle renditions and ``<track>`` files use it): cues in, text out.

The one writer of the code base: live caption segments, the whole captions track of a recording
and the replay's chapters all go through :func:`render`, so escaping is done once. A cue's text is
plain text (a lecturer's chapter title, recognized words), never markup: ``&``, ``<`` and ``>``
are written as character references, so ``<b>`` shows as ``<b>`` and ``-->`` can never end up in a
payload (it would start a new cue); blank lines, which end a cue, are dropped. The parser reads
back what the writer writes (tests, checks of written files).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

__all__ = [
    "Cue",
    "TimestampMap",
    "WebVttError",
    "escape",
    "unescape",
    "format_timestamp",
    "parse_timestamp",
    "render",
    "parse",
]

# A cue that would end at or before its start is not a cue (WebVTT requires end > start).
MIN_CUE_SECONDS = 0.001


class WebVttError(ValueError):
    """Text that is not a WebVTT file we can read."""


@dataclass(frozen=True)
class Cue:
    """Plain text shown from ``start`` to ``end`` (seconds); lines separated by ``\\n``."""

    start: float
    end: float
    text: str
    identifier: str | None = None


@dataclass(frozen=True)
class TimestampMap:
    """HLS ``X-TIMESTAMP-MAP``: media time ``local`` is MPEG-TS time ``mpegts`` (90 kHz)."""

    mpegts: int
    local: float

    def header(self) -> str:
        return f"X-TIMESTAMP-MAP=MPEGTS:{self.mpegts},LOCAL:{format_timestamp(self.local)}"


def format_timestamp(seconds: float) -> str:
    """WebVTT timestamp ``hh:mm:ss.ttt`` (hours always present)."""
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"negative or NaN time {seconds!r}")
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


_TIMESTAMP = re.compile(r"^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")


def parse_timestamp(text: str) -> float:
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise WebVttError(f"bad timestamp {text!r}")
    hours, minutes, secs, ms = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(ms) / 1000


def escape(text: str) -> str:
    """One line of plain text as a cue payload line: markup characters become references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def payload_lines(text: str) -> list[str]:
    """The escaped, non-blank lines of a cue's text (a blank line would end the cue)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [escape(line.strip()) for line in lines if line.strip()]


def _identifier(text: str) -> str:
    # An identifier is one line and must not contain "-->" (it would read as the timing line).
    return " ".join(text.split()).replace("-->", "->")


def render(cues: Iterable[Cue], timestamp_map: TimestampMap | None = None) -> str:
    """A complete WebVTT file (an HLS subtitle segment or a whole track).

    Cues without visible text are left out; a cue starting before 0 starts at 0; a cue that
    would not last is given one millisecond.
    """
    out = ["WEBVTT"]
    if timestamp_map is not None:
        out.append(timestamp_map.header())
    out.append("")
    for cue in cues:
        lines = payload_lines(cue.text)
        if not lines:
            continue
        if cue.identifier and _identifier(cue.identifier):
            out.append(_identifier(cue.identifier))
        start = max(0.0, cue.start)
        end = max(cue.end, start + MIN_CUE_SECONDS)
        out.append(f"{format_timestamp(start)} --> {format_timestamp(end)}")
        out.extend(lines)
        out.append("")
    return "\n".join(out) + "\n"


def parse(text: str) -> tuple[TimestampMap | None, list[Cue]]:
    """Parse the subset of WebVTT :func:`render` writes, text unescaped."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").lstrip("\ufeff").strip())
    header = blocks[0].split("\n")
    if not header[0].startswith("WEBVTT"):
        raise WebVttError("line 1: missing WEBVTT signature")
    tsmap: TimestampMap | None = None
    for line in header[1:]:
        if line.startswith("X-TIMESTAMP-MAP="):
            try:
                fields = dict(part.split(":", 1) for part in line[len("X-TIMESTAMP-MAP="):].split(","))
                tsmap = TimestampMap(int(fields["MPEGTS"]), parse_timestamp(fields["LOCAL"]))
            except (KeyError, ValueError) as exc:
                raise WebVttError(f"bad X-TIMESTAMP-MAP {line!r}") from exc
    cues = []
    for block in blocks[1:]:
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        identifier = None
        if "-->" not in lines[0]:
            identifier, lines = lines[0], lines[1:]
        if not lines or "-->" not in lines[0]:
            raise WebVttError(f"cue without timing: {block[:40]!r}")
        left, right = lines[0].split("-->", 1)
        start, end = parse_timestamp(left), parse_timestamp((right.split() or [""])[0])
        if end < start:
            raise WebVttError(f"cue ends before it starts: {lines[0]!r}")
        cues.append(Cue(start, end, "\n".join(unescape(line) for line in lines[1:]), identifier))
    return tsmap, cues
