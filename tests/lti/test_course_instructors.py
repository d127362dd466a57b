"""Lecturer rights on a course's events, through the one access rule (``access.can_manage``): an instructor of
the course edits a colleague's course-only event from the dashboard and the API (deleting stays the owner's);
an instructor of another course does not even learn it exists, a learner of the course may not change it."""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest
from sqlalchemy import select

from live_server import events as ev
from live_server.models import Chapter, Event, LtiContext, Recording, RecordingState, Visibility, new_access_secret
from live_server.settings import Settings
from tests.lti.lms import Lms, launch
from tests.lti.platform import INSTRUCTOR, LEARNER, Activity, Person
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


def course_recording(lms: Lms, slug: str) -> str:
    """The ready replay of the colleague's course event, as the recorder leaves it: the event's owner and
    visibility, its course the event's (``lti_context_id`` None: ``access.recording_target`` follows the event)."""

    def work(session: Any) -> str:
        event = session.scalar(select(Event).where(Event.slug == slug))
        row = Recording(event_id=event.id, owner_id=event.owner_id, title="Thermodynamics (replay)", description="",
                        visibility=Visibility.COURSE, state=RecordingState.READY, media_path="recordings/x",
                        duration_seconds=60.0)
        session.add(row)
        session.flush()
        return str(row.id)

    return lms.db.transaction(work)


async def test_a_course_instructor_manages_the_course_recordings_but_does_not_delete_them(
        lms: Lms, make_user: Callable[..., Account]) -> None:
    client = lms.client
    csrf = await as_person(lms, Person("teacher-2", [INSTRUCTOR], "Grace Hopper"))
    rid = course_recording(lms, course_event(lms, make_user("lecturer")))
    headers = {"X-CSRF-Token": csrf}

    shown = await (await client.get(f"/api/v1/recordings/{rid}")).json()
    assert "download_url" in shown  # shown to her as to a manager
    changed = await client.patch(f"/api/v1/recordings/{rid}", json={"title": "Thermodynamics, lecture 2 (replay)"},
                                 headers=headers)
    assert changed.status == 200, await changed.text()
    chapter = await client.post(f"/api/v1/recordings/{rid}/chapters", json={"title": "Entropy", "offset": 12}, headers=headers)
    assert chapter.status == 201, await chapter.text()
    status = await client.get(f"/api/v1/recordings/{rid}/transcription")  # she may ask for one: the job's status
    assert status.status == 404 and (await status.json())["error"]["message"] == "this recording was never transcribed"
    removed = await client.delete(f"/api/v1/recordings/{rid}", headers=headers)
    assert removed.status == 403 and "owner" in (await removed.json())["error"]["message"]  # deleting stays the owner's

    csrf = await as_person(lms, Person("teacher-9", [INSTRUCTOR], "Other Teacher"), course="course-202")
    other = await client.patch(f"/api/v1/recordings/{rid}", json={"title": "Mine now"}, headers={"X-CSRF-Token": csrf})
    assert other.status == 404  # a course-only recording is not told to outsiders
    assert (await client.post(f"/api/v1/recordings/{rid}/chapters", json={"title": "x", "offset": 1},
                              headers={"X-CSRF-Token": csrf})).status == 404
    assert (await client.delete(f"/api/v1/recordings/{rid}", headers={"X-CSRF-Token": csrf})).status == 404
    status = await client.get(f"/api/v1/recordings/{rid}/transcription")
    assert status.status == 404 and (await status.json())["error"]["message"] == "no such recording"

    csrf = await as_person(lms, Person("student-7", [LEARNER], "Bob Student"))
    learner = await client.patch(f"/api/v1/recordings/{rid}", json={"title": "Mine now"}, headers={"X-CSRF-Token": csrf})
    assert learner.status == 403
    assert (await client.post(f"/api/v1/recordings/{rid}/chapters", json={"title": "x", "offset": 1},
                              headers={"X-CSRF-Token": csrf})).status == 403
    assert (await client.delete(f"/api/v1/recordings/{rid}", headers={"X-CSRF-Token": csrf})).status == 403
    reading = await client.get(f"/api/v1/recordings/{rid}")
    assert reading.status == 200 and "download_url" not in await reading.json()

    def stored(session: Any) -> tuple[str, list[str]]:
        row = session.get(Recording, int(rid))
        return row.title, [c.title for c in session.scalars(select(Chapter).where(Chapter.recording_id == row.id))]

    assert lms.db.transaction(stored) == ("Thermodynamics, lecture 2 (replay)", ["Entropy"])


async def test_lists_and_search_show_a_course_its_course_only_events_and_recordings(
        lms: Lms, make_user: Callable[..., Account]) -> None:
    """GET /api/v1/events, /api/v1/recordings, /api/v1/search and the home page: what the caller may see, their
    courses' course-only events and recordings among them (the stream to the course's instructors, who manage
    them); nothing of a course they are not in."""
    client = lms.client
    await as_person(lms, Person("teacher-2", [INSTRUCTOR], "Grace Hopper"))
    slug = course_event(lms, make_user("lecturer"))
    rid = int(course_recording(lms, slug))

    async def seen() -> tuple[dict[str, Any], list[int], list[int], str]:
        events = {e["slug"]: e for e in (await (await client.get("/api/v1/events")).json())["events"]}
        recordings = [r["id"] for r in (await (await client.get("/api/v1/recordings")).json())["recordings"]]
        found = [r["recording"]["id"] for r in
                 (await (await client.get("/api/v1/search", params={"q": "thermodynamics"})).json())["results"]]
        return events, recordings, found, await (await client.get("/")).text()

    events, recordings, found, home = await seen()
    assert set(events) == {slug} and events[slug]["stream"]["stream_key"]
    assert recordings == [rid] and found == [rid] and "Thermodynamics (replay)" in home

    await as_person(lms, Person("student-7", [LEARNER], "Bob Student"))
    events, recordings, found, home = await seen()
    assert set(events) == {slug} and "stream" not in events[slug]
    assert recordings == [rid] and found == [rid] and "Thermodynamics (replay)" in home

    await as_person(lms, Person("teacher-9", [INSTRUCTOR], "Other Teacher"), course="course-202")
    events, recordings, found, home = await seen()
    assert (events, recordings, found) == ({}, [], []) and "Thermodynamics" not in home
    client.session.cookie_jar.clear()
    events, recordings, found, home = await seen()
    assert (events, recordings, found) == ({}, [], []) and "Thermodynamics" not in home
