"""A site with every kind of page state the accessibility tests visit: a live event with Korean captions, a
scheduled one with chat for guests, a password-protected one, and a recording with a Korean transcript and a
chapter (no media: the pages, tracks and transcript are what is looked at)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from live_server import events as ev
from live_server.models import CaptionSegment, Chapter, EventState, Recording, RecordingState
from tests.support import Account
from tests.web.website import Site
from vod import tracks
from web.media import VIEWERS

LINES = [(0.5, 2.0, "안녕하세요 광학 강의입니다"), (2.5, 4.0, "오늘은 굴절을 배웁니다"), (4.5, 6.0, "감사합니다")]
SPOKEN_WORD = "광학"  # in the first line: the search page shows it as an excerpt


@dataclass
class Content:
    live: str  # event slugs
    upcoming: str
    locked: str
    recording: str  # the recording's public id
    password: str = "matrix"


def make_content(site: Site, owner: Account) -> Content:
    live = site.event(owner, title="Organic chemistry, week 4", description="Aromatic compounds", caption_language="ko")
    site.change(live, state=EventState.LIVE)
    upcoming = site.event(owner, title="Fourier series", caption_language="ko", guests_allowed=True)
    locked = site.event(owner, title="Linear algebra", visibility="password", password="matrix")

    def recording(session: Any) -> str:
        event = ev.get_event(session, upcoming)
        row = Recording(owner_id=owner.id, event_id=event.id, title="Optics, week 1", state=RecordingState.READY,
                        duration_seconds=60.0, media_path="recordings/1/run")
        session.add(row)
        session.flush()
        session.add_all([CaptionSegment(event_id=event.id, recording_id=row.id, language="ko", start_seconds=start,
                                        end_seconds=end, text=text) for start, end, text in LINES])
        session.add(Chapter(event_id=event.id, recording_id=row.id, title="Refraction", offset_seconds=2.5))
        tracks.ensure_automatic(session, row)  # as when a recording with live captions is finished
        return row.public_ref

    ref = site.db.transaction(recording)
    live_id = site.db.transaction(lambda s: ev.get_event(s, live).id)
    site.client.app[VIEWERS].seen(live_id, "f" * 24)
    return Content(live, upcoming, locked, ref)
