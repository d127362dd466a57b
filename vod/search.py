"""Transcript search: titles, descriptions and caption text, with the time the words were said.

SQLite: FTS5 tables ``caption_fts`` and ``recording_fts`` (external content on
``caption_segments`` and ``recordings``, kept in step by triggers; migration 0003).
PostgreSQL: GIN indexes on ``to_tsvector('simple', ...)``; the queries below use the very same
expressions so the planner can use them. The 'simple' configuration does not stem: lectures are
in several languages, and a word typed is a word said.
"""

from __future__ import annotations

import re
from typing import Any, Collection

from sqlalchemy import text
from sqlalchemy.orm import Session

from live_server import accounts
from live_server.models import Recording, User, Visibility

from . import access

MAX_HITS = 500
_WORD = re.compile(r"\w+", re.UNICODE)


def words(query: str) -> list[str]:
    return _WORD.findall(query)[:12]


def _fts5_query(terms: list[str]) -> str:
    # Every term quoted: user input never reaches FTS5's query syntax (AND/OR/NEAR, columns, *).
    return " ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _caption_hits(session: Session, terms: list[str], language: str | None) -> list[Any]:
    params: dict[str, Any] = {"n": MAX_HITS}
    spoken = ""
    if language:  # "fr" finds fr and fr-CA; "fr-CA" only fr-CA
        spoken = " AND (c.language = :lang OR c.language LIKE :lang_prefix)"
        params.update(lang=language, lang_prefix=language.replace("%", "").replace("_", "") + "-%")
    columns = "c.id, c.event_id, c.recording_id, c.track_id, c.start_seconds, c.end_seconds, c.text, c.language"
    if session.get_bind().dialect.name == "postgresql":
        sql = text(
            f"SELECT {columns} FROM caption_segments c "
            f"WHERE to_tsvector('simple', c.text) @@ plainto_tsquery('simple', :q){spoken} "
            "ORDER BY c.start_seconds LIMIT :n"
        )
        return list(session.execute(sql, {"q": " ".join(terms), **params}))
    sql = text(
        f"SELECT {columns} FROM caption_fts f "
        f"JOIN caption_segments c ON c.id = f.rowid WHERE caption_fts MATCH :q{spoken} ORDER BY c.start_seconds LIMIT :n"
    )
    return list(session.execute(sql, {"q": _fts5_query(terms), **params}))


def spoken_languages(session: Session) -> list[str]:
    """The languages captions and subtitles are in (the search page's language filter)."""
    return sorted({row[0] for row in session.execute(text("SELECT DISTINCT language FROM caption_segments"))})


def _recording_hits(session: Session, terms: list[str]) -> list[int]:
    if session.get_bind().dialect.name == "postgresql":
        sql = text(
            "SELECT r.id FROM recordings r WHERE to_tsvector('simple', r.title || ' ' || r.description) "
            "@@ plainto_tsquery('simple', :q) LIMIT :n"
        )
        return [row[0] for row in session.execute(sql, {"q": " ".join(terms), "n": MAX_HITS})]
    sql = text("SELECT rowid FROM recording_fts WHERE recording_fts MATCH :q LIMIT :n")
    return [row[0] for row in session.execute(sql, {"q": _fts5_query(terms), "n": MAX_HITS})]


def search(session: Session, user: User | None, query: str, base_url: str, limit: int = 50,
           courses: Collection[int] = (), language: str | None = None) -> list[dict[str, Any]]:
    """Recordings the caller may see (``courses``: their LTI courses, see ``access.listed``) that match, best
    first, each with the moments that match; with ``language``, only the captions and subtitles in that
    language (titles and descriptions still match)."""
    terms = words(query)
    if not terms:
        return []
    caption_hits = _caption_hits(session, terms, language)
    title_hits = set(_recording_hits(session, terms))
    event_ids = {hit.event_id for hit in caption_hits if hit.recording_id is None}
    candidates = title_hits | {hit.recording_id for hit in caption_hits if hit.recording_id is not None}
    visible_query = access.listed(user, courses)
    rows: dict[int, Recording] = {}
    if candidates:
        rows.update({r.id: r for r in session.scalars(visible_query.where(Recording.id.in_(candidates)))})
    latest_of_event: dict[int, int] = {}
    if event_ids:
        # Captions not yet given to a recording belong to the latest recording of their event.
        for r in session.scalars(visible_query.where(Recording.event_id.in_(event_ids))
                                 .order_by(Recording.created_at, Recording.id)):
            rows[r.id] = r
            if r.event_id is not None:
                latest_of_event[r.event_id] = r.id
    matches: dict[int, list[dict[str, Any]]] = {}
    for hit in caption_hits:
        recording_id = hit.recording_id if hit.recording_id is not None else latest_of_event.get(hit.event_id)
        recording = rows.get(recording_id) if recording_id is not None else None
        if recording is None:
            continue
        offset = hit.start_seconds - recording.trim_start
        if hit.end_seconds <= recording.trim_start or (recording.trim_end is not None and hit.start_seconds >= recording.trim_end):
            continue  # trimmed away
        matches.setdefault(recording.id, []).append(
            {"start": round(max(offset, 0.0), 3), "end": round(hit.end_seconds - recording.trim_start, 3),
             "text": hit.text, "language": hit.language,  # the page marks the excerpt with it (WCAG 3.1.2)
             "track_id": hit.track_id})
    ranked: list[tuple[bool, int, int, dict[str, Any]]] = []
    person = accounts.person_in_session(session, user) if any(r.visibility == Visibility.COURSE for r in rows.values()) else None
    for recording_id, recording in rows.items():
        in_title = recording_id in title_hits
        found = matches.get(recording_id, [])
        if not in_title and not found:
            continue
        ranked.append((not in_title, -len(found), recording_id, {
            "recording": access.recording_json(recording, base_url, access.manages(user, recording, person)),
            "title_match": in_title,
            "matches": found[:50],
        }))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked[:limit]]
