"""The catalog side of recordings on both catalogs: per-event switch, transcript search, retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select

from live_server.db import Database
from live_server.models import CaptionSegment, CaptionTrack, Event, Recording, RecordingState, Visibility, utcnow
from live_server.settings import Settings
from tests.support import Account, login
from recorder.recording_events import PublisherChanged, RecordingFinished, RecordingStarted, SegmentCompleted
from vod.catalog import RecordingCatalog


def _recording(session: Any, owner: int, title: str, visibility: Visibility = Visibility.PUBLIC,
               captions: tuple[tuple[float, str], ...] = (), claimed: bool = True) -> int:
    event = Event(slug=title.lower().replace(" ", "-"), title=title, owner_id=owner, visibility=visibility)
    session.add(event)
    session.flush()
    row = Recording(event_id=event.id, owner_id=owner, title=title, description="", visibility=visibility,
                    state=RecordingState.READY, media_path=f"recordings/{event.id}/run", duration_seconds=600)
    session.add(row)
    session.flush()
    for start, text in captions:
        session.add(CaptionSegment(event_id=event.id, recording_id=row.id if claimed else None, language="en",
                                   start_seconds=start, end_seconds=start + 3, text=text))
    return row.id


async def test_search_finds_caption_words_at_their_time(client: Any, db: Database, make_user: Callable[..., Account]) -> None:
    prof = make_user("lecturer")
    ids = db.transaction(lambda s: (
        _recording(s, prof.id, "Thermodynamics", captions=((12.5, "Today we talk about entropy"),
                                                           (95.0, "Entropy never decreases in an isolated system"))),
        _recording(s, prof.id, "Organic chemistry", captions=((30.0, "Benzene rings are aromatic"),), claimed=False),
        _recording(s, prof.id, "Private seminar", Visibility.AUTHENTICATED, captions=((5.0, "entropy again"),)),
    ))
    thermo, organic, private = ids

    resp = await client.get("/api/v1/search?q=Entropy")
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [r["recording"]["id"] for r in results] == [thermo]  # the private one is not shown to strangers
    assert [m["start"] for m in results[0]["matches"]] == [12.5, 95.0]
    assert "entropy" in results[0]["matches"][0]["text"]

    # Captions not yet claimed by a recording are found through their event's latest recording.
    body = await (await client.get("/api/v1/search?q=aromatic benzene")).json()
    assert [(r["recording"]["id"], r["matches"][0]["start"]) for r in body["results"]] == [(organic, 30.0)]
    # Titles are searched too; nothing matches nonsense; FTS syntax in the query is just text.
    body = await (await client.get("/api/v1/search?q=chemistry")).json()
    assert body["results"][0]["recording"]["id"] == organic and body["results"][0]["title_match"]
    assert (await (await client.get("/api/v1/search?q=xylophone")).json())["results"] == []
    assert (await client.get('/api/v1/search?q=entropy" OR "*')).status == 200
    assert (await client.get("/api/v1/search?q=%20")).status == 422

    await login(client, prof)  # the owner finds the private one as well
    body = await (await client.get("/api/v1/search?q=entropy")).json()
    assert {r["recording"]["id"] for r in body["results"]} == {thermo, private}


async def test_retention_deletes_old_recordings_files_and_rows(db: Database, settings: Settings,
                                                               make_user: Callable[..., Account], tmp_path: Path) -> None:
    prof = make_user("lecturer")
    old, recent = db.transaction(lambda s: (_recording(s, prof.id, "Old lecture"), _recording(s, prof.id, "New lecture")))

    def age(session: Any) -> list[str]:
        session.get(Recording, old).created_at = utcnow() - timedelta(days=40)
        return [r.media_path for r in session.scalars(select(Recording).order_by(Recording.id))]

    paths = db.transaction(age)
    for path in paths:
        (settings.media_dir / path).mkdir(parents=True)
        (settings.media_dir / path / "seg_000000.ts").write_bytes(b"\x47" * 188)
    catalog = RecordingCatalog(db, settings.media_dir, "ffmpeg")
    assert await catalog.apply_retention(0) == []  # opt-in: 0 keeps everything
    assert await catalog.apply_retention(30) == [old]
    assert not (settings.media_dir / paths[0]).exists() and (settings.media_dir / paths[1]).exists()
    assert db.transaction(lambda s: [r.id for r in s.scalars(select(Recording))]) == [recent]


async def test_recording_follows_the_event_switch_and_inherits_from_it(db: Database, settings: Settings,
                                                                      make_user: Callable[..., Account]) -> None:
    prof = make_user("lecturer")

    def events(session: Any) -> tuple[int, int]:
        on = Event(slug="on", title="Recorded", description="Week 3", owner_id=prof.id, visibility=Visibility.AUTHENTICATED)
        off = Event(slug="off", title="Not recorded", owner_id=prof.id, record=False)
        session.add_all([on, off])
        session.flush()
        return on.id, off.id

    on, off = db.transaction(events)
    catalog = RecordingCatalog(db, settings.media_dir, "ffmpeg")
    assert await catalog.recording_started(RecordingStarted(off, utcnow(), "recordings/2/run", 2.0)) is None
    recording_id = await catalog.recording_started(RecordingStarted(on, utcnow(), "recordings/1/run", 2.0))
    row = db.transaction(lambda s: s.get(Recording, recording_id))
    assert (row.title, row.description, row.visibility, row.state, row.owner_id) == (
        "Recorded", "Week 3", Visibility.AUTHENTICATED, RecordingState.RECORDING, prof.id)


async def test_where_the_live_stream_is_comes_from_the_recorders_events(db: Database, settings: Settings,
                                                                        make_user: Callable[..., Account]) -> None:
    """Chapters marked live land at the stream time the catalog keeps from the events (no recorder asked)."""
    prof = make_user("lecturer")

    def events(session: Any) -> tuple[int, int]:
        on, off = Event(slug="on", title="Recorded", owner_id=prof.id), Event(slug="off", title="Not", owner_id=prof.id)
        session.add_all([on, off])
        session.flush()
        return on.id, off.id

    on, off = db.transaction(events)
    catalog = RecordingCatalog(db, settings.media_dir, "ffmpeg")
    recording_id = await catalog.recording_started(RecordingStarted(on, utcnow(), "recordings/1/run", 2.0))
    assert recording_id is not None
    assert catalog.stream_time(off) is None and catalog.stream_time(on) == (recording_id, 0.0)
    start = utcnow()
    for index in range(2):
        catalog.segment_completed(SegmentCompleted(
            recording_id, index, settings.media_dir / "recordings/1/run/seg.ts", 2.0 * index, 2.0, 188, False,
            start + timedelta(seconds=2.0 * (index + 1))))
    end = (start + timedelta(seconds=4.0)).timestamp()
    assert catalog.stream_time(on, now=end - 1.0) == (recording_id, 4.0)  # not before what is recorded
    assert catalog.stream_time(on, now=end + 1.5) == (recording_id, 5.5)  # the segment being cut
    assert catalog.stream_time(on, now=end + 60.0) == (recording_id, 10.0)  # at most three segments ahead
    catalog.publisher_changed(PublisherChanged(recording_id, False))
    assert catalog.stream_time(on, now=end + 1.5) == (recording_id, 4.0)  # nobody publishes: the recording's end
    catalog.publisher_changed(PublisherChanged(recording_id, True))
    assert catalog.stream_time(on, now=end + 1.5) == (recording_id, 5.5)
    await catalog.recording_finished(RecordingFinished(recording_id, utcnow(), 2, 4.0, 376, 0, "no media was recorded"))
    assert catalog.stream_time(on) is None


async def test_a_finished_recording_gets_its_automatic_track_and_reading_tracks_writes_nothing(
        client: Any, db: Database, settings: Settings, make_user: Callable[..., Account]) -> None:
    """The run's live captions become the recording's automatic track when it is finished; listing tracks
    (the API, the master's renditions) only reads: a recording whose rows came without a track shows none."""
    prof = make_user("lecturer")
    await login(client, prof)

    def event_with_captions(session: Any) -> int:
        event = Event(slug="captioned", title="Captioned", owner_id=prof.id)
        session.add(event)
        session.flush()
        session.add(CaptionSegment(event_id=event.id, language="fr", start_seconds=1.0, end_seconds=2.0, text="Bonjour"))
        return event.id

    event_id = db.transaction(event_with_captions)
    catalog = RecordingCatalog(db, settings.media_dir, "ffmpeg")
    recording_id = await catalog.recording_started(RecordingStarted(event_id, utcnow(), "recordings/1/run", 2.0))
    assert recording_id is not None

    def automatic(session: Any) -> list[tuple[str, str, str]]:
        return [(t.language, t.kind, t.origin) for t in session.scalars(
            select(CaptionTrack).where(CaptionTrack.automatic_of == recording_id))]

    assert db.transaction(automatic) == []  # recording: not yet
    await catalog.recording_finished(RecordingFinished(recording_id, utcnow(), 2, 4.0, 376, 0, None))
    assert db.transaction(automatic) == [("fr", "captions", "live")]
    await catalog.recording_finished(RecordingFinished(recording_id, utcnow(), 2, 4.0, 376, 0, None))
    assert db.transaction(automatic) == [("fr", "captions", "live")]  # once

    untracked = db.transaction(lambda s: _recording(s, prof.id, "Untracked", captions=((3.0, "no track yet"),)))
    resp = await client.get(f"/api/v1/recordings/{untracked}/tracks")
    assert resp.status == 200 and (await resp.json())["tracks"] == []
    assert db.transaction(lambda s: s.scalar(select(func.count()).select_from(CaptionTrack)
                                             .where(CaptionTrack.recording_id == untracked))) == 0
