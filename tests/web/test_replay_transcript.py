"""The replay page in Chromium: the transcript beside the video (a click on a line plays from there, the
line being spoken is highlighted while the keyboard focus stays put, the arrow keys move between lines),
``#t=SECONDS`` in the address starts there, chapters, the owner's download link; axe-core (WCAG A/AA, every
impact) finds nothing at desktop and phone sizes. Screenshots under the tmp dir (``screenshots/``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from live_server.db import DB
from live_server.models import CaptionSegment, Chapter
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (the `live` fixture)
from tests.media import FAST, push_rtmp
from tests.web.browsing import check_page, new_page, open_context

LINES = [(0.4, 1.4, "Bonjour et bienvenue"), (1.8, 2.8, "Aujourd’hui, les séries de Fourier"),
         (3.2, 4.2, "Premier exemple : le signal carré"), (4.6, 5.6, "Voilà pour aujourd’hui")]
CURRENT = "() => Array.from(document.querySelectorAll('#transcript li')).findIndex(li => li.classList.contains('current'))"


async def test_replay_page_seeks_from_the_transcript_and_follows_the_video(live: Live, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    event = await live.create_event(title="Signals, week 2")
    pusher = await push_rtmp(live.publish_url(event), frames=70, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 30) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")

    async def ready() -> Any:
        body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json()
        return next((r for r in body["recordings"] if r["state"] == "ready"), None)
    recording = await wait_for(ready, 20, "the recording")
    rid = recording["id"]

    def add(session: Any) -> None:
        session.add_all([CaptionSegment(event_id=event["id"], recording_id=rid, language="fr", start_seconds=start,
                                        end_seconds=end, text=text) for start, end, text in LINES])
        session.add(Chapter(event_id=event["id"], recording_id=rid, title="Le signal carré", offset_seconds=3.2))
    live.app[DB].transaction(add)

    base = str(live.client.make_url("")).rstrip("/")
    owner = await open_context(browser, base, live.lecturer)
    page, errors = await new_page(owner)
    await page.goto(f"/recordings/{rid}")
    await page.wait_for_function("() => document.querySelectorAll('#transcript li').length === 4")
    assert await page.get_attribute("a[download]", "href") == f"/api/v1/recordings/{rid}/download.mp4"
    assert "Le signal carré" in await page.inner_text("#replay-chapters")
    await page.wait_for_function("() => document.getElementById('replay').readyState >= 1", timeout=15_000)

    # a click on the third line plays from there; that line is highlighted, then the next as the video goes on
    third = page.locator("#transcript li:nth-child(3) button")
    await third.click()
    await page.wait_for_function("() => document.getElementById('replay').currentTime >= 3.2", timeout=10_000)
    assert await page.evaluate(CURRENT) == 2
    assert await third.get_attribute("aria-current") == "time"
    assert "current" in (await page.get_attribute("#replay-chapters li", "class") or "")
    await page.wait_for_function(f"() => ({CURRENT})() === 3", timeout=15_000)  # the video reached the last line
    assert await page.evaluate("document.activeElement.textContent.includes('Premier exemple')"), \
        "following the video must not move the keyboard focus"
    assert await page.get_attribute("#transcript li:nth-child(4) button", "aria-current") == "time"
    assert await third.get_attribute("aria-current") is None

    # the keyboard: one Tab stop in the transcript, arrows move between lines
    await page.keyboard.press("ArrowUp")
    assert await page.evaluate("document.activeElement.textContent.includes('les séries de Fourier')")
    await page.keyboard.press("End")
    assert await page.evaluate("document.activeElement.textContent.includes('Voilà')")
    assert await page.evaluate("document.querySelectorAll('#transcript button[tabindex=\"0\"]').length") == 1
    problems = await check_page(page, tmp_path / "screenshots", "replay")

    # a search hit links to #t=SECONDS: the video starts there, that line highlighted; no download for others
    viewer = await open_context(browser, base)
    visitor, visitor_errors = await new_page(viewer)
    await visitor.goto(f"/recordings/{rid}#t=2.2")
    await visitor.wait_for_function("() => { const v = document.getElementById('replay'); "
                                    "return v.readyState >= 1 && v.currentTime >= 2.1 && v.currentTime < 3; }",
                                    timeout=15_000)
    await visitor.wait_for_function(f"() => ({CURRENT})() === 1")
    assert await visitor.locator("a[download]").count() == 0
    problems.update(await check_page(visitor, tmp_path / "screenshots", "replay-visitor"))

    assert not problems, f"axe found problems: {problems}"
    assert errors == [] and visitor_errors == []
    await owner.close()
    await viewer.close()
