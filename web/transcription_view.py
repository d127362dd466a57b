"""What the pages show of recordings' transcriptions: the recording page's panel and the dashboard's list.

The pages ask a ``TranscriptionStatus`` (``captions.transcription.Transcriptions``, handed over by the
app factory) and only format: language names in the page's language, progress as a percentage and the
time left. No arrow from ``web`` to ``captions``.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from live_server.languages import language_name

__all__ = ["TranscriptionStatus", "language_options", "decorate"]


class TranscriptionStatus(Protocol):
    async def panel(self, recording_id: int, user: Any) -> dict[str, Any] | None:
        """``{"job": ..., "languages": [...]}`` for those who may transcribe the recording, else None."""

    async def owner_jobs(self, owner_id: int, limit: int = 20) -> list[dict[str, Any]]: ...


def language_options(codes: Iterable[str], page_language: str) -> list[tuple[str, str]]:
    return sorted(((code, language_name(code, page_language)) for code in codes), key=lambda o: o[1])


def decorate(job: dict[str, Any], page_language: str) -> dict[str, Any]:
    """A job as the templates show it: its language's name and its progress in percent."""
    return {**job, "language_name": language_name(job["language"], page_language, capital=False),
            "percent": int(round(100 * job["fraction"]))}
