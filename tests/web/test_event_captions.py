"""Live captions on the event page in Chromium: espeak-ng Korean speech pushed over RTMP, recognised by
Vosk; the caption reaches the page over the chat's socket and shows over the video when the video
reaches the words, is read out through a live region (marked as Korean), and the viewer's choice to hide
captions is kept; the player lists the WebVTT rendition as captions named in its own language.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.captions.speech import Speech, captioned, ko_model, ko_registry, ko_speech, push_track, speech_track  # noqa: F401
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import stop
from tests.web.browsing import new_page, open_context

HANGUL = re.compile(r"[\uac00-\ud7a3]")
OVERLAY_TEXT = "() => document.querySelector('#caption-overlay span').textContent"


@pytest.mark.xdist_group("realtime-speech")  # live captions in real time: one at a time (tests/conftest.py)
@pytest.mark.xfail(strict=False, reason="known flake, issue 16: after the late-caption fix it still failed once "
                   "in a full parallel run (no recognised caption on the overlay within 40 s); passes alone")
async def test_live_captions_show_over_the_video_and_the_choice_is_kept(
        captioned: Live, ko_speech: Speech, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    live = captioned
    event = await live.create_event(title="강의", caption_language="ko")
    context = await open_context(browser, str(live.client.make_url("")).rstrip("/"))
    page, errors = await new_page(context)
    await page.goto(f"/events/{event['slug']}")
    await page.wait_for_function("() => document.getElementById('chat').dataset.connected === 'true'")  # the socket captions use

    # 24 s: on a busy machine the player, the packager and the recognizer may all run behind real time, and
    # the overlay shows only while the event is live; the silence after the words keeps it live meanwhile.
    pusher = await push_track(live.publish_url(event), speech_track(ko_speech, [2.0], 24.0, tmp_path))
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        await page.wait_for_function("() => document.getElementById('player').currentTime > 1", timeout=30_000)
        assert await page.get_attribute("#captions-toggle", "aria-pressed") == "true"  # on by default
        # A caption recognised late (a minute past its time on the video) is still shown long enough to read.
        await page.evaluate("""() => document.dispatchEvent(new CustomEvent('live:caption', {detail: {
            text: 'late words', start: 0, end: 1, final: true, program_date_time: Date.now() - 60000}}))""")
        assert await page.text_content("#caption-overlay span") == "late words"
        await asyncio.sleep(1.5)  # time is the subject: the shortest reading time is 2 s
        assert await page.text_content("#caption-overlay span") == "late words"
        assert await page.is_visible("#caption-overlay")
        # What the overlay showed, kept as it shows it: on a busy machine a late caption is on screen only until
        # its time plus 4 s has passed on the video, which a poll can miss.
        await page.evaluate("""() => { const overlay = document.getElementById('caption-overlay'); window.__shownTexts = [];
          const note = () => { const text = overlay.querySelector('span').textContent;
            if (text && !overlay.hidden) window.__shownTexts.push(text); };
          new MutationObserver(note).observe(overlay, {subtree: true, childList: true, characterData: true, attributes: true});
          note(); }""")
        await page.wait_for_function("() => window.__shownTexts.some(t => /[\\uac00-\\ud7a3]/.test(t))", timeout=40_000)
        assert any(HANGUL.search(text) for text in await page.evaluate("window.__shownTexts"))
        assert await page.get_attribute("#caption-overlay", "lang") == "ko"
        await page.wait_for_function("() => /[\\uac00-\\ud7a3]/.test(document.getElementById('caption-live').textContent)",
                                     timeout=15_000)  # a final caption, for screen readers
        # the master's WebVTT rendition is known, but not shown on top of the overlay
        tracks = await page.evaluate("Array.from(document.getElementById('player').textTracks).map(t => t.mode)")
        assert tracks and "showing" not in tracks, tracks
        # hls.js lists it as captions (CHARACTERISTICS), named in its own language, not "Captions (ko)"
        kinds = await page.evaluate("Array.from(document.getElementById('player').textTracks).map(t => [t.kind, t.label, t.language])")
        assert ["captions", "한국어", "ko"] in kinds, kinds
        await page.screenshot(path=tmp_path / "event-captions.png")

        await page.click("#captions-toggle")
        assert await page.get_attribute("#captions-toggle", "aria-pressed") == "false"
        assert await page.is_hidden("#caption-overlay")
    except BaseException:
        await stop(pusher)
        raise
    finally:
        await asyncio.wait_for(pusher.wait(), 30)
    again, again_errors = await new_page(context)
    await again.goto(f"/events/{event['slug']}")
    await again.wait_for_function(  # once the script has set it up (it starts hidden)
        "() => { const t = document.getElementById('captions-toggle'); return !t.hidden && t.getAttribute('aria-pressed') === 'false'; }")
    assert errors == [] and again_errors == []
    await context.close()
