"""Caption cues as plain data: recognized words in, readable cues and WebVTT text out.

Pure code (no I/O, no Vosk). Shaping follows subtitle practice: at most two lines of about 42
characters, cues shown 1–7 s, a new cue at every pause, so no cue ever spans a whole lecture.
They are written as WebVTT by :mod:`formats.webvtt` (:func:`to_webvtt`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from formats import webvtt

__all__ = [
    "Word",
    "Cue",
    "CueRules",
    "words_from_result",
    "shape_cues",
    "wrap_lines",
    "to_webvtt",
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


def to_webvtt(cues: Iterable[Cue]) -> list[webvtt.Cue]:
    """Caption cues as WebVTT cues (the one writer escapes the text).

    Each cue carries an identifier made of its times in milliseconds, the same in every segment it
    overlaps: hls.js keeps one cue per identifier, and without one it derives one from the cue's times
    after its own floating-point offset arithmetic, which can differ in the last bit from one segment's
    ``X-TIMESTAMP-MAP`` to the next and then shows the same caption twice. Cues of one track never share
    a start, so the identifier is unique within the track.
    """
    return [webvtt.Cue(cue.start, cue.end, cue.text, f"c{round(cue.start * 1000)}-{round(cue.end * 1000)}")
            for cue in cues]
