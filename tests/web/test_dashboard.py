"""The lecturer dashboard over HTTP: forms with CSRF, errors beside their fields, who may do what."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import select

from live_server import events as ev
from live_server.models import Event, EventState, StreamKey
from tests.web.website import Site

FULL_FORM = {
    "title": "Thermodynamics 101", "description": "First law", "slug": "", "scheduled_start": "2031-03-04T09:30",
    "scheduled_end": "2031-03-04T11:00", "timezone": "Europe/Paris", "visibility": "password", "password": "entropy",
    "caption_language": "fr", "caption_vocabulary": "enthalpie\nentropie", "dvr": "on", "record": "on",
    "chat_enabled": "on",
}


def _event(site: Site, slug: str) -> Event:
    return site.db.transaction(lambda s: ev.get_event(s, slug))


async def test_lecturer_creates_and_edits_an_event_through_the_forms(site: Site) -> None:
    lecturer = site.account("lecturer")
    await site.log_in(lecturer)
    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new", FULL_FORM)
    assert resp.status == 303, await resp.text()
    slug = resp.headers["Location"].split("/dashboard/events/")[1].split("?")[0]
    assert slug == "thermodynamics-101"

    event = _event(site, slug)
    assert event.owner_id == lecturer.id and event.visibility.value == "password" and event.password_hash
    # 09:30 in Paris in March (UTC+1) is 08:30 UTC
    assert event.scheduled_start == datetime(2031, 3, 4, 8, 30, tzinfo=timezone.utc)
    assert (event.caption_language, event.caption_vocabulary) == ("fr", "enthalpie\nentropie")
    assert (event.dvr, event.record, event.abr, event.chat_enabled, event.guests_allowed) == (True, True, False, True, False)

    # the edit page shows the stream settings of this event: RTMP server, its key, WHIP
    page = await (await site.client.get(f"/dashboard/events/{slug}?created=1")).text()
    key = site.db.transaction(lambda s: ev.revealed_stream_key(s, ev.get_event(s, slug)))
    assert f'value="{key}"' in page and 'id="rtmp-url"' in page and "/whip" in page
    assert 'role="status"' in page  # "The event was created" notice

    # unticking a box turns the option off; an empty password keeps the current one
    edit = {**FULL_FORM, "slug": slug, "password": "", "title": "Thermodynamics, part 1"}
    del edit["dvr"]
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}", edit)
    assert resp.status == 303 and resp.headers["Location"].endswith("?saved=1")
    event = _event(site, slug)
    assert event.title == "Thermodynamics, part 1" and event.dvr is False and event.password_hash

    # rotate the key: the old one stops working at once
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}/stream-key", {})
    assert resp.status == 303
    assert site.db.transaction(lambda s: ev.event_for_stream_key(s, key)) is None
    new_key = site.db.transaction(lambda s: ev.revealed_stream_key(s, ev.get_event(s, slug)))
    assert new_key != key

    listing = await (await site.client.get("/dashboard")).text()
    assert "Thermodynamics, part 1" in listing


async def test_form_errors_are_shown_beside_their_fields_and_nothing_typed_is_lost(site: Site) -> None:
    lecturer = site.account("lecturer")
    other = site.account("lecturer")
    taken = site.event(other, title="Taken", slug="taken-slug")
    await site.log_in(lecturer)
    bad = {**FULL_FORM, "title": "", "slug": taken, "scheduled_end": "2031-03-04T08:00", "password": "",
           "description": "keep me <b>"}
    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new", bad)
    assert resp.status == 422
    page = await resp.text()
    # each problem: an error paragraph with the field's id, the input marked invalid and described by it
    assert re.search(r'<input id="title" name="title" value=""[^>]*aria-describedby="title-error" aria-invalid="true"', page)
    assert 'id="title-error">Give the event a title.<' in page
    assert 'id="scheduled_end-error">The end must be after the start.<' in page
    assert 'role="alert"' in page and 'href="#title"' in page  # the summary links to the fields
    assert "keep me &lt;b&gt;" in page  # what was typed comes back, escaped
    assert site.db.transaction(lambda s: s.scalar(select(Event).where(Event.title == ""))) is None

    # the service's own checks also land on their fields: the slug is taken, a password event needs one
    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new", {**bad, "title": "Fine", "scheduled_end": ""})
    page = await resp.text()
    assert resp.status == 422
    assert 'id="slug-error">Another event already uses this address.<' in page
    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new",
                             {**bad, "title": "Fine", "scheduled_end": "", "slug": ""})
    assert resp.status == 422
    assert 'id="password-error">A password-protected event needs a password.<' in await resp.text()

    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new", {**FULL_FORM, "timezone": "Mars/Olympus"})
    assert resp.status == 422 and 'id="timezone-error"' in await resp.text()


async def test_forms_without_the_csrf_token_are_refused(site: Site) -> None:
    lecturer = site.account("lecturer")
    await site.log_in(lecturer)
    resp = await site.client.post("/dashboard/events/new", data=FULL_FORM, allow_redirects=False)
    assert resp.status == 403
    resp = await site.client.post("/dashboard/events/new", data={**FULL_FORM, "csrf_token": "forged"}, allow_redirects=False)
    assert resp.status == 403
    assert site.db.transaction(lambda s: s.scalar(select(Event.id))) is None


async def test_who_may_reach_the_dashboard_and_whose_events_they_may_edit(site: Site) -> None:
    owner, intruder, viewer, admin = (site.account(r) for r in ("lecturer", "lecturer", "viewer", "admin"))
    slug = site.event(owner, title="Owned")

    resp = await site.client.get("/dashboard", allow_redirects=False)  # anonymous: to the login form, and back
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/dashboard"

    await site.log_in(viewer)
    for path in ("/dashboard", "/dashboard/events/new", f"/dashboard/events/{slug}", "/admin/users", "/admin/events"):
        resp = await site.client.get(path, allow_redirects=False)
        assert resp.status == 403, path
        assert "You do not have access to this page." in await resp.text()
    resp = await site.submit("/profile", "/dashboard/events/new", FULL_FORM)
    assert resp.status == 403

    await site.log_in(intruder)
    assert (await site.client.get(f"/dashboard/events/{slug}")).status == 403
    resp = await site.submit("/dashboard", f"/dashboard/events/{slug}", {**FULL_FORM, "title": "Hijacked"})
    assert resp.status == 403
    resp = await site.submit("/dashboard", f"/dashboard/events/{slug}/stream-key", {})
    assert resp.status == 403
    resp = await site.submit("/dashboard", f"/dashboard/events/{slug}/delete", {"confirm": "yes"})
    assert resp.status == 403
    assert "Owned" not in await (await site.client.get("/dashboard")).text()  # not in their list either
    assert _event(site, slug).title == "Owned"

    await site.log_in(admin)  # admins manage every event
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}",
                             {**FULL_FORM, "title": "Moderated", "slug": slug, "visibility": "public"})
    assert resp.status == 303
    assert _event(site, slug).title == "Moderated"


async def test_deleting_needs_the_confirmation_and_not_while_live(site: Site) -> None:
    lecturer = site.account("lecturer")
    slug = site.event(lecturer, title="Short-lived")
    await site.log_in(lecturer)
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}/delete", {})
    assert resp.status == 422
    site.change(slug, state=EventState.LIVE)
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}/delete", {"confirm": "yes"})
    assert resp.status == 409
    site.change(slug, state=EventState.ENDED)
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}/delete", {"confirm": "yes"})
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard?deleted=1"
    assert site.db.transaction(lambda s: s.scalar(select(StreamKey.id))) is None
