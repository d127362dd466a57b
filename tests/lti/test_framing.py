"""Refusals the LMS frame shows: the 404 of an event or replay page may be framed by the registered platforms
(and by them only), the same for a course-only event as for no event at all, so the headers tell nothing."""

from __future__ import annotations

from typing import Callable

import pytest

from live_server.settings import Settings
from tests.lti.lms import Lms


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    return make_settings(database_url=migrated_sqlite("live.db"))


@pytest.mark.parametrize("path", ["/events/no-such-lecture", "/recordings/NoSuchRecording1"])
async def test_a_not_found_page_may_be_framed_by_the_registered_platforms_only(lms: Lms, path: str) -> None:
    resp = await lms.client.get(path, headers={"Accept": "text/html", "Accept-Language": "en"})
    assert resp.status == 404
    assert "Page not found" in await resp.text()
    policy = dict(p.strip().split(" ", 1) for p in resp.headers["Content-Security-Policy"].split(";"))
    platform = lms.moodle.register_values()["auth_login_url"].split("/")[:3]
    assert policy["frame-ancestors"].split() == ["'self'", "/".join(platform)]
    assert "X-Frame-Options" not in resp.headers  # it would forbid what frame-ancestors allows


async def test_without_a_registered_platform_a_not_found_page_stays_same_origin(client: object) -> None:
    resp = await client.get("/events/no-such-lecture", headers={"Accept": "text/html"})  # type: ignore[attr-defined]
    assert resp.status == 404
    assert "frame-ancestors 'self';" in resp.headers["Content-Security-Policy"] + ";"
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
