"""Migration 0013: the caption rows of existing recordings become their automatic track, nothing is lost,
search still finds them, and the way back keeps them too (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import text

from live_server import migrations
from live_server.db import Database

NOW = "CURRENT_TIMESTAMP"


def _fill_at_0012(conn: object) -> None:
    run = conn.execute  # type: ignore[attr-defined]
    run(text("INSERT INTO users (id, username, display_name, password_hash, role, is_active, created_at) "
             f"VALUES (1, 'lect', 'L', 'x', 'lecturer', true, {NOW})"))
    run(text("INSERT INTO events (id, slug, title, description, owner_id, visibility, state, caption_vocabulary, dvr,"
             " record, abr, chat_enabled, guests_allowed, attendance_required, created_at, updated_at, access_secret)"
             f" VALUES (1, 'ev', 't', '', 1, 'public', 'ended', '', true, true, false, true, false, false, {NOW}, {NOW}, 's')"))
    for rid, event in ((1, 1), (2, None), (3, None)):
        run(text("INSERT INTO recordings (id, event_id, owner_id, title, description, visibility, state, media_path,"
                 " duration_seconds, size_bytes, trim_start, discontinuities, created_at, access_secret, public_id)"
                 f" VALUES (:id, :event, 1, 'r', '', 'public', 'ready', '', 10, 0, 0, 0, {NOW}, 's', :pub)"),
            {"id": rid, "event": event, "pub": f"public-id-{rid}"})
    rows = [(1, 1, "ko", "안녕하세요 여러분"), (1, 1, "ko", "강의를 시작합니다"),  # live captions of recording 1
            (None, 2, "fr", "bonjour tout le monde"),  # an import's transcript
            (1, None, "ko", "다음 실행")]  # a later run's live captions, not handed to a recording yet
    for event, recording, language, words in rows:
        run(text("INSERT INTO caption_segments (event_id, recording_id, language, start_seconds, end_seconds, text,"
                 f" created_at) VALUES (:e, :r, :l, 1, 2, :t, {NOW})"), {"e": event, "r": recording, "l": language, "t": words})
    run(text("INSERT INTO transcription_jobs (recording_id, language, state, trigger, progress_seconds, total_seconds,"
             f" attempts, cues, created_at) VALUES (2, 'fr', 'done', 'import', 10, 10, 1, 1, {NOW})"))


def _search(conn: object, backend: str, word: str) -> list[int]:
    run = conn.execute  # type: ignore[attr-defined]
    if backend == "sqlite":
        sql = "SELECT c.recording_id FROM caption_fts f JOIN caption_segments c ON c.id = f.rowid WHERE caption_fts MATCH :q"
    else:
        sql = "SELECT recording_id FROM caption_segments WHERE to_tsvector('simple', text) @@ plainto_tsquery('simple', :q)"
    return [row[0] for row in run(text(sql), {"q": word})]


def test_existing_captions_become_automatic_tracks_and_come_back(database_url: str, backend: str) -> None:
    migrations.upgrade(database_url, "0012")
    db = Database(database_url)
    try:
        with db.engine.begin() as conn:
            _fill_at_0012(conn)
        db.engine.dispose()
        migrations.upgrade(database_url, "0013")
        with db.engine.begin() as conn:
            tracks = conn.execute(text("SELECT recording_id, language, kind, origin, automatic_of, published_version "
                                       "FROM caption_tracks ORDER BY recording_id")).all()
            assert [tuple(t) for t in tracks] == [(1, "ko", "captions", "live", 1, 0),
                                                  (2, "fr", "captions", "transcription", 2, 0)]
            segments = conn.execute(text("SELECT event_id, recording_id, language, text, track_id FROM caption_segments "
                                         "ORDER BY id")).all()
            assert len(segments) == 4 and all(s.track_id is None for s in segments)  # the automatic rows, as they were
            assert _search(conn, backend, "bonjour") == [2]  # still indexed (SQLite: triggers made again)
            # a new row is indexed too, and a BCP 47 tag longer than 8 characters fits
            conn.execute(text("INSERT INTO caption_segments (recording_id, track_id, language, start_seconds, end_seconds,"
                              f" text, created_at) VALUES (3, NULL, 'zh-Hant-TW', 0, 1, 'nouveaumot', {NOW})"))
            assert _search(conn, backend, "nouveaumot") == [3]
        db.engine.dispose()
        migrations.downgrade(database_url, "0012")
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM caption_segments")).scalar_one() == 5
            assert _search(conn, backend, "bonjour") == [2]
    finally:
        db.close()
