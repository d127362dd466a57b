"""Chromium in a Moodle-like course page (lti1p3platform, another origin on loopback): the instructor adds a
course-only event through deep linking inside the LMS frame; a learner of the course opens it in the frame
and chats; a student of another course reads the not-found page inside the frame. The LTI pages pass axe (French)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from sqlalchemy import func, select

from live_server.models import LtiAccount
from live_server.settings import Settings
from tests.lti.lms import DESKTOP, Lms, frame_at
from tests.lti.platform import INSTRUCTOR, LEARNER, Activity, Person
from tests.web.browsing import axe_violations


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    return make_settings(database_url=migrated_sqlite("live.db"))


async def test_deep_linking_and_a_course_lecture_in_the_lms_frame(lms: Lms, browser: Any) -> None:
    ada = Person("teacher-1", [INSTRUCTOR], "Ada Lovelace")
    teacher = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = await teacher.new_page()
    await page.goto(lms.moodle.course_url(Activity(ada, deep_linking=True)))
    picker = await frame_at(page, "/lti/deep-link")
    await picker.wait_for_selector("#new-title")
    assert await picker.get_attribute("html", "lang") == "fr"
    assert await axe_violations(picker) == []
    await picker.fill("#new-title", "Mécanique quantique, cours 1")
    await picker.click("form[action='/lti/deep-link'] button[type=submit]")
    added = await frame_at(page, "/deep-link-return")
    await added.wait_for_selector("h1")
    (answer,) = lms.moodle.returned
    custom = answer["items"][0]["custom"]
    await teacher.close()

    bob = Person("student-7", [LEARNER], "Bob Student")
    learner = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = await learner.new_page()
    await page.goto(lms.moodle.course_url(Activity(bob, resource_link_id="rl-2", custom=custom)))
    lecture = await frame_at(page, f"/events/{custom['event']}")
    await lecture.wait_for_selector("#player")
    assert "Mécanique quantique, cours 1" in await lecture.inner_text("h1")
    await lecture.wait_for_function("() => !document.getElementById('chat-text').disabled")
    await lecture.fill("#chat-text", "Bonjour depuis Moodle")
    await lecture.press("#chat-text", "Enter")
    await lecture.wait_for_function("() => document.querySelectorAll('#chat-messages .chat-text').length === 1")
    assert await lecture.inner_text("#chat-messages .chat-text") == "Bonjour depuis Moodle"
    course = await learner.new_page()  # the course page of our tool, and a refusal page, for axe
    await course.goto(f"{lms.tool}/lti/courses/1")
    assert "Mécanique quantique, cours 1" in await course.inner_text("main")
    assert await axe_violations(course) == []
    await course.goto(f"{lms.tool}/lti/login?iss=unknown&login_hint=x&target_link_uri={lms.tool}/lti/launch")
    assert await axe_violations(course) == []
    await learner.close()

    eve = Person("student-9", [LEARNER], "Eve")
    stranger = await browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = await stranger.new_page()
    await page.goto(lms.moodle.course_url(Activity(eve, course_id="course-202", custom=custom)))
    # the launch succeeds (Eve is a student of her course); the event answers 404 with a page the LMS may frame:
    # Eve reads why inside her course, not the browser's blocked-frame error
    refused = await frame_at(page, f"/events/{custom['event']}")
    await refused.wait_for_selector("h1")
    assert await refused.inner_text("h1") == "Page introuvable"
    assert "vous n’y avez pas accès" in await refused.inner_text("main")
    assert not [f for f in page.frames if f.url.startswith("chrome-error://")]
    assert await refused.query_selector("#player") is None
    assert await axe_violations(refused) == []
    assert lms.db.transaction(lambda s: s.scalar(select(func.count(LtiAccount.id)))) == 3  # Eve's launch was accepted
    await stranger.close()
