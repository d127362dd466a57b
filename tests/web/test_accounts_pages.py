"""Login, logout, profile, API tokens and the admin pages, through their forms."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from live_server import accounts
from live_server.models import Role, User
from tests.support import Account
from tests.web.website import Site


async def test_login_errors_are_translated_and_logout_ends_the_session(site: Site) -> None:
    viewer = site.account("viewer")
    token = await site.csrf("/login")
    resp = await site.client.post("/login", data={"username": viewer.username, "password": "wrong-password",
                                                  "csrf_token": token, "next": "/"}, headers={"Accept-Language": "fr"})
    assert resp.status == 401
    assert 'role="alert" id="login-error">Identifiant ou mot de passe incorrect.<' in await resp.text()

    await site.log_in(viewer)
    assert (await site.client.get("/api/v1/me")).status == 200
    resp = await site.submit("/", "/logout", {})
    assert resp.status == 303
    assert (await site.client.get("/api/v1/me")).status == 401
    assert (await site.client.get("/profile", allow_redirects=False)).headers["Location"] == "/login?next=/profile"


async def test_an_api_token_is_shown_once_works_and_can_be_revoked(site: Site) -> None:
    lecturer = site.account("lecturer")
    await site.log_in(lecturer)
    resp = await site.submit("/profile/tokens", "/profile/tokens", {"name": "capture box, room B"})
    assert resp.status == 201 and resp.headers["Cache-Control"] == "no-store"
    token = re.search(r'id="new-token" value="(lst_[^"]+)"', await resp.text()).group(1)  # type: ignore[union-attr]

    page = await (await site.client.get("/profile/tokens")).text()
    assert "capture box, room B" in page and token not in page  # listed, never shown again
    me = await site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200 and (await me.json())["user"]["username"] == lecturer.username

    resp = await site.submit("/profile/tokens", "/profile/tokens", {"name": "  "})
    assert resp.status == 422 and 'id="token-name-error"' in await resp.text()

    token_id = re.search(r'action="/profile/tokens/(\d+)/revoke"', page).group(1)  # type: ignore[union-attr]
    resp = await site.submit("/profile/tokens", f"/profile/tokens/{token_id}/revoke", {})
    assert resp.status == 303
    assert (await site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).status == 401

    # someone else's token cannot be revoked through this page
    other = site.account("viewer")
    _secret, row = site.db.transaction(lambda s: accounts.create_api_token(s, s.get(User, other.id), "theirs"))
    resp = await site.submit("/profile/tokens", f"/profile/tokens/{row.id}/revoke", {})
    assert resp.status == 404


async def test_profile_form_checks_the_name(site: Site) -> None:
    viewer = site.account("viewer")
    await site.log_in(viewer)
    resp = await site.submit("/profile", "/profile", {"display_name": "   ", "language": "fr"})
    assert resp.status == 422
    page = await resp.text()
    assert 'aria-invalid="true"' in page and 'id="display_name-error"' in page
    assert site.db.transaction(lambda s: s.get(User, viewer.id).language) is None  # nothing saved


async def test_admin_creates_people_changes_roles_and_deactivates(site: Site) -> None:
    admin = site.account("admin")
    await site.log_in(admin)
    resp = await site.submit("/admin/users", "/admin/users",
                             {"username": "marie", "display_name": "Marie C.", "password": "polonium-84", "role": "lecturer"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users?done=created"
    marie = site.db.transaction(lambda s: accounts.authenticate(s, "marie", "polonium-84"))
    assert marie is not None and marie.role == Role.LECTURER

    resp = await site.submit("/admin/users", "/admin/users", {"username": "marie", "password": "x", "role": "lecturer"})
    page = await resp.text()
    assert resp.status == 422 and "This username is already taken." not in page  # the short password is found first
    assert "The password needs at least 8 characters." in page
    resp = await site.submit("/admin/users", "/admin/users", {"username": "marie", "password": "long-enough", "role": "viewer"})
    assert resp.status == 422 and "This username is already taken." in await resp.text()

    resp = await site.submit("/admin/users", f"/admin/users/{marie.id}/role", {"role": "admin"})
    assert resp.status == 303
    assert site.db.transaction(lambda s: s.get(User, marie.id).role) == Role.ADMIN

    # deactivating ends Marie's sessions at once
    marie_account = Account(marie.id, "marie", "polonium-84", "admin")
    await site.log_in(marie_account)
    await site.log_in(admin)
    resp = await site.submit("/admin/users", f"/admin/users/{marie.id}/active", {"active": "no"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users?done=deactivated"
    site.log_out()
    token = await site.csrf("/login")
    resp = await site.client.post("/login", data={"username": "marie", "password": "polonium-84", "csrf_token": token})
    assert resp.status == 401

    # an admin cannot lock themselves out
    await site.log_in(admin)
    resp = await site.submit("/admin/users", f"/admin/users/{admin.id}/active", {"active": "no"})
    assert resp.status == 409 and "You cannot deactivate your own account." in await resp.text()
    resp = await site.submit("/admin/users", f"/admin/users/{admin.id}/role", {"role": "viewer"})
    assert resp.status == 409
    assert site.db.transaction(lambda s: (s.get(User, admin.id).role, s.get(User, admin.id).is_active)) == (Role.ADMIN, True)


async def test_admin_sees_every_event_including_private_ones(site: Site) -> None:
    lecturer, admin = site.account("lecturer"), site.account("admin")
    site.event(lecturer, title="Hidden seminar", visibility="unlisted")
    site.event(lecturer, title="Members only", visibility="authenticated")
    await site.log_in(admin)
    page = await (await site.client.get("/admin/events")).text()
    assert "Hidden seminar" in page and "Members only" in page
    await site.log_in(lecturer)
    assert (await site.client.get("/admin/events", allow_redirects=False)).status == 403


OPEN_REDIRECTS = ["//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/",
                  "/ /evil.example/", "/\u3000/evil.example/", "https://evil.example/", "/\x00/evil.example/", "evil.example"]


async def test_login_in_chromium_with_a_tab_in_next_stays_on_our_host(site: Site, browser: Any) -> None:
    """yarl and browsers drop a tab from a URL: ``/<TAB>/evil.example/`` would be ``//evil.example/``."""
    viewer = site.account("viewer")
    base = str(site.client.make_url("")).rstrip("/")
    context = await browser.new_context(base_url=base)
    page = await context.new_page()
    await page.goto("/login?next=" + urllib.parse.quote("/\t/evil.example/", safe=""))
    assert await page.input_value("form.stack input[name=next]") == "/\t/evil.example/"
    await page.fill("#username", viewer.username)
    await page.fill("#password", viewer.password)
    await page.click("form.stack button[type=submit]")
    await page.wait_for_load_state()
    assert urllib.parse.urlsplit(page.url).netloc == urllib.parse.urlsplit(base).netloc, page.url
    assert urllib.parse.urlsplit(page.url).path == "/"
    await context.close()


async def test_login_and_language_refuse_every_open_redirect(site: Site) -> None:
    viewer = site.account("viewer")
    for target in OPEN_REDIRECTS:
        resp = await site.submit("/", "/language", {"language": "fr", "next": target})
        assert resp.status == 303 and resp.headers["Location"] == "/", (target, resp.headers.get("Location"))
        site.log_out()
        token = await site.csrf("/login")
        resp = await site.client.post("/login", data={"username": viewer.username, "password": viewer.password,
                                                      "csrf_token": token, "next": target}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/", (target, resp.headers.get("Location"))
    resp = await site.submit("/", "/language", {"language": "fr", "next": "/events?page=2#top"})
    assert resp.headers["Location"] == "/events?page=2#top"
