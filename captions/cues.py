"""Caption cues as plain data: recognized words in, readable cues and WebVTT text out.

Pure code (no I/O, no Vosk). Shaping follows subtitle practice: at most two lines of about 42
characters, cues shown 1–7 s, a new cue at every pause, so no cue ever spans a whole lecture.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

__all__ = [
    "Word",
    "Cue",
    "CueRules",
    "words_from_result",
    "shape_cues",
    "wrap_lines",
    "format_timestamp",
    "parse_timestamp",
    "render_webvtt",
    "parse_webvtt",
    "WebVttError",
    "TimestampMap",
]


@dataclass(frozen=True)
class Word:
    """One recognized word on the stream's media timeline (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Cue:
    """What a viewer reads at once: one or two lines, shown from ``start`` to ``end``."""

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class CueRules:
    """Subtitle conventions (EBU/BBC-like); defaults are the documented ones."""

    max_line_chars: int = 42
    max_lines: int = 2
    min_seconds: float = 1.0
    max_seconds: float = 7.0
    pause_seconds: float = 0.7

    def __post_init__(self) -> None:
        if self.max_line_chars < 8 or self.max_lines < 1:
            raise ValueError("a cue needs at least one line of 8 characters")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError("need 0 < min_seconds <= max_seconds")


# Vosk emits bracketed tokens ([unk], [noise], [0]) and bare punctuation for non-speech.
_NOT_SPEECH = re.compile(r"^(\[.*\]|<.*>|[\W_]+)$")


def words_from_result(result: dict[str, Any], to_media: Any = None) -> list[Word]:
    """Words of a Vosk ``Result()`` (``SetWords(True)``), without non-speech tokens.

    ``to_media`` maps recognizer seconds to media seconds (identity when None).
    """
    words = []
    for item in result.get("result") or result.get("partial_result") or ():
        text = str(item.get("word", "")).strip()
        if not text or _NOT_SPEECH.match(text):
            continue
        start, end = float(item["start"]), float(item["end"])
        if to_media is not None:
            start, end = to_media(start), to_media(end)
        words.append(Word(text, start, max(start, end)))
    return words


def wrap_lines(words: Sequence[str], max_chars: int) -> list[str]:
    """Greedy line filling; a single word longer than a line is cut, never lost."""
    lines: list[str] = []
    current = ""
    for word in words:
        while len(word) > max_chars:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:max_chars])
            word = word[max_chars:]
        if not word:
            continue
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= max_chars:
            current += " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _fits(words: Sequence[Word], rules: CueRules) -> bool:
    return len(wrap_lines([w.text for w in words], rules.max_line_chars)) <= rules.max_lines


def _groups(words: Sequence[Word], rules: CueRules) -> Iterator[list[Word]]:
    """Split on pauses, then on length (characters and seconds)."""
    group: list[Word] = []
    for word in words:
        if group:
            pause = word.start - group[-1].end >= rules.pause_seconds
            too_long = word.end - group[0].start > rules.max_seconds
            if pause or too_long or not _fits([*group, word], rules):
                yield group
                group = []
        group.append(word)
    if group:
        yield group


def shape_cues(words: Iterable[Word], rules: CueRules = CueRules(), next_start: float | None = None) -> list[Cue]:
    """Cues for consecutive words of one stream, in time order, never overlapping.

    A cue lasts from its first word to its last, stretched to ``min_seconds`` when the
    following cue (or ``next_start``) leaves room, and cut to ``max_seconds``.
    """
    ordered = sorted(words, key=lambda w: (w.start, w.end))
    groups = list(_groups(ordered, rules))
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        start = group[0].start
        end = max(w.end for w in group)
        following = groups[index + 1][0].start if index + 1 < len(groups) else next_start
        wanted = max(end, start + rules.min_seconds)
        if following is not None:
            wanted = min(wanted, max(end, following))
        end = min(wanted, start + rules.max_seconds)
        if cues and start < cues[-1].end:
            start = cues[-1].end
            end = max(end, start + 0.001)
        lines = tuple(wrap_lines([w.text for w in group], rules.max_line_chars))
        cues.append(Cue(round(start, 3), round(end, 3), lines))
    return cues


# --- WebVTT ------------------------------------------------------------------------------


class WebVttError(ValueError):
    """Text that is not a WebVTT file we can read."""


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


@dataclass(frozen=True)
class TimestampMap:
    """HLS ``X-TIMESTAMP-MAP``: media time ``local`` is MPEG-TS time ``mpegts`` (90 kHz)."""

    mpegts: int
    local: float

    def header(self) -> str:
        return f"X-TIMESTAMP-MAP=MPEGTS:{self.mpegts},LOCAL:{format_timestamp(self.local)}"


def _clean(line: str) -> str:
    # A cue payload must not contain "-->" nor blank lines; < and & are markup.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ").strip()


def render_webvtt(cues: Iterable[Cue], timestamp_map: TimestampMap | None = None) -> str:
    """A complete WebVTT file (segment or whole track)."""
    out = ["WEBVTT"]
    if timestamp_map is not None:
        out.append(timestamp_map.header())
    out.append("")
    for cue in cues:
        lines = [c for c in (_clean(line) for line in cue.lines) if c]
        if not lines:
            continue
        out.append(f"{format_timestamp(cue.start)} --> {format_timestamp(max(cue.end, cue.start))}")
        out.extend(lines)
        out.append("")
    return "\n".join(out) + "\n"


def _unescape(line: str) -> str:
    return line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_webvtt(text: str) -> tuple[TimestampMap | None, list[Cue]]:
    """Parse the subset of WebVTT we write (used by tests and to check files)."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip("\ufeff"))
    header = blocks[0].split("\n")
    if not header[0].startswith("WEBVTT"):
        raise WebVttError("line 1: missing WEBVTT signature")
    tsmap: TimestampMap | None = None
    for line in header[1:]:
        if line.startswith("X-TIMESTAMP-MAP="):
            fields = dict(part.split(":", 1) for part in line[len("X-TIMESTAMP-MAP="):].split(","))
            try:
                tsmap = TimestampMap(int(fields["MPEGTS"]), parse_timestamp(fields["LOCAL"]))
            except (KeyError, ValueError) as exc:
                raise WebVttError(f"bad X-TIMESTAMP-MAP {line!r}") from exc
    cues = []
    for block in blocks[1:]:
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if "-->" not in lines[0]:
            lines = lines[1:]  # cue identifier
        if not lines or "-->" not in lines[0]:
            raise WebVttError(f"cue without timing: {block[:40]!r}")
        left, right = lines[0].split("-->", 1)
        start, end = parse_timestamp(left), parse_timestamp(right.split()[0])
        if end < start:
            raise WebVttError(f"cue ends before it starts: {lines[0]!r}")
        cues.append(Cue(start, end, tuple(_unescape(line) for line in lines[1:])))
    return tsmap, cues
