"""WebVTT (W3C WebVTT, as HLS subtitle renditions and ``<track>`` files use it): cues in, text out.

The one writer of the code base: live caption segments, the whole captions track of a recording
and the replay's chapters all go through :func:`render`, so escaping is done once. A cue's text is
plain text (a lecturer's chapter title, recognized words), never markup: ``&``, ``<`` and ``>``
are written as character references, so ``<b>`` shows as ``<b>`` and ``-->`` can never end up in a
payload (it would start a new cue); blank lines, which end a cue, are dropped. The parser reads
back what the writer writes (tests, checks of written files).
"""

from __future__ import annotations

import html
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


# --- reading an uploaded file -------------------------------------------------------------------
#
# :func:`parse` reads back what :func:`render` writes. A file a person uploads is any WebVTT: header
# text, NOTE, STYLE and REGION blocks, cue settings, markup in cue text (<i>, <v Speaker>, <c.x>,
# timestamps), character references. :func:`read_file` accepts all of that and keeps what a caption
# track of ours stores: timed plain text. Every problem is reported with its line number, all of them at
# once (up to ``MAX_PROBLEMS``), so a lecturer fixes a file in one go; the file is refused as a whole.

MAX_PROBLEMS = 20
MAX_CUE_SECONDS = 24 * 3600.0  # no recording is a day long: a timestamp past it is a typo
_TAG = re.compile(r"<[^>\n]*>")
_UPLOAD_TIMESTAMP = re.compile(r"^(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")


# What can be wrong with a subtitle file, as English text; pages translate by ``code`` with the same fields.
PROBLEMS = {
    "signature": "a WebVTT file starts with the line WEBVTT",
    "header_not_ended": "a blank line must separate the WEBVTT line from the first cue",
    "timing_expected": "expected a timing line 'start --> end', found '{found}'",
    "bad_start": "bad start time '{found}' (expected {expected})",
    "bad_end": "bad end time '{found}' (expected {expected})",
    "ends_before_start": "the cue ends ({end}) before it starts ({start})",
    "past_a_day": "the cue ends after 24 hours ({end})",
    "blank_line_missing": "a blank line is missing before this timing line",
    "number_missing": "a cue number is missing before the timing line",
    "number_expected": "expected a cue number, found '{found}'",
    "timing_missing": "a cue number without a timing line after it",
    "no_text": "the cue has no text",
    "not_utf8": "the file is not UTF-8 text; save it as UTF-8 and send it again",
    "nul": "the file holds a NUL character",
    "no_cues": "the file holds no cue with text",
    "too_many_cues": "more than {limit} cues",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a subtitle file, at its line (1-based): a ``code`` of ``PROBLEMS`` and its fields."""

    line: int
    code: str
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def at(cls, line: int, code: str, **fields: object) -> "Problem":
        return cls(line, code, tuple((k, str(v)[:60]) for k, v in fields.items()))

    @property
    def message(self) -> str:
        return PROBLEMS[self.code].format(**dict(self.fields))

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class SubtitleFileError(ValueError):
    """A subtitle file refused: ``problems`` says what and where (line numbers)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems[:MAX_PROBLEMS]
        super().__init__("; ".join(str(p) for p in self.problems))


def plain_text(payload: str) -> str:
    """A cue payload as plain text: markup tags dropped, character references (``&amp;``, ``&nbsp;``) decoded."""
    return html.unescape(_TAG.sub("", payload)).replace("\u00a0", " ")


def _upload_timestamp(text: str) -> float | None:
    match = _UPLOAD_TIMESTAMP.match(text)
    if not match:
        return None
    hours, minutes, secs, ms = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(ms) / 1000


def timing_problem(line: int, start: float | None, end: float | None, left: str, right: str,
                   expected: str) -> Problem | None:
    """Why a cue's timing line is refused (None: it is fine); ``expected`` shows the timestamp's form."""
    if start is None:
        return Problem.at(line, "bad_start", found=left, expected=expected)
    if end is None:
        return Problem.at(line, "bad_end", found=right, expected=expected)
    if end <= start:
        return Problem.at(line, "ends_before_start", start=left, end=right)
    if end > MAX_CUE_SECONDS:
        return Problem.at(line, "past_a_day", end=right)
    return None


def read_file(text: str) -> list[Cue]:
    """Cues of an uploaded WebVTT file, as plain text, in start order; :class:`SubtitleFileError` otherwise."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    problems: list[Problem] = []
    if not (lines[0] == "WEBVTT" or lines[0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise SubtitleFileError([Problem.at(1, "signature")])
    i = 1
    while i < len(lines) and lines[i].strip():  # the header's own lines
        if "-->" in lines[i]:
            problems.append(Problem.at(i + 1, "header_not_ended"))
        i += 1
    cues: list[Cue] = []
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        first = i
        block: list[str] = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        head = block[0].strip()
        if "-->" not in head and any(head == kw or head.startswith((kw + " ", kw + "\t"))
                                     for kw in ("NOTE", "STYLE", "REGION")):
            continue
        identifier: str | None = None
        timing_at = 0
        if "-->" not in block[0]:
            identifier, timing_at = head, 1
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            problems.append(Problem.at(first + 1, "timing_expected", found=head))
            continue
        line_no = first + timing_at + 1
        left, _, rest = block[timing_at].partition("-->")
        right = (rest.split() or [""])[0]
        start, end = _upload_timestamp(left.strip()), _upload_timestamp(right)
        problem = timing_problem(line_no, start, end, left.strip(), right, "hh:mm:ss.ttt / mm:ss.ttt")
        if problem is not None:
            problems.append(problem)
            continue
        assert start is not None and end is not None
        payload = [plain_text(line).strip() for line in block[timing_at + 1:]]
        words = "\n".join(line for line in payload if line)
        for offset, line in enumerate(block[timing_at + 1:], start=line_no + 1):
            if "-->" in line:
                problems.append(Problem.at(offset, "blank_line_missing"))
        if words:
            cues.append(Cue(start, end, words, identifier))
    if problems:
        raise SubtitleFileError(problems)
    return sorted(cues, key=lambda c: (c.start, c.end))
