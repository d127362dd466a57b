"""The LTI entry points under load and over time: a flood of login initiations or launches from one address
gets 429 with a readable page while other addresses go on; logins whose launch never came are deleted by the
app's timer, in bounded batches, whatever the clock says (the tool's clock is handed in)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from live_server.models import LtiLoginState, LtiPlatform, utcnow
from live_server.settings import Settings
from lti import registry
from lti.tool import LTI_TOOL
from tests.lti.lms import Lms
from tests.lti.platform import LEARNER, Activity, Person

LIMIT = 4


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    return make_settings(database_url=migrated_sqlite("live.db"), trusted_proxies=["127.0.0.1"],
                         lti_requests_per_address=LIMIT, lti_login_sweep_batch=2)


async def initiate(lms: Lms, address: str) -> tuple[int, str, dict[str, str]]:
    url = lms.moodle.login_url(Activity(Person("student-1", [LEARNER])))
    resp = await lms.client.session.get(url, allow_redirects=False,
                                        headers={"X-Forwarded-For": address, "Accept-Language": "en"})
    return resp.status, await resp.text(), dict(resp.headers)


def pending(lms: Lms) -> int:
    return lms.db.transaction(lambda s: s.scalar(select(func.count(LtiLoginState.id)))) or 0


async def test_a_flood_from_one_address_gets_429_and_others_go_on(lms: Lms) -> None:
    for _ in range(LIMIT - 1):
        assert (await initiate(lms, "198.51.100.7"))[0] == 302
    launch = await lms.client.post("/lti/launch", data={"state": "x", "id_token": "y"},
                                   headers={"X-Forwarded-For": "198.51.100.7"})
    assert launch.status == 403  # the launch counts too (refused for its bad state, not yet for the rate)
    status, page, headers = await initiate(lms, "198.51.100.7")
    assert status == 429
    assert "Too many launches from your network" in page
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "frame-ancestors 'self' http://127.0.0.1:" in headers["Content-Security-Policy"]  # readable in the LMS frame
    flooded = await lms.client.post("/lti/launch", data={"state": "x", "id_token": "y"},
                                    headers={"X-Forwarded-For": "198.51.100.7"})
    assert flooded.status == 429
    assert pending(lms) == LIMIT - 1  # refused requests reached nothing behind the limit
    assert (await initiate(lms, "198.51.100.8"))[0] == 302  # another address is not affected


async def test_expired_logins_are_swept_in_batches_by_the_app(lms: Lms, settings: Settings) -> None:
    for i in range(LIMIT):
        assert (await initiate(lms, f"198.51.100.{i}"))[0] == 302
    tool = lms.client.app[LTI_TOOL]
    assert await tool.sweep_logins() == 0  # none has expired yet
    assert pending(lms) == LIMIT
    tool.clock = lambda: time.time() + settings.lti_login_lifetime_seconds + 1
    assert await tool.sweep_logins() == LIMIT  # batches of 2 until none is left
    assert pending(lms) == 0


def test_one_batch_deletes_at_most_its_size_and_only_expired_logins(lms: Lms) -> None:
    now = utcnow()

    def open_some(session: Session) -> None:
        platform = session.get(LtiPlatform, lms.platform_id)
        assert platform is not None
        for lifetime in (30, 30, 30, 600):
            registry.open_login(session, platform, f"{lms.tool}/lti/launch", "browser", lifetime, now=now)

    lms.db.transaction(open_some)
    later = now + timedelta(seconds=31)
    assert [lms.db.transaction(lambda s: registry.expire_logins(s, later, 2)) for _ in range(3)] == [2, 1, 0]
    assert pending(lms) == 1  # the one still within its lifetime stays
