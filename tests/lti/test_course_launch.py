"""Moodle as lti1p3platform plays it, against the real app on SQLite and PostgreSQL: an instructor adds a
course lecture through deep linking, a learner launches it and gets the page, the media and the chat; a
member of another course and an anonymous visitor get none of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from live_server.layout import live_run_folder
from live_server.models import Event, LtiAccount, LtiMembership, Recording, RecordingState, Role, User, Visibility, utcnow
from tests.lti.lms import Lms, connect_chat, launch
from tests.lti.platform import INSTRUCTOR, LEARNER, Activity, Person, parse_form

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg_000000.ts\n"


async def test_an_instructor_adds_a_lecture_and_only_the_course_watches_it(lms: Lms) -> None:
    http = lms.client.session
    ada = Person("teacher-1", [INSTRUCTOR], "Ada Lovelace", "ada@univ.example")
    picked = await launch(lms, Activity(ada, deep_linking=True))
    assert picked.status == 303, await picked.text()
    assert picked.headers["Location"].startswith("/lti/deep-link?ticket=")
    assert "SameSite=Lax" in picked.headers["Set-Cookie"] or "samesite=lax" in picked.headers["Set-Cookie"].lower()

    picker = await lms.client.get(picked.headers["Location"])
    assert picker.status == 200, await picker.text()
    assert lms.moodle.base in picker.headers["Content-Security-Policy"]  # framable by the LMS
    assert "X-Frame-Options" not in picker.headers
    _action, form = parse_form(await picker.text(), 'action="/lti/deep-link"')
    chosen = await lms.client.post("/lti/deep-link", data={
        "csrf_token": form["csrf_token"], "ticket": form["ticket"],
        "choice": "new", "title": "Quantum mechanics, lecture 1", "course_only": "yes"})
    assert chosen.status == 200, await chosen.text()
    assert f"form-action 'self' {lms.moodle.base}" in chosen.headers["Content-Security-Policy"]
    action, fields = parse_form(await chosen.text(), 'id="lti-return"')
    assert action == f"{lms.moodle.base}/deep-link-return"
    returned = await http.post(action, data=fields)
    assert returned.status == 200, await returned.text()

    # lti1p3platform verified our signature against our JWKS; the item launches our event
    (answer,) = lms.moodle.returned
    (item,) = answer["items"]
    assert item["type"] == "ltiResourceLink" and item["url"] == f"{lms.tool}/lti/launch"
    assert item["title"] == "Quantum mechanics, lecture 1"
    assert answer["claims"]["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == {"opaque": "keep-me"}
    slug = item["custom"]["event"]

    def catalog(session: Any) -> tuple[Event, User, list[str]]:
        event = session.scalar(select(Event).where(Event.slug == slug))
        owner = session.get(User, event.owner_id)
        roles = [m.role for m in session.scalars(select(LtiMembership).where(LtiMembership.user_id == owner.id))]
        return event, owner, roles

    editing = await (await lms.client.get(f"/dashboard/events/{slug}")).text()  # the owner's edit form keeps it
    assert 'value="course" checked' in editing

    event, owner, roles = lms.db.transaction(catalog)
    assert event.visibility == Visibility.COURSE and event.lti_context_id is not None
    assert (owner.display_name, owner.email, owner.role) == ("Ada Lovelace", "ada@univ.example", Role.LECTURER)
    assert roles == ["instructor"]
    started = utcnow()  # a live run's playlist, as the packager leaves it (no encoder needed: access is the subject)
    lms.db.transaction(lambda s: setattr(s.get(Event, event.id), "started_at", started))
    folder = live_run_folder(lms.settings.media_dir, event.id, started)
    (folder / "source").mkdir(parents=True)
    (folder / "source" / "live.m3u8").write_text(PLAYLIST)
    # its replay, as the recorder leaves it: the event's visibility; its course is the event's (access.recording_target)
    replay = lms.db.transaction(lambda s: _ready_recording(s, event))

    # a learner of the course launches the link: the event page (framable by the LMS), its media, its chat
    http.cookie_jar.clear()
    bob = Person("student-7", [LEARNER], "Bob Student")
    opened = await launch(lms, Activity(bob, resource_link_id="rl-2", custom=item["custom"]))
    assert opened.status == 303 and opened.headers["Location"] == f"/events/{slug}", await opened.text()
    learner_cookie = http.cookie_jar.filter_cookies(lms.client.make_url("/"))["live_session"].value
    page = await lms.client.get(f"/events/{slug}")
    assert page.status == 200 and "Quantum mechanics, lecture 1" in await page.text()
    assert f"frame-ancestors 'self' {lms.moodle.base}" in page.headers["Content-Security-Policy"]  # the LMS frames it
    assert "X-Frame-Options" not in page.headers
    media = await lms.client.get(f"/live/{slug}/source/live.m3u8")
    assert media.status == 200 and "#EXTM3U" in await media.text()
    assert (await lms.client.get(f"/recordings/{replay}")).status == 200
    chat = await connect_chat(lms, slug, learner_cookie)
    you = (await chat.welcome())["you"]
    assert chat.connect_error is None and you["author"]["name"] == "Bob Student" and you["moderator"] is False
    await chat.sio.disconnect()

    # another instructor of the course: lecturer rights on its events (chat moderation), without owning them
    http.cookie_jar.clear()
    grace = Person("teacher-2", [INSTRUCTOR], "Grace Hopper")
    assert (await launch(lms, Activity(grace, resource_link_id="rl-2", custom=item["custom"]))).status == 303
    grace_cookie = http.cookie_jar.filter_cookies(lms.client.make_url("/"))["live_session"].value
    co_teacher = await connect_chat(lms, slug, grace_cookie)
    assert (await co_teacher.welcome())["you"]["moderator"] is True
    await co_teacher.sio.disconnect()

    # a student of another course, and someone anonymous: no page, no media, no chat
    http.cookie_jar.clear()
    eve = Person("student-9", [LEARNER], "Eve")
    other = await launch(lms, Activity(eve, course_id="course-202", course_title="Chemistry", custom=item["custom"]))
    assert other.status == 303
    stranger_cookie = http.cookie_jar.filter_cookies(lms.client.make_url("/"))["live_session"].value
    assert (await lms.client.get(f"/events/{slug}", allow_redirects=False)).status == 404
    assert (await lms.client.get(f"/recordings/{replay}", allow_redirects=False)).status == 404
    assert (await lms.client.get(f"/live/{slug}/source/live.m3u8")).status in (403, 404)
    refused = await connect_chat(lms, slug, stranger_cookie, refused=True)
    assert refused.connect_error is not None
    http.cookie_jar.clear()
    anonymous = await lms.client.get(f"/events/{slug}", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")
    assert (await lms.client.get(f"/live/{slug}/source/live.m3u8")).status in (401, 403, 404)
    assert (await connect_chat(lms, slug, None, refused=True)).connect_error is not None

    # the accounts are linked: the same person launching again is the same account
    links = lms.db.transaction(lambda s: len(list(s.scalars(select(LtiAccount)))))
    assert links == 4


def _ready_recording(session: Any, event: Event) -> int:
    row = Recording(event_id=event.id, owner_id=event.owner_id, title=event.title, visibility=event.visibility,
                    state=RecordingState.READY, media_path="x")
    session.add(row)
    session.flush()
    return row.id
