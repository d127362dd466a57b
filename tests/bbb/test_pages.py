"""The BigBlueButton pages: admins configure servers and meeting mappings (the shared secret never shown back in full),
lecturers are refused there; the lecturer's and the admin's pages pass axe (WCAG 2.0/2.1 A and AA) at desktop and
phone sizes in English and at phone size in French (the same document at either size: what a translation breaks
breaks at both, and the phone is where longer strings break layouts; tests/web/test_browser_pages.py says more),
with their messages, recordings and webinar link on show, and no sideways scrolling on the phone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from live_server import accounts
from live_server.db import DB
from bbb import servers as srv
from tests.bbb.fake_bbb import SECRET, FakeBbb, FakeRecording
from tests.ingest.live import Live
from tests.support import Account, login
from tests.web.browsing import BOTH_SIZES, PHONE_ONLY, check_page, new_page, open_context


def _admin(live: Live) -> Account:
    user = live.app[DB].transaction(lambda s: accounts.create_user(s, "dean", "dean-password", "admin"))
    return Account(user.id, "dean", "dean-password", "admin")


async def test_admins_configure_servers_and_meetings(live: Live, fake_bbb: FakeBbb) -> None:
    refused = await live.client.get("/admin/bigbluebutton")
    assert refused.status == 403  # the lecturer
    live.client.session.cookie_jar.clear()
    csrf = await login(live.client, _admin(live))

    async def post(path: str, **fields: str) -> Any:
        return await live.client.post(path, data={"csrf_token": csrf, **fields}, allow_redirects=False)

    bad_url = await post("/admin/bigbluebutton/servers", name="campus", api_url="bbb.example.edu", secret=SECRET, algorithm="sha256")
    assert bad_url.status == 422 and "Enter the API URL" in await bad_url.text()
    short = await post("/admin/bigbluebutton/servers", name="campus", api_url=fake_bbb.api_url, secret="short", algorithm="sha256")
    assert short.status == 422 and "Enter the shared secret" in await short.text()
    algorithm = await post("/admin/bigbluebutton/servers", name="campus", api_url=fake_bbb.api_url, secret=SECRET, algorithm="md5")
    assert algorithm.status == 422 and "Choose an algorithm" in await algorithm.text()
    added = await post("/admin/bigbluebutton/servers", name="campus", api_url=f"{fake_bbb.base}/bigbluebutton/",
                       secret=SECRET, algorithm="sha384")
    assert added.status == 303 and added.headers["Location"] == "/admin/bigbluebutton?done=added"
    twice = await post("/admin/bigbluebutton/servers", name="campus", api_url=fake_bbb.api_url, secret=SECRET, algorithm="sha1")
    assert twice.status == 409 and "Another server already has this name." in await twice.text()

    page = await (await live.client.get("/admin/bigbluebutton?done=added")).text()
    assert SECRET not in page and f'<td data-label="Shared secret" class="secret-hint">{SECRET[:4]}…</td>' in page
    assert f"<code>{fake_bbb.api_url}</code>" in page and "sha384" in page
    server_id = int(re.search(r'/admin/bigbluebutton/servers/(\d+)/delete', page).group(1))  # type: ignore[union-attr]
    assert re.search(rf"<code>http://127\.0\.0\.1:\d+/api/v1/bbb/recording-ready/{server_id}</code>", page)

    nobody = await post("/admin/bigbluebutton/meetings", server=str(server_id), meeting_id="course-9", owner="nobody")
    assert nobody.status == 422 and "No account has this username." in await nobody.text()
    comma = await post("/admin/bigbluebutton/meetings", server=str(server_id), meeting_id="a,b", owner="prof")
    assert comma.status == 422 and "no comma" in await comma.text()
    mapped = await post("/admin/bigbluebutton/meetings", server=str(server_id), meeting_id="course-9", owner="prof",
                        auto_import="on")
    assert mapped.status == 303
    [view] = live.app[DB].transaction(lambda s: srv.meeting_views(s))
    assert (view.meeting_id, view.owner_username, view.auto_import) == ("course-9", "prof", True)

    # the stored server signs calls BBB accepts (sha384, the API URL completed with /api)
    config = live.app[DB].transaction(lambda s: srv.server_config(s, server_id))
    assert config.api_url == fake_bbb.api_url and config.secret == SECRET and SECRET not in repr(config)

    assert (await post(f"/admin/bigbluebutton/meetings/{view.id}/delete")).status == 303
    assert (await post(f"/admin/bigbluebutton/servers/{server_id}/delete")).status == 303
    assert live.app[DB].transaction(lambda s: srv.server_views(s)) == []


@pytest.mark.parametrize("locale", ["en-GB", "fr-FR"])  # one test per language: two workers share them
async def test_the_pages_pass_axe(live: Live, fake_bbb: FakeBbb, browser: Any, tmp_path: Path, locale: str) -> None:
    fake_bbb.recordings += [
        FakeRecording("rec-1", "course-1", "Thermodynamics week 3", {"live-server-owner": "prof"}),
        FakeRecording("rec-2", "course-1", "Slides only", {"live-server-owner": "prof"}, has_video=False),
    ]
    live.app[DB].transaction(lambda s: srv.add_server(s, "campus", fake_bbb.api_url, SECRET, "sha256"))
    live.app[DB].transaction(lambda s: srv.add_server(s, "misconfigured", fake_bbb.api_url, "a-wrong-secret", "sha256"))
    live.app[DB].transaction(lambda s: srv.map_meeting(s, "campus", "course-1", "prof", auto_import=True))
    await live.create_event(title="Inaugural lecture")
    admin = _admin(live)
    base = str(live.client.make_url("")).rstrip("/")
    problems: dict[str, Any] = {}
    lang = locale[:2]
    sizes = BOTH_SIZES if lang == "en" else PHONE_ONLY
    context = await open_context(browser, base, live.lecturer, locale=locale)
    page, errors = await new_page(context)
    await page.goto("/dashboard/bigbluebutton")
    await page.click("#webinar-form-title ~ form button[type=submit]")
    await page.wait_for_selector("#presenter-join")
    assert await page.locator(".bbb-server-problem").count() == 1 and await page.locator("tr.bbb-recording").count() == 2
    problems.update(await check_page(page, tmp_path / "shots", f"dashboard-{lang}", sizes))
    await context.close()

    context = await open_context(browser, base, admin, locale=locale)
    page, admin_errors = await new_page(context)
    await page.goto("/admin/bigbluebutton")
    await page.eval_on_selector("#add-server-title + form", "f => f.noValidate = true")
    await page.fill("#bbb-name", "campus")  # taken: the form comes back with its error
    await page.fill("#bbb-api-url", fake_bbb.api_url)
    await page.fill("#bbb-secret", SECRET)
    await page.click("#add-server-title + form button[type=submit]")
    await page.wait_for_selector("#error-summary")
    assert await page.locator("tr.bbb-server").count() == 2
    problems.update(await check_page(page, tmp_path / "shots", f"admin-{lang}", sizes))
    await context.close()
    assert errors == [] and admin_errors == []
    assert not problems, f"axe found problems (screenshots in {tmp_path / 'shots'}): {problems}"
