"""Transcriptions in the pages: the dashboard's progress bars (with time left) and the recording page's panel,
in English and French, axe-clean (WCAG 2.0/2.1 A and AA, every impact) at desktop and phone sizes in English and at
phone size in French (the same document at either size: what a translation breaks breaks at both, and the phone is
where longer strings break layouts; tests/web/test_browser_pages.py says more), and no sideways scrolling on the
phone; the forms work."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy.orm import Session

from captions import transcription_jobs as jobs
from live_server.models import Recording, RecordingState, utcnow
from live_server.settings import Settings
from tests.web.browsing import BOTH_SIZES, PHONE_ONLY, axe_violations, open_context
from tests.web.website import Site


@pytest.fixture
def web_settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str], tmp_path: Path) -> Settings:
    # Model folders are only read when a job runs; no worker here, so the jobs stay as the test puts them.
    return make_settings(database_url=migrated_sqlite("web.db"), transcription_workers=0,
                         vosk_models={"fr": str(tmp_path / "vosk-fr"), "en": str(tmp_path / "vosk-en")})


def _recording(site: Site, owner: int, title: str) -> tuple[int, str]:
    def work(session: Session) -> tuple[int, str]:
        row = Recording(owner_id=owner, title=title, state=RecordingState.READY, media_path=f"recordings/imported/{title}",
                        duration_seconds=600.0)
        session.add(row)
        session.flush()
        return row.id, row.public_ref

    return site.db.transaction(work)


def _running(site: Site, recording_id: int, progress: float) -> None:
    started = utcnow() - timedelta(seconds=60)

    def work(session: Session) -> None:
        jobs.enqueue(session, recording_id, "fr", "import", None, started)
        claimed = jobs.claim(session, "node 1 #0", started)
        assert claimed is not None
        jobs.heartbeat(session, claimed.id, claimed.worker, progress, 600.0, utcnow())

    site.db.transaction(work)


def _failed(site: Site, recording_id: int) -> None:
    def work(session: Session) -> None:
        jobs.enqueue(session, recording_id, "en", "request", None, utcnow())
        claimed = jobs.claim(session, "node 1 #0", utcnow())
        assert claimed is not None
        jobs.fail(session, claimed, "ffmpeg could not decode the recording's sound: Invalid data", utcnow(), 1, 0.0)

    site.db.transaction(work)


async def test_progress_bars_and_the_recording_panel_pass_axe_in_both_languages(site: Site, browser: Any) -> None:
    lecturer = site.account("lecturer")
    running_id, running_ref = _recording(site, lecturer.id, "Graph theory")
    failed_id, failed_ref = _recording(site, lecturer.id, "Compilers")
    _running(site, running_id, 150.0)  # a quarter in 60 s: about 3 minutes left
    _failed(site, failed_id)

    problems: dict[str, Any] = {}
    for locale, lang, sizes in (("en-GB", "en", BOTH_SIZES), ("fr-FR", "fr", PHONE_ONLY)):
        context = await open_context(browser, str(site.client.make_url("")).rstrip("/"), lecturer,
                                     viewport=sizes[0][1], locale=locale)
        page = await context.new_page()
        for name, path in (("dashboard", "/dashboard"), ("running", f"/recordings/{running_ref}"),
                           ("failed", f"/recordings/{failed_ref}")):
            response = await page.goto(path)
            assert response is not None and response.status == 200
            assert await page.get_attribute("html", "lang") == lang
            for size, viewport in sizes:
                if page.viewport_size != viewport:
                    await page.set_viewport_size(viewport)
                found = await axe_violations(page)
                if found:
                    problems[f"{name}-{size}-{lang}"] = found
                if size == "phone":
                    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    if overflow > 1:
                        problems[f"{name}-{size}-{lang}-overflow"] = f"scrolls sideways by {overflow}px"
            if name in ("dashboard", "running"):
                bar = page.locator("progress")
                assert await bar.count() == 1 and await bar.get_attribute("value") == "25"
                label = await page.evaluate("document.querySelector('progress').labels[0].textContent")
                assert ("Transcription in French" if lang == "en" else "Transcription en français") in label
                text = await page.locator(".transcription-progress").inner_text()
                left = re.search(r"(\d+):(\d\d)", text)
                # A quarter done at least 60 s after the start: three times as long to go, or more.
                assert re.search(r"25\s*%", text) and left and 180 <= int(left[1]) * 60 + int(left[2]) < 900, text
            if name == "failed":
                assert "Invalid data" in await page.locator("#transcription").inner_text()
                assert await page.locator("#transcription-language").input_value() == "en"  # the last language tried
        await context.close()
    assert not problems, problems


async def test_the_page_forms_request_and_cancel(site: Site) -> None:
    lecturer = site.account("lecturer")
    recording_id, ref = _recording(site, lecturer.id, "Databases")
    await site.log_in(lecturer)
    resp = await site.submit(f"/recordings/{ref}", f"/recordings/{ref}/transcription", {"language": "fr"})
    assert resp.status == 303 and resp.headers["Location"].endswith("#transcription")
    page = await (await site.client.get("/dashboard")).text()
    assert "Databases" in page and "Waiting for a free transcription worker." in page
    resp = await site.submit("/dashboard", f"/recordings/{ref}/transcription/cancel", {"next": "dashboard"})
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard#transcriptions"
    job = site.db.transaction(lambda s: jobs.latest_job(s, recording_id))
    assert job is not None and job.state.value == "cancelled" and job.requested_by_id == lecturer.id
    assert "Databases" not in await (await site.client.get("/dashboard")).text()  # nothing left to follow
    resp = await site.client.post(f"/recordings/{ref}/transcription", data={"language": "fr"}, allow_redirects=False)
    assert resp.status == 403  # no CSRF field

    other = site.account("lecturer")
    await site.log_in(other)
    assert 'id="transcription"' not in await (await site.client.get(f"/recordings/{ref}")).text()
    resp = await site.submit("/dashboard", f"/recordings/{ref}/transcription", {"language": "fr"})
    assert resp.status == 404


async def test_the_dashboard_follows_a_running_job_until_it_ends(site: Site, browser: Any) -> None:
    """The bar moves as the worker saves its progress, and the end is announced once (polls every 5 s)."""
    lecturer = site.account("lecturer")
    recording_id, _ = _recording(site, lecturer.id, "Networks")
    _running(site, recording_id, 150.0)
    context = await open_context(browser, str(site.client.make_url("")).rstrip("/"), lecturer)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/dashboard")
    assert await page.locator("progress").get_attribute("value") == "25"

    def worker_saves(session: Session) -> None:
        job = jobs.latest_job(session, recording_id)
        assert job is not None and job.worker is not None
        jobs.heartbeat(session, job.id, job.worker, 450.0, 600.0, utcnow())

    site.db.transaction(worker_saves)
    await page.wait_for_function("() => document.querySelector('progress').value === 75", timeout=12_000)
    assert re.search(r"75\s*%", await page.locator(".transcription-left").inner_text())
    site.db.transaction(lambda s: jobs.cancel(s, recording_id, utcnow()))
    await page.wait_for_function("() => document.getElementById('transcriptions-status').textContent.length > 0",
                                 timeout=12_000)
    assert await page.locator("#transcriptions-status").inner_text() == "The transcription of Networks was cancelled."
    assert await page.locator("progress").count() == 0 and await page.locator("#transcriptions form").count() == 0
    assert errors == []
    await context.close()
