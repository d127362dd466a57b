"""Login, sessions, CSRF, API tokens and the failed-login limit, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Callable

from live_server.accounts import FailedLoginLimiter, LoginAttempt
from live_server.app import create_app
from live_server.settings import Settings
from tests.support import Account, login


async def test_login_sets_a_safe_session_cookie(client: Any, make_user: Callable[..., Account]) -> None:
    user = make_user("viewer")
    resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert "live_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in the test; see test_secure_cookie_when_configured
    me = await (await client.get("/api/v1/me")).json()
    assert me["user"]["username"] == user.username and me["auth"] == "session"


async def test_secure_cookie_when_configured(aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_url: str, make_user: Callable[..., Account]) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url=migrated_url, cookie_secure="always")))
    user = make_user("viewer")
    resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_wrong_credentials_give_no_hint(client: Any, make_user: Callable[..., Account]) -> None:
    user = make_user("viewer")
    wrong_pw = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "nope-nope"})
    no_user = await client.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert wrong_pw.status == no_user.status == 401
    assert await wrong_pw.json() == await no_user.json() == {
        "error": {"code": "invalid_credentials", "message": "wrong username or password"}
    }


async def test_failed_logins_are_rate_limited_per_account(client: Any, make_user: Callable[..., Account]) -> None:
    user = make_user("viewer")
    for _ in range(5):
        resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong-pass"})
        assert resp.status == 401
    # Even the right password is refused while the account is locked, so guessing stays pointless.
    resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"]["code"] == "rate_limited"


async def test_one_address_failing_for_many_usernames_does_not_lock_out_others(client: Any, make_user: Callable[..., Account]) -> None:
    """A campus NAT: one person failing for five usernames (even made-up ones) must not block a sixth student."""
    for i in range(5):
        resp = await client.post("/api/v1/auth/login", json={"username": f"nobody{i}", "password": "wrong-pass"})
        assert resp.status == 401
    other = make_user("viewer")
    resp = await client.post("/api/v1/auth/login", json={"username": other.username, "password": other.password})
    assert resp.status == 200


async def test_the_per_address_ceiling_still_triggers(aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_url: str, make_user: Callable[..., Account]) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url=migrated_url, login_address_attempts_per_window=8)))
    statuses = [
        (await client.post("/api/v1/auth/login", json={"username": f"nobody{i}", "password": "wrong-pass"})).status
        for i in range(9)
    ]
    assert statuses == [401] * 8 + [429]
    other = make_user("viewer")
    resp = await client.post("/api/v1/auth/login", json={"username": other.username, "password": other.password})
    assert resp.status == 429


async def test_parallel_wrong_passwords_are_counted_before_the_check(client: Any, make_user: Callable[..., Account]) -> None:
    """The attempt is reserved before the slow password check: 60 guesses at once get at most the limit of 401s."""
    user = make_user("viewer")

    async def guess(i: int) -> int:
        resp = await client.post("/api/v1/auth/login", json={"username": user.username, "password": f"wrong-{i}"})
        return resp.status

    statuses = await asyncio.gather(*(guess(i) for i in range(60)))
    assert statuses.count(401) <= 5
    assert statuses.count(429) >= 55
    assert set(statuses) == {401, 429}


def test_lockouts_back_off_exponentially() -> None:
    now = [1000.0]
    limiter = FailedLoginLimiter(2, 60, clock=lambda: now[0])

    def fail_until_locked() -> float:
        while isinstance(attempt := limiter.begin("ann", "10.0.0.1"), LoginAttempt):
            limiter.failed(attempt)
        return attempt

    assert fail_until_locked() == 60
    now[0] += 61
    assert fail_until_locked() == 120  # the second lockout lasts twice as long
    now[0] += 121
    attempt = limiter.begin("ann", "10.0.0.1")
    assert isinstance(attempt, LoginAttempt)
    limiter.succeeded(attempt)  # the right password clears the account's back-off
    assert fail_until_locked() == 60
    assert isinstance(limiter.begin("bob", "10.0.0.1"), LoginAttempt)  # another account from that address: allowed


async def test_proxy_header_from_an_untrusted_peer_is_reported_once(client: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="live_server.middleware")
    for _ in range(3):
        await client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    warnings = [r for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert len(warnings) == 1 and "trusted_proxies" in warnings[0].getMessage()


async def test_logout_ends_the_session(client: Any, make_user: Callable[..., Account]) -> None:
    user = make_user("viewer")
    csrf = await login(client, user)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["live_session"].value
    resp = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert (await client.get("/api/v1/me")).status == 401
    # The old cookie value is dead on the server too, not just removed from the browser.
    resp = await client.get("/api/v1/me", headers={"Cookie": f"live_session={cookie}"})
    assert resp.status == 401


async def test_cookie_writes_need_the_csrf_token(client: Any, make_user: Callable[..., Account]) -> None:
    lecturer = make_user("lecturer")
    csrf = await login(client, lecturer)
    resp = await client.post("/api/v1/events", json={"title": "No token"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf_failed"
    resp = await client.post("/api/v1/events", json={"title": "Wrong token"}, headers={"X-CSRF-Token": "x" * 32})
    assert resp.status == 403
    resp = await client.post("/api/v1/events", json={"title": "Cross"}, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert resp.status == 403
    resp = await client.post("/api/v1/events", json={"title": "Right token"}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
    listing = await (await client.get("/api/v1/events")).json()
    assert [e["title"] for e in listing["events"]] == ["Right token"]


async def test_api_tokens(client: Any, aiohttp_client: Any, make_user: Callable[..., Account]) -> None:
    lecturer = make_user("lecturer")
    csrf = await login(client, lecturer)
    resp = await client.post("/api/v1/tokens", json={"name": "capture box 12"}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
    created = await resp.json()
    token = created["token"]
    assert token.startswith("lst_")

    # A script with only the token: no cookie, no CSRF token needed.
    script = await aiohttp_client(client.server)
    auth = {"Authorization": f"Bearer {token}"}
    resp = await script.post("/api/v1/events", json={"title": "Scripted"}, headers=auth)
    assert resp.status == 201
    listed = await (await script.get("/api/v1/tokens", headers=auth)).json()
    assert [t["name"] for t in listed["tokens"]] == ["capture box 12"]
    assert "token" not in listed["tokens"][0]  # shown once only

    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers={"X-CSRF-Token": csrf})
    assert resp.status == 204
    resp = await script.get("/api/v1/me", headers=auth)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_html_login_form_uses_csrf(client: Any, make_user: Callable[..., Account]) -> None:
    user = make_user("viewer")
    page = await client.get("/login")
    html = await page.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    form = {"username": user.username, "password": user.password, "csrf_token": "forged", "next": "/"}
    resp = await client.post("/login", data=form, allow_redirects=False)
    assert resp.status == 403
    form["csrf_token"] = token
    form["next"] = "//evil.example/"
    resp = await client.post("/login", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"  # open redirects refused
    home = await (await client.get("/")).text()
    assert user.username in home and "Log out" in home
