"""Home (live now with viewers, upcoming, recent recordings), search, the embed pages and oEmbed."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from live_server import events as ev
from live_server.db import Database
from web.media import VIEWERS
from live_server.models import CaptionSegment, EventState, Recording, RecordingState, User, Visibility
from tests.support import Account
from tests.web.website import Site


def _recording(db: Database, owner_id: int, title: str, visibility: Visibility = Visibility.PUBLIC,
               caption: str | None = None, state: RecordingState = RecordingState.READY, event_id: int | None = None) -> int:
    def work(session: Any) -> int:
        row = Recording(owner_id=owner_id, event_id=event_id, title=title, visibility=visibility, state=state, duration_seconds=3723,
                        media_path=f"recordings/x/{title}")
        session.add(row)
        session.flush()
        if caption:
            session.add(CaptionSegment(event_id=event_id, recording_id=row.id, language="en", start_seconds=65.0, end_seconds=68.0, text=caption))
        return row.id

    return db.transaction(work)


async def test_home_lists_live_events_with_viewers_upcoming_and_recent_recordings(site: Site) -> None:
    lecturer = site.account("lecturer")
    live = site.event(lecturer, title="Organic chemistry")
    site.event(lecturer, title="Linear algebra")
    site.event(lecturer, title="Staff meeting", visibility="authenticated")
    site.change(live, state=EventState.LIVE)
    live_id = site.db.transaction(lambda s: ev.get_event(s, live).id)
    for player in ("a" * 24, "b" * 24, "c" * 24):
        site.client.app[VIEWERS].seen(live_id, player)
    _recording(site.db, lecturer.id, "Replay of optics")
    _recording(site.db, lecturer.id, "Private replay", visibility=Visibility.AUTHENTICATED)
    _recording(site.db, lecturer.id, "Still recording", state=RecordingState.RECORDING)

    page = await (await site.client.get("/")).text()
    live_section = page.split('id="live-now"')[1].split("</section>")[0]
    assert "Organic chemistry" in live_section and "3 viewers" in live_section
    upcoming = page.split('id="upcoming"')[1].split("</section>")[0]
    assert "Linear algebra" in upcoming and "Organic chemistry" not in upcoming
    recent = page.split('id="recent"')[1].split("</section>")[0]
    assert "Replay of optics" in recent and "1:02:03" in recent
    assert "Private replay" not in page and "Staff meeting" not in page and "Still recording" not in page

    french = await (await site.client.get("/", headers={"Accept-Language": "fr"})).text()
    assert "3 spectateurs" in french and "Enregistrements récents" in french


async def test_search_finds_events_by_title_and_recordings_by_what_was_said(
        client: Any, db: Database, make_user: Callable[..., Account]) -> None:
    """On SQLite (FTS5) and PostgreSQL (full-text)."""
    lecturer = make_user("lecturer")

    def events(session: Any) -> int:
        owner = session.get(User, lecturer.id)
        for title, visibility in (("Quantum mechanics", "public"), ("Quantum secrets", "authenticated"), ("100% pure_maths", "public")):
            ev.create_event(session, owner, ev.EventCreate(title=title, visibility=visibility))
        return ev.create_event(session, owner, ev.EventCreate(title="Week 3", visibility="public")).id

    week3 = db.transaction(events)
    _recording(db, lecturer.id, "Week 3", caption="the quantum harmonic oscillator", event_id=week3)
    page = await (await client.get("/search", params={"q": "QUANTUM"})).text()
    assert "Quantum mechanics" in page and "Quantum secrets" not in page
    assert "/recordings/" in page and "the quantum harmonic oscillator" in page and "#t=65.0" in page
    assert "2 results for" in page
    # LIKE wildcards typed by a visitor are plain characters
    page = await (await client.get("/search", params={"q": "0% pure_"})).text()
    assert "100% pure_maths" in page
    page = await (await client.get("/search", params={"q": "%_"})).text()
    assert "100% pure_maths" not in page and "Quantum" not in page.split("</form>")[1]
    assert (await client.get("/search")).status == 200


async def test_embed_pages_play_public_and_unlisted_events_and_refuse_private_ones(site: Site) -> None:
    lecturer = site.account("lecturer")
    public = site.event(lecturer, title="Open lecture")
    unlisted = site.event(lecturer, title="Link-only lecture", visibility="unlisted")
    members = site.event(lecturer, title="Members", visibility="authenticated")
    protected = site.event(lecturer, title="Protected", visibility="password", password="s3cret")

    for slug in (public, unlisted):
        resp = await site.client.get(f"/embed/events/{slug}")
        assert resp.status == 200
        assert "frame-ancestors *" in resp.headers["Content-Security-Policy"].split("; ")
        assert "X-Frame-Options" not in resp.headers  # it would contradict frame-ancestors *
        page = await resp.text()
        assert f'data-src="/live/{slug}/master.m3u8"' in page and "/static/player.js" in page and "/vendor/hls.min.js" in page
    await site.log_in(lecturer)  # not even the owner: an embed shows what anyone with the link may see
    for slug in (members, protected, "no-such-event"):
        resp = await site.client.get(f"/embed/events/{slug}")
        assert resp.status == 404
        page = await resp.text()
        assert "data-src" not in page and "This video cannot be shown here" in page
    # every other page stays same-origin only
    assert (await site.client.get("/")).headers["X-Frame-Options"] == "SAMEORIGIN"

    rid = _recording(site.db, lecturer.id, "Replay")
    resp = await site.client.get(f"/embed/recordings/{rid}")
    assert resp.status == 200 and f'data-src="/vod/{rid}/master.m3u8"' in await resp.text()
    private = _recording(site.db, lecturer.id, "Private replay", visibility=Visibility.PASSWORD)
    assert (await site.client.get(f"/embed/recordings/{private}")).status == 404


async def test_oembed_describes_an_iframe_for_lms_pages(site: Site) -> None:
    lecturer = site.account("lecturer")
    slug = site.event(lecturer, title='Fourier "series" & co')
    private = site.event(lecturer, title="Members", visibility="authenticated")
    base = str(site.client.make_url("")).rstrip("/")

    resp = await site.client.get("/oembed", params={"url": f"{base}/events/{slug}", "format": "json", "maxwidth": "480"})
    assert resp.status == 200 and resp.content_type == "application/json"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    body = await resp.json()
    assert body["version"] == "1.0" and body["type"] == "video"
    assert (body["width"], body["height"]) == (480, 270)
    assert body["title"] == 'Fourier "series" & co' and body["author_name"].startswith("Lecturer")
    assert body["provider_name"] == "Live lectures" and body["provider_url"] == base + "/"
    iframe = re.fullmatch(r'<iframe src="([^"]+)" width="480" height="270" title="([^"]+)" .*allowfullscreen></iframe>', body["html"])
    assert iframe and iframe.group(1) == f"{base}/embed/events/{slug}"
    assert iframe.group(2) == "Fourier &quot;series&quot; &amp; co"

    resp = await site.client.get("/oembed", params={"url": f"{base}/events/{slug}", "maxheight": "180"})
    assert (await resp.json())["width"] == 320

    # the event page points LMSs at it
    page = await (await site.client.get(f"/events/{slug}")).text()
    link = re.search(r'<link rel="alternate" type="application/json\+oembed" href="([^"]+)"', page)
    assert link is not None
    discovered = await site.client.get(link.group(1).replace("&amp;", "&").replace(base, ""))
    assert (await discovered.json())["html"] == body["html"].replace('width="480" height="270"', 'width="640" height="360"')

    for url in (f"{base}/events/{private}", f"{base}/events/nope", "https://elsewhere.example/events/" + slug, f"{base}/login"):
        resp = await site.client.get("/oembed", params={"url": url})
        assert resp.status == 404, url
    await site.log_in(lecturer)
    assert "json+oembed" not in await (await site.client.get(f"/events/{private}")).text()
    resp = await site.client.get("/oembed", params={"url": f"{base}/events/{slug}", "format": "xml"})
    assert resp.status == 501
    json.dumps(body)  # plain JSON types only
