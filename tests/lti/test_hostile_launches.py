"""Hand-made launches, each wrong in one way, against the real app: every one is refused with a page (4xx)
that says why and one log line, and nobody is logged in. A control launch built the same way is accepted,
so each refusal is the one change's doing.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from sqlalchemy import func, select

from live_server.models import LtiAccount, LtiLoginState
from live_server.settings import Settings
from tests.lti.lms import Lms
from tests.lti.platform import LEARNER, Activity, Person, rsa_pem_pair

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
OTHER_PRIVATE, _OTHER_PUBLIC = rsa_pem_pair()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str],
             request: pytest.FixtureRequest) -> Settings:
    """SQLite only: what is refused does not depend on the catalog (the full flow runs on both backends).
    ``@pytest.mark.lti_settings(name=value)`` overrides settings for one test."""
    marker = request.node.get_closest_marker("lti_settings")
    return make_settings(database_url=migrated_sqlite("live.db"), **(marker.kwargs if marker else {}))


async def start_login(lms: Lms, sub: str = "student-1") -> dict[str, str]:
    """Our answer to a login initiation: the state and nonce the launch must carry (and the browser cookie set)."""
    initiation = await lms.client.session.get(lms.moodle.login_url(Activity(Person(sub, [LEARNER]))),
                                              allow_redirects=False)
    assert initiation.status == 302, await initiation.text()
    return {k: v[0] for k, v in parse_qs(urlsplit(initiation.headers["Location"]).query).items()}


def claims_for(lms: Lms, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": lms.moodle.issuer, "aud": lms.moodle.client_id, "azp": lms.moodle.client_id, "sub": "student-1",
        "iat": now, "exp": now + 300, "nonce": auth["nonce"], "name": "Student One",
        CLAIM + "deployment_id": lms.moodle.deployment_id, CLAIM + "message_type": "LtiResourceLinkRequest",
        CLAIM + "version": "1.3.0", CLAIM + "target_link_uri": f"{lms.tool}/lti/launch",
        CLAIM + "roles": [LEARNER], CLAIM + "context": {"id": "course-101", "title": "Physics"},
        CLAIM + "resource_link": {"id": "rl-1"},
    }
    for name, value in changes.items():
        key = CLAIM + name[6:] if name.startswith("claim_") else name
        if value is DROP:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


DROP = object()


def sign(lms: Lms, claims: dict[str, Any], key: str | None = None) -> str:
    return jwt.encode(claims, key or lms.moodle.private_pem, algorithm="RS256")


async def post_launch(lms: Lms, id_token: str, state: str) -> Any:
    return await lms.client.session.post(f"{lms.tool}/lti/launch", data={"id_token": id_token, "state": state},
                                         headers={"Origin": lms.moodle.base}, allow_redirects=False)


def accounts(lms: Lms) -> int:
    return lms.db.transaction(lambda s: s.scalar(select(func.count(LtiAccount.id))))


Case = Callable[[Lms, dict[str, str]], dict[str, Any]]
CASES: dict[str, tuple[str, Case, str | None]] = {
    # name: (expected refusal code, claims, signing key (None: the platform's))
    "bad signature": ("bad_signature", lambda lms, a: claims_for(lms, a), OTHER_PRIVATE),
    "expired": ("expired", lambda lms, a: claims_for(lms, a, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000), None),
    "issued in the future": ("expired", lambda lms, a: claims_for(lms, a, iat=int(time.time()) + 3600), None),
    "another nonce": ("wrong_nonce", lambda lms, a: claims_for(lms, a, nonce="not-the-one-we-sent"), None),
    "unknown deployment": ("unknown_deployment", lambda lms, a: claims_for(lms, a, claim_deployment_id="deployment-x"), None),
    "wrong audience": ("wrong_audience", lambda lms, a: claims_for(lms, a, aud="another-tool", azp="another-tool"), None),
    "wrong azp": ("wrong_audience", lambda lms, a: claims_for(lms, a, aud=[lms.moodle.client_id, "other"], azp="other"), None),
    "wrong issuer": ("wrong_issuer", lambda lms, a: claims_for(lms, a, iss="https://evil.example"), None),
    "missing roles": ("missing_roles", lambda lms, a: claims_for(lms, a, claim_roles=DROP), None),
    "no course role": ("missing_roles", lambda lms, a: claims_for(
        lms, a, claim_roles=["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"]), None),
    "LTI 1.1 version": ("wrong_version", lambda lms, a: claims_for(lms, a, claim_version="1.1"), None),
    "unknown message type": ("wrong_message_type", lambda lms, a: claims_for(lms, a, claim_message_type="LtiSubmissionReviewRequest"), None),
    "another target": ("wrong_target", lambda lms, a: claims_for(lms, a, claim_target_link_uri="https://evil.example/x"), None),
    "no course": ("no_course", lambda lms, a: claims_for(lms, a, claim_context=DROP), None),
    "anonymous": ("anonymous", lambda lms, a: claims_for(lms, a, sub=DROP), None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_hostile_launch_is_refused(lms: Lms, case: str, caplog: pytest.LogCaptureFixture) -> None:
    code, make, key = CASES[case]
    auth = await start_login(lms)
    caplog.set_level(logging.INFO, logger="lti")
    refused = await post_launch(lms, sign(lms, make(lms, auth), key), auth["state"])
    assert 400 <= refused.status < 500, (case, refused.status)
    page = await refused.text()
    assert "text/html" in refused.headers["Content-Type"] and code in page and "Traceback" not in page
    assert [r.getMessage() for r in caplog.records if r.name == "lti.tool"] and \
        all(f"LTI refused ({code})" in r.getMessage() for r in caplog.records if r.name == "lti.tool")
    assert "live_session" not in refused.cookies and accounts(lms) == 0

    # the control: the same login, a fresh state, an untouched token, is accepted
    auth = await start_login(lms)
    accepted = await post_launch(lms, sign(lms, claims_for(lms, auth)), auth["state"])
    assert accepted.status == 303, await accepted.text()
    assert "live_session" in accepted.cookies and accounts(lms) == 1


async def test_a_launch_is_used_once_and_its_state_belongs_to_its_browser(lms: Lms) -> None:
    auth = await start_login(lms)
    token = sign(lms, claims_for(lms, auth))
    assert (await post_launch(lms, token, auth["state"])).status == 303
    replayed = await post_launch(lms, token, auth["state"])  # the same form posted again
    assert replayed.status == 403 and "wrong_state" in await replayed.text()

    # the nonce of a used login in a new login's launch
    fresh = await start_login(lms)
    reused = await post_launch(lms, sign(lms, claims_for(lms, fresh, nonce=auth["nonce"])), fresh["state"])
    assert reused.status == 403 and "wrong_nonce" in await reused.text()

    # a state we never issued, and one issued to another browser (another cookie jar)
    assert "wrong_state" in await (await post_launch(lms, token, "made-up-state")).text()
    other = await start_login(lms)
    lms.client.session.cookie_jar.clear()
    stolen = await post_launch(lms, sign(lms, claims_for(lms, other)), other["state"])
    assert stolen.status == 403 and "wrong_state" in await stolen.text()
    # each login state was consumed or refused: none is left to try again
    assert lms.db.transaction(lambda s: s.scalar(select(func.count(LtiLoginState.id)))) == 0


async def test_login_initiation_refuses_what_it_cannot_start(lms: Lms) -> None:
    http = lms.client.session
    unknown = await http.get(f"{lms.tool}/lti/login", params={
        "iss": "https://unknown.example", "login_hint": "x", "target_link_uri": f"{lms.tool}/lti/launch"})
    assert unknown.status == 400 and "unknown_platform" in await unknown.text()
    elsewhere = await http.post(f"{lms.tool}/lti/login", data={
        "iss": lms.moodle.issuer, "login_hint": "x", "target_link_uri": "https://evil.example/lti/launch"},
        headers={"Origin": lms.moodle.base})
    assert elsewhere.status == 400 and "wrong_target" in await elsewhere.text()
    incomplete = await http.get(f"{lms.tool}/lti/login", params={"iss": lms.moodle.issuer})
    assert incomplete.status == 400
    # POST works as GET does (platforms may use either), cross-site
    posted = await http.post(f"{lms.tool}/lti/login", data={
        "iss": lms.moodle.issuer, "login_hint": "x", "target_link_uri": f"{lms.tool}/lti/launch",
        "client_id": lms.moodle.client_id}, headers={"Origin": lms.moodle.base}, allow_redirects=False)
    assert posted.status == 302 and posted.headers["Location"].startswith(lms.moodle.base + "/auth?")


@pytest.mark.lti_settings(lti_state_cookie_required=False)
async def test_without_the_cookie_requirement_a_cookieless_launch_passes_but_a_foreign_cookie_never(lms: Lms) -> None:
    """For browsers that send no cookie in a cross-site frame: the single-use server-side state alone."""
    auth = await start_login(lms)
    lms.client.session.cookie_jar.clear()  # the launch arrives without the browser cookie
    assert (await post_launch(lms, sign(lms, claims_for(lms, auth)), auth["state"])).status == 303
    other = await start_login(lms)
    lms.client.session.cookie_jar.clear()
    await start_login(lms)  # this browser now holds another login's cookie
    foreign = await post_launch(lms, sign(lms, claims_for(lms, other)), other["state"])
    assert foreign.status == 403 and "wrong_state" in await foreign.text()
