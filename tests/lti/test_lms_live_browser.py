"""Chromium in a Moodle-like course page (lti1p3platform, another origin on loopback) watching a course-only
lecture live: ffmpeg publishes RTMP to the event, a learner of the course who launched it in the LMS's iframe sees
hls.js play it and chats; a student of another course, launched the same way, gets neither the media (playlists
and segments the learner's player fetched, asked with her cookies) nor the chat."""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import pytest
from sqlalchemy import select

from ingest.rtmp.server import RTMP
from live_server import events as ev
from live_server.models import Event, LtiContext, User, Visibility, new_access_secret
from live_server.settings import Settings
from tests.lti.lms import DESKTOP, Lms, connect_chat, frame_at, launch
from tests.lti.platform import INSTRUCTOR, LEARNER, Activity, Person
from tests.media import push_rtmp, stop

LIVE_MEDIA = re.compile(r"/live/[^/]+/.+\.(m3u8|ts|m4s|mp4)(\?|$)")


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    return make_settings(database_url=migrated_sqlite("live.db"), rtmp_enabled=True, rtmp_host="127.0.0.1", rtmp_port=0,
                         segment_seconds=1.0, grace_period_seconds=1.0, live_window_segments=3,
                         rtmp_idle_timeout_seconds=5)


def course_lecture(lms: Lms, owner_sub: str) -> tuple[str, str]:
    """A course-only event of course-101 owned by its instructor (as deep linking leaves it): its slug and stream key."""

    def work(session: Any) -> tuple[str, str]:
        context = session.scalar(select(LtiContext).where(LtiContext.context_key == "course-101"))
        owner = session.scalar(select(User).where(User.display_name == owner_sub))
        event = Event(title="Optique, cours 3", slug="optique-3", owner_id=owner.id, description="",
                      visibility=Visibility.COURSE, lti_context_id=context.id, access_secret=new_access_secret())
        session.add(event)
        session.flush()
        return event.slug, ev.issue_stream_key(session, event)

    return lms.db.transaction(work)


async def test_a_learner_watches_the_course_lecture_live_in_the_lms_frame_and_a_stranger_gets_nothing(
        lms: Lms, browser: Any) -> None:
    ada = Person("teacher-1", [INSTRUCTOR], "Ada Lovelace")
    assert (await launch(lms, Activity(ada))).status == 303  # the course exists here once someone launched from it
    lms.client.session.cookie_jar.clear()
    slug, key = course_lecture(lms, "Ada Lovelace")
    publish_url = f"rtmp://127.0.0.1:{lms.client.app[RTMP].port}/live/{key}"

    bob = Person("student-7", [LEARNER], "Bob Student")
    learner = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = await learner.new_page()
    fetched: list[str] = []
    page.on("response", lambda r: fetched.append(r.url) if LIVE_MEDIA.search(r.url) and r.status == 200 else None)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(lms.moodle.course_url(Activity(bob, resource_link_id="rl-3", custom={"event": slug})))
    lecture = await frame_at(page, f"/events/{slug}")
    await lecture.wait_for_selector("#player")

    started = time.monotonic()
    pusher = await push_rtmp(publish_url, seconds=60)  # stopped once the checks are done
    try:
        # the page notices the lecture started by itself, attaches hls.js and plays it: the video's clock advances
        await lecture.wait_for_function(
            "() => { const v = document.getElementById('player'); return v.readyState >= 3 && v.currentTime > 1; }",
            timeout=30_000)
        print(f"course lecture in the LMS frame: encoder start to video playing {time.monotonic() - started:.1f} s")
        assert await lecture.evaluate("document.getElementById('player').videoWidth") == 160
        await lecture.wait_for_function("() => !document.getElementById('chat-text').disabled")
        await lecture.fill("#chat-text", "Je vois le cours")
        await lecture.press("#chat-text", "Enter")
        await lecture.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-text').length === 1")
        assert await lecture.inner_text("#chat-messages .chat-text") == "Je vois le cours"

        playlists = sorted({u for u in fetched if ".m3u8" in u})
        segments = sorted({u for u in fetched if ".m3u8" not in u})
        assert playlists and segments, fetched
        for url in playlists[:2] + segments[-1:]:  # the learner's own cookies open them (the control)
            assert (await learner.request.get(url)).status == 200, url

        eve = Person("student-9", [LEARNER], "Eve")
        stranger = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
        other = await stranger.new_page()
        await other.goto(lms.moodle.course_url(Activity(eve, course_id="course-202", custom={"event": slug})))
        refused = await frame_at(other, f"/events/{slug}")
        await refused.wait_for_selector("h1")
        assert await refused.inner_text("h1") == "Page introuvable"
        assert await refused.query_selector("#player") is None
        cookies = {c["name"]: c["value"] for c in await stranger.cookies()}
        assert "live_session" in cookies  # she is logged in (her own course's launch was accepted)...
        for url in playlists + segments[-2:]:  # ...and refused the media while it is live
            assert (await stranger.request.get(url)).status in (403, 404), url
        chat = await connect_chat(lms, slug, cookies["live_session"], refused=True)
        assert chat.connect_error is not None
        assert (await learner.request.get(playlists[-1])).status == 200  # still live: she was refused for who she is
        assert errors == []
    finally:
        await stop(pusher)
