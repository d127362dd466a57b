"""The owner's Audience tab in Chromium: players and a chat make the figures through the real collection path; the
tab shows the API's numbers, passes axe-core (WCAG 2.0/2.1 A and AA, every impact) in English and French, its data
tables open from the keyboard; viewers see the attendance notice but no tab; the dashboard lists the peak."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from audience.collector import AUDIENCE
from live_server.db import DB
from live_server.models import BroadcastSession
from live_server.settings import Settings
from tests.audience.watching import BASE, Clock, Player, axe, live_event, watch
from tests.chat.clients import ChatClient
from tests.support import Account, login
from tests.web.browsing import new_page, open_context
from web import i18n

@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str]) -> Settings:
    """One backend: the pages read what tests/audience checked on both (a browser test is paid once)."""
    return make_settings(database_url=migrated_sqlite("live.db"), audience_flush_seconds=300, chat_batch_ms=20)


async def _collect(client: Any, settings: Settings, prof: Account, alice: Account,
                   players: Callable[[str, str], Player]) -> dict[str, Any]:
    """Three players (alice logged in) over three minutes, bob-like one leaving early; a chat message and a question;
    two publishes (the second a reconnect)."""
    app = client.server.app
    audience = app[AUDIENCE]
    clock = Clock()
    audience.clock = clock
    event = live_event(app[DB], settings.media_dir, prof.id, "Audience tab lecture")
    base = str(client.make_url("/"))
    a, b, c = (players(base, event["slug"]) for _ in range(3))
    await a.login(alice)
    for player in (a, b, c):
        await player.start()
    await watch([(a, "source"), (b, "source"), (c, "source")], clock, 0)
    await watch([(a, "source"), (c, "source")], clock, 1)
    await watch([(a, "source")], clock, 2)

    chat = ChatClient()
    cookie = a.http.cookie_jar.filter_cookies(client.make_url("/"))["live_session"].value
    await chat.sio.connect(base.rstrip("/"), headers={"Cookie": f"live_session={cookie}"}, auth={"event": event["slug"]},
                           transports=["websocket"], wait_timeout=10)
    try:
        await chat.welcome()
        assert (await chat.call("send", {"text": "hello"}))["ok"]
        assert (await chat.call("ask", {"text": "Is this on the exam?"}))["ok"]
    finally:
        await chat.sio.disconnect()
    assert await audience.flush() > 0

    start = datetime.fromtimestamp(BASE, timezone.utc)

    def publishes(session: Any) -> None:
        session.add_all([
            BroadcastSession(event_id=event["id"], protocol="rtmp", started_at=start, ended_at=start + timedelta(seconds=70)),
            BroadcastSession(event_id=event["id"], protocol="rtmp", started_at=start + timedelta(seconds=80),
                             ended_at=start + timedelta(seconds=170)),
        ])
    app[DB].transaction(publishes)
    return event


async def test_the_audience_tab_shows_the_apis_numbers_accessibly(
        client: Any, settings: Settings, make_user: Callable[..., Account], players: Callable[[str, str], Player],
        browser: Any, tmp_path: Path) -> None:
    prof, alice, other = make_user("lecturer"), make_user("viewer", "alice"), make_user("lecturer")
    event = await _collect(client, settings, prof, alice, players)
    csrf = await login(client, prof)
    resp = await client.patch(f"/api/v1/events/{event['id']}", json={"attendance_required": True},
                              headers={"X-CSRF-Token": csrf})
    assert resp.status == 200, await resp.text()
    body = await (await client.get(f"/api/v1/events/{event['id']}/audience")).json()
    assert body["peak_viewers"] == 3 and body["viewers"]["total"] == 3  # what the players did

    base = str(client.make_url("")).rstrip("/")
    owner = await open_context(browser, base, prof)
    page, errors = await new_page(owner)
    await page.goto(f"/events/{event['slug']}")
    tab = page.locator("#audience")
    assert await tab.is_visible()
    figure = lambda name: page.inner_text(f"#audience [data-figure={name}]")  # noqa: E731
    assert await figure("viewers") == str(body["viewers"]["total"])
    assert await figure("logged_in") == str(body["viewers"]["logged_in"])
    assert await figure("peak_viewers") == str(body["peak_viewers"])
    assert await figure("average") == i18n.format_duration(body["watch_seconds"]["average"])
    assert await figure("median") == i18n.format_duration(body["watch_seconds"]["median"])
    assert await figure("chat_messages") == str(body["chat_messages"]) == "1"
    assert await figure("questions") == str(body["questions"]) == "1"

    # the viewers chart's table: one row per minute, the API's viewers; the live run's start, reconnect and end
    rows = await page.eval_on_selector_all("#chart-viewers tbody tr", "rows => rows.map(r => "
                                           "Array.from(r.children).map(c => c.textContent.trim()))")
    api_viewers = {m["minute"]: m["viewers"] for m in body["minutes"]}
    first = datetime.fromtimestamp(BASE, timezone.utc)
    expected = [str(api_viewers.get((first + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), 0))
                for i in range(len(rows))]
    assert [r[1] for r in rows] == expected and expected[:3] == ["3", "2", "1"]
    marks = [r[3] for r in rows]
    assert marks[0] == "Live run started" and "Reconnected" in marks[1] and "Live run ended" in marks[1]
    assert "Live run ended" in marks[2]
    assert await page.locator("#chart-viewers svg[role=img] path[stroke-dasharray=\"6 4\"]").count() >= 4  # the marks, drawn
    summary = await page.inner_text("#chart-viewers figcaption")
    assert "Most viewers at once: 3," in summary and "Reconnections: 1." in summary
    # each chart is named by its title and summary
    labelled = await page.get_attribute("#chart-viewers svg", "aria-labelledby")
    assert labelled == "chart-viewers-title chart-viewers-summary"
    # attendance is on: the owner gets both exports
    hrefs = await page.eval_on_selector_all("#attendance-exports a", "links => links.map(a => a.getAttribute('href'))")
    assert hrefs == [f"/api/v1/events/{event['id']}/attendance.csv", f"/api/v1/events/{event['id']}/attendance.csv?format=excel"]
    assert await page.is_visible("#attendance-notice")

    # keyboard only: Tab reaches the first data table's toggle, Enter opens it
    await page.focus("#attendance-exports a:last-child")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.matches('#chart-viewers summary')"):
            break
    assert await page.evaluate("document.activeElement.matches('#chart-viewers summary')")
    assert not await page.is_visible("#chart-viewers table")
    await page.keyboard.press("Enter")
    assert await page.is_visible("#chart-viewers table")

    problems = {"en": await axe(page, "#audience")}
    await page.locator("#chart-viewers svg").screenshot(path=tmp_path / "chart-viewers.png")
    await page.screenshot(path=tmp_path / "audience-en.png", full_page=True)
    await page.click(".language-switch button[value=fr]")
    await page.wait_for_selector("html[lang=fr]")
    assert await page.inner_text("#audience-title") == "Audience"
    assert "Le plus de spectateurs en même temps : 3," in await page.inner_text("#chart-viewers figcaption")
    problems["fr"] = await axe(page, "#audience")
    await page.locator("#chart-joins").screenshot(path=tmp_path / "chart-joins-fr.png")
    await page.screenshot(path=tmp_path / "audience-fr.png", full_page=True)
    assert problems == {"en": [], "fr": []}, problems

    # the dashboard lists the peak
    await page.goto("/dashboard")
    row = page.locator("tr", has=page.locator(f"a[href='/events/{event['slug']}']"))
    assert await row.locator("td.peak-viewers").inner_text() == str(body["peak_viewers"])
    assert errors == []

    # a viewer (or another lecturer) sees the attendance notice and no tab
    for account in (None, other):
        context = await open_context(browser, base, account)
        viewer, viewer_errors = await new_page(context)
        await viewer.goto(f"/events/{event['slug']}")
        assert await viewer.is_visible("#attendance-notice")
        assert await viewer.locator("#audience").count() == 0
        await context.close()
