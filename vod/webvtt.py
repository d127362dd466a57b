"""WebVTT for replays (chapters and captions tracks): pure rendering, times in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class TextCue:
    start: float
    end: float
    text: str
    identifier: str | None = None


def timestamp(seconds: float) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def _clean(text: str) -> str:
    # A blank line would end the cue and "-->" would start a new one.
    lines = [line.replace("-->", "->") for line in text.replace("\r", "").split("\n") if line.strip()]
    return "\n".join(lines) or "…"


def render(cues: Iterable[TextCue]) -> str:
    out = ["WEBVTT", ""]
    for cue in cues:
        if cue.identifier:
            out.append(cue.identifier.replace("\n", " ").replace("-->", "->"))
        out.append(f"{timestamp(cue.start)} --> {timestamp(max(cue.end, cue.start + 0.001))}")
        out.append(_clean(cue.text))
        out.append("")
    return "\n".join(out) + "\n"


def chapter_cues(chapters: Iterable[tuple[float, str]], duration: float) -> list[TextCue]:
    """Chapters as cues: each lasts until the next one starts (the last until the end)."""
    ordered = sorted((max(0.0, offset), title) for offset, title in chapters if offset < duration)
    cues = []
    for i, (offset, title) in enumerate(ordered):
        end = ordered[i + 1][0] if i + 1 < len(ordered) else duration
        cues.append(TextCue(offset, max(end, offset + 0.001), title, identifier=f"chapter-{i + 1}"))
    return cues
