"""Lecturer rights on a course's events, through the one access rule (``access.can_manage``): an instructor of
the course edits a colleague's course-only event from the dashboard and the API (deleting stays the owner's);
an instructor of another course does not even learn it exists, a learner of the course may not change it."""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from sqlalchemy import select

from live_server import events as ev
from live_server.models import Event, LtiContext, Visibility, new_access_secret
from live_server.settings import Settings
from tests.lti.conftest import Lms
from tests.lti.platform import INSTRUCTOR, LEARNER, Activity, Person
from tests.lti.test_course_launch import launch
from tests.support import Account

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    return make_settings(database_url=migrated_sqlite("live.db"))


async def as_person(lms: Lms, person: Person, course: str = "course-101") -> str:
    """Launch from the LMS as ``person`` (this client's browser is theirs now); their CSRF token."""
    lms.client.session.cookie_jar.clear()
    assert (await launch(lms, Activity(person, course_id=course))).status == 303
    page = await lms.client.get("/")
    found = CSRF.search(await page.text())
    assert found is not None, await page.text()
    return found.group(1)


def course_event(lms: Lms, owner: Account) -> str:
    """A colleague's course-only event, bound to course-101 (as deep linking leaves it)."""

    def work(session: Any) -> str:
        context = session.scalar(select(LtiContext).where(LtiContext.context_key == "course-101"))
        event = Event(title="Thermodynamics", slug="thermo-1", owner_id=owner.id, description="",
                      visibility=Visibility.COURSE, lti_context_id=context.id, access_secret=new_access_secret())
        session.add(event)
        session.flush()
        ev.issue_stream_key(session, event)
        return "thermo-1"

    return lms.db.transaction(work)


async def test_only_an_instructor_of_the_course_edits_its_events(lms: Lms, make_user: Callable[..., Account]) -> None:
    client = lms.client
    csrf = await as_person(lms, Person("teacher-2", [INSTRUCTOR], "Grace Hopper"))
    slug = course_event(lms, make_user("lecturer"))

    assert "Thermodynamics" in await (await client.get("/dashboard")).text()  # listed among hers
    form = await client.get(f"/dashboard/events/{slug}")
    assert form.status == 200 and 'value="course" checked' in await form.text()
    changed = await client.patch(f"/api/v1/events/{slug}", json={"title": "Thermodynamics, lecture 2"},
                                 headers={"X-CSRF-Token": csrf})
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["stream"]["stream_key"]  # she streams the lecture too
    page = await client.get(f"/events/{slug}")
    assert 'href="/dashboard/events/thermo-1"' in await page.text()  # the event page offers her the edit form
    removed = await client.delete(f"/api/v1/events/{slug}", headers={"X-CSRF-Token": csrf})
    assert removed.status == 403  # deleting stays the owner's
    refused = await client.post(f"/dashboard/events/{slug}/delete", data={"confirm": "yes", "csrf_token": csrf})
    assert refused.status == 403

    csrf = await as_person(lms, Person("teacher-9", [INSTRUCTOR], "Other Teacher"), course="course-202")
    assert "Thermodynamics" not in await (await client.get("/dashboard")).text()
    assert (await client.get(f"/dashboard/events/{slug}")).status == 404
    other = await client.patch(f"/api/v1/events/{slug}", json={"title": "Mine now"}, headers={"X-CSRF-Token": csrf})
    assert other.status == 404  # a course-only event is not told to outsiders

    csrf = await as_person(lms, Person("student-7", [LEARNER], "Bob Student"))
    learner = await client.patch(f"/api/v1/events/{slug}", json={"title": "Mine now"}, headers={"X-CSRF-Token": csrf})
    assert learner.status == 403
    assert (await client.get(f"/dashboard/events/{slug}")).status == 403
    reading = await client.get(f"/api/v1/events/{slug}")
    assert reading.status == 200 and "stream" not in await reading.json()

    assert lms.db.transaction(lambda s: s.scalar(select(Event.title).where(Event.slug == slug))) == \
        "Thermodynamics, lecture 2"
