"""Players on other sites: CORS preflight on live and recorded media, and hls.js playing cross-origin."""

from __future__ import annotations

from typing import Any

from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp, stop


async def test_media_preflights_are_answered_for_live_and_recordings(live: Live) -> None:
    event = await live.create_event()
    for path in (f"/live/{event['slug']}/master.m3u8", f"/live/{event['slug']}/v0/live.m3u8",
                 "/vod/1/master.m3u8", "/vod/1/v0/seg_00001.ts"):
        resp = await live.client.options(path, headers={
            "Origin": "https://lms.example.edu", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-lms-session,range",
        })
        assert resp.status == 204, (path, resp.status)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
        assert resp.headers["Access-Control-Allow-Headers"] == "x-lms-session, range"
        assert int(resp.headers["Access-Control-Max-Age"]) >= 600
    # A malformed request-header list is not mirrored: the fixed list (with Range) is the answer.
    resp = await live.client.options(f"/live/{event['slug']}/master.m3u8", headers={
        "Origin": "https://lms.example.edu", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-ok, bad header(",
    })
    assert resp.status == 204 and "Range" in resp.headers["Access-Control-Allow-Headers"].split(", ")
    assert "bad" not in resp.headers["Access-Control-Allow-Headers"]
    # Only media routes answer OPTIONS; the preflight tells nothing about the event.
    assert (await live.client.options(f"/events/{event['slug']}")).status == 405


async def test_a_player_on_another_origin_adding_a_header_plays_the_live_stream(live: Live, browser: Any) -> None:
    """The page comes from http://localhost:PORT, the media from http://127.0.0.1:PORT: two origins,
    and hls.js adds a header of its own to every request, as LMS players do (so each is preflighted)."""
    event = await live.create_event()
    pusher = await push_rtmp(live.publish_url(event), seconds=20)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
        media_origin = str(live.client.make_url("/")).rstrip("/")
        assert media_origin.startswith("http://127.0.0.1:")
        page_origin = media_origin.replace("127.0.0.1", "localhost")
        page = await browser.new_page()
        sent: list[dict[str, str]] = []
        page.on("request", lambda req: sent.append(req.headers) if "/live/" in req.url else None)
        await page.goto(f"{page_origin}/healthz")
        await page.set_content('<video id="v" muted playsinline></video>')
        await page.add_script_tag(url=f"{page_origin}/vendor/hls.min.js")
        await page.evaluate(
            """src => {
                window.failures = [];
                const hls = new Hls({ xhrSetup: xhr => xhr.setRequestHeader("X-LMS-Session", "course-42") });
                hls.on(Hls.Events.ERROR, (_e, data) => { if (data.fatal) window.failures.push(data.details); });
                hls.loadSource(src);
                hls.attachMedia(document.getElementById("v"));
                document.getElementById("v").play();
            }""",
            f"{media_origin}/live/{event['slug']}/master.m3u8",
        )
        await page.wait_for_function(
            "() => window.failures.length > 0 || document.getElementById('v').currentTime > 1.5", timeout=20_000)
        assert await page.evaluate("window.failures") == []
        assert await page.evaluate("location.origin") == page_origin
        assert any(h.get("x-lms-session") == "course-42" for h in sent)
    finally:
        await stop(pusher)
