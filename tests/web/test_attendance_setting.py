"""The attendance setting (issue 21) through the event form: off by default, the owner ticks it, the event page
then tells every viewer that attendance is recorded; unticked, the notice is gone."""

from __future__ import annotations

from live_server import events as ev
from tests.web.website import Site

FORM = {"title": "Statistics 2", "description": "", "slug": "", "scheduled_start": "", "scheduled_end": "",
        "timezone": "Europe/Paris", "visibility": "public", "caption_language": "", "caption_vocabulary": "",
        "record": "on"}


async def test_the_owner_turns_attendance_on_in_the_form_and_viewers_are_told(site: Site) -> None:
    lecturer = site.account("lecturer")
    await site.log_in(lecturer)
    form = await (await site.client.get("/dashboard/events/new")).text()
    assert 'id="attendance_required"' in form and 'name="attendance_required" value="on" aria-describedby' in form
    resp = await site.submit("/dashboard/events/new", "/dashboard/events/new", FORM)
    assert resp.status == 303, await resp.text()
    slug = resp.headers["Location"].split("/dashboard/events/")[1].split("?")[0]
    assert site.db.transaction(lambda s: ev.get_event(s, slug).attendance_required) is False  # off by default
    site.log_out()
    assert 'id="attendance-notice"' not in await (await site.client.get(f"/events/{slug}")).text()

    await site.log_in(lecturer)
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}", {**FORM, "slug": slug,
                                                                                       "attendance_required": "on"})
    assert resp.status == 303, await resp.text()
    assert site.db.transaction(lambda s: ev.get_event(s, slug).attendance_required) is True
    edit = await (await site.client.get(f"/dashboard/events/{slug}")).text()
    assert 'name="attendance_required" value="on" checked' in edit
    site.log_out()
    page = await (await site.client.get(f"/events/{slug}", headers={"Accept-Language": "fr"})).text()
    assert 'id="attendance-notice"' in page and "La présence est enregistrée pour cet événement" in page

    await site.log_in(lecturer)
    resp = await site.submit(f"/dashboard/events/{slug}", f"/dashboard/events/{slug}", {**FORM, "slug": slug})
    assert resp.status == 303
    assert site.db.transaction(lambda s: ev.get_event(s, slug).attendance_required) is False
    site.log_out()
    assert 'id="attendance-notice"' not in await (await site.client.get(f"/events/{slug}")).text()
