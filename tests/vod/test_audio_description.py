"""Audio description end to end: real ffmpeg and espeak-ng over an imported recording, served as an alternate
HLS audio rendition; its loudness measured with ffmpeg's astats, window by window."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ingest.live import Live, live, wait_for  # noqa: F401 (fixture)
from tests.vod.describing import (
    DESCRIPTIONS, SECONDS, SHORT, assert_described, describe, durations, imported, levels, settled, tone_audio,
    pick_description_with_keyboard,
)

pytestmark = [pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make system-deps)"),
              pytest.mark.live_settings(import_segment_seconds=2.0)]

async def test_described_rendition_is_listed_aligned_louder_where_spoken_and_ducks_the_programme(live: Live, tmp_path: Path) -> None:
    recording = await imported(live, tmp_path)
    rid = recording["id"]
    asked = time.monotonic()
    resp = await describe(live, rid)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["state"] == "pending"
    track = await settled(live, rid)
    print(f"an {SECONDS} s recording with two descriptions described in {time.monotonic() - asked:.1f} s")
    assert track["state"] == "ready", track
    assert track["cues"] == 2 and track["source"] == "descriptions"

    master = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    audio = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(audio) == 2, master
    original = next(line for line in audio if "DEFAULT=YES" in line)
    described = next(line for line in audio if "DEFAULT=NO" in line)
    assert "URI=" not in original  # the programme's sound is the one muxed in the variant
    assert 'CHARACTERISTICS="public.accessibility.describes-video"' in described and 'LANGUAGE="en"' in described
    assert 'AUTOSELECT=YES' in described and 'URI="ad-en.m3u8"' in described
    assert all('AUDIO="aud"' in line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))

    view = await (await live.client.get(f"/vod/{rid}/vod.m3u8")).text()
    rendition = await (await live.client.get(track["playlist_url"])).text()
    assert durations(rendition) == durations(view) and len(durations(view)) >= 3

    # Each audio segment starts where its video segment starts (within an AAC frame, 23 ms).
    folder = live.settings.media_dir / "recordings" / "imported" / str(rid)
    video_segments = [folder / name for name in re.findall(r"^(seg_\d+\.ts)$", view, re.M)]
    audio_segments = []
    for name in re.findall(r"^(ad-.+\.ts)$", rendition, re.M):
        got = await live.client.get(f"/vod/{rid}/{name}")
        assert got.status == 200 and got.headers["Content-Type"] == "video/mp2t"
        audio_segments.append(tmp_path / name)
        audio_segments[-1].write_bytes(await got.read())
    import av
    for video_segment, audio_segment in zip(video_segments, audio_segments):
        with av.open(str(video_segment)) as v, av.open(str(audio_segment)) as a:
            video_start = float(v.streams.video[0].start_time * v.streams.video[0].time_base)
            audio_start = float(a.streams.audio[0].start_time * a.streams.audio[0].time_base)
            assert abs(audio_start - video_start) < 0.05, (video_segment.name, video_start, audio_start)

    # Loudness, window by window, on the video's clock (t = 0 at the first video frame).
    with av.open(str(video_segments[0])) as v:
        zero = float(v.streams.video[0].start_time * v.streams.video[0].time_base)
    shift = lambda series: [(t - zero, v) for t, v in series]  # noqa: E731
    before_all, after_all = shift(levels(video_segments, False)), shift(levels(audio_segments, False))
    before_tone, after_tone = shift(levels(video_segments, True)), shift(levels(audio_segments, True))
    assert_described(before_all, after_all, before_tone, after_tone, "description")

    # A trim: the rendition follows the view (the same segments, a cut one no longer served).
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"trim_start": 2.5}, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200, await resp.text()
    trimmed_view = await (await live.client.get(f"/vod/{rid}/vod.m3u8")).text()
    trimmed_rendition = await (await live.client.get(track["playlist_url"])).text()
    assert durations(trimmed_rendition) == durations(trimmed_view) and len(durations(trimmed_view)) < len(durations(view))
    cut = audio_segments[0].name
    assert cut not in trimmed_rendition and (await live.client.get(f"/vod/{rid}/{cut}")).status == 404


async def test_refusals_are_clear_and_leave_nothing_behind(live: Live, tmp_path: Path) -> None:
    recording = await imported(live, tmp_path, seconds=4)
    rid = recording["id"]
    resp = await describe(live, rid, descriptions=None, audio=tone_audio(tmp_path / "short.m4a", 1.0))
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == ("the audio lasts 1.0 s and the recording 4.0 s: "
                                                       "they may differ by 2.0 s at most")
    resp = await describe(live, rid, descriptions="WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\n00:00:02.5 -> 3\nbroken\n")
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == ("descriptions: line 7: a cue needs a timing line "
                                                       "(00:00:01.000 --> 00:00:04.000)")
    resp = await describe(live, rid, descriptions="WEBVTT\n\n00:00:09.000 --> 00:00:10.000\nafter the end\n")
    assert resp.status == 422 and "line 3: the cue starts at 9.000 s" in (await resp.json())["error"]["message"]
    resp = await describe(live, rid, language="xx", descriptions=SHORT)
    assert resp.status == 422 and "no voice for 'xx'" in (await resp.json())["error"]["message"]
    resp = await describe(live, rid, language="../fr", descriptions=SHORT)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "bad_language"
    resp = await describe(live, rid, descriptions=SHORT, audio=tone_audio(tmp_path / "both.m4a", 4.0))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "one_source"
    resp = await describe(live, rid, descriptions=None)  # a form without a file is not even multipart
    assert resp.status == 400
    body = await (await live.client.get(f"/api/v1/recordings/{rid}/audio-description")).json()
    assert body["tracks"] == [] and {"en", "fr"} <= set(body["voices"])
    assert list((live.settings.media_dir / "imports").iterdir()) == []  # refused uploads are not kept
    assert "TYPE=AUDIO" not in await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()

    # The page's forms without scripts: a multipart post with the CSRF field (read by the request pipeline).
    form = aiohttp.FormData()
    form.add_field("csrf_token", live.csrf)
    form.add_field("language", "fr")
    form.add_field("descriptions", SHORT.encode(), filename="descriptions.vtt", content_type="text/vtt")
    form.add_field("file", b"", filename="", content_type="application/octet-stream")  # the audio input left empty
    resp = await live.client.post(f"/recordings/{rid}/audio-description", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/recordings/{rid}#audio-description"
    assert (await settled(live, rid, "fr"))["state"] == "ready"
    resp = await live.client.post(f"/recordings/{rid}/audio-description/delete", data={"csrf_token": live.csrf, "language": "fr"},
                                  allow_redirects=False)
    assert resp.status == 303
    assert (await (await live.client.get(f"/api/v1/recordings/{rid}/audio-description")).json())["tracks"] == []
    resp = await live.client.post(f"/recordings/{rid}/audio-description/delete", data={"language": "fr"}, allow_redirects=False)
    assert resp.status == 403  # no CSRF field

    # Only its managers see or change a recording's descriptions; others get the 404 of a missing recording.
    from live_server import accounts
    from live_server.db import DB
    from tests.support import Account, login
    other = live.app[DB].transaction(lambda s: accounts.create_user(s, "other", "other-password", "lecturer"))
    async with aiohttp.ClientSession(base_url=str(live.client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)) as them:
        csrf = await login(them, Account(other.id, "other", "other-password", "lecturer"))
        assert (await them.get(f"/api/v1/recordings/{rid}/audio-description")).status == 404
        form = aiohttp.FormData()
        form.add_field("language", "en")
        form.add_field("descriptions", DESCRIPTIONS.encode(), filename="d.vtt")
        resp = await them.post(f"/api/v1/recordings/{rid}/audio-description", data=form, headers={"X-CSRF-Token": csrf})
        assert resp.status == 404
    async with aiohttp.ClientSession(base_url=str(live.client.make_url("/"))) as anonymous:
        assert (await anonymous.get(f"/api/v1/recordings/{rid}/audio-description")).status == 401


async def test_private_recordings_description_follows_its_access_and_goes_with_it(live: Live, tmp_path: Path) -> None:
    recording = await imported(live, tmp_path, visibility="authenticated", seconds=4)
    rid = recording["id"]
    folder = live.settings.media_dir / "recordings" / "imported" / str(rid)
    # An uploaded, already mixed track of the recording's length (within the tolerance).
    resp = await describe(live, rid, language="fr", descriptions=None, audio=tone_audio(tmp_path / "described.m4a", 4.5))
    assert resp.status == 202, await resp.text()
    track = await settled(live, rid, "fr")
    assert track["state"] == "ready" and track["source"] == "upload", track
    rendition = await (await live.client.get(track["playlist_url"])).text()
    segment = re.findall(r"^(ad-fr_.+\.ts)$", rendition, re.M)[0]
    assert (await live.client.get(f"/vod/{rid}/{segment}")).status == 200
    async with aiohttp.ClientSession(base_url=str(live.client.make_url("/"))) as anonymous:
        for name in ("master.m3u8", "ad-fr.m3u8", segment):
            assert (await anonymous.get(f"/vod/{rid}/{name}")).status == 403, name

    # Removing the description takes its rendition out of the master and its files off the disk.
    resp = await live.client.delete(f"/api/v1/recordings/{rid}/audio-description?language=fr",
                                    headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200 and (await resp.json()) == {"removed": 1}
    assert "TYPE=AUDIO" not in await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    assert (await live.client.get(f"/vod/{rid}/ad-fr.m3u8")).status == 404
    assert (await live.client.get(f"/vod/{rid}/{segment}")).status == 404
    assert not list(folder.glob("ad-*"))

    # Made again, then the recording deleted: nothing of it is served or left on disk.
    resp = await describe(live, rid, language="fr", descriptions=SHORT)
    assert resp.status == 202
    track = await settled(live, rid, "fr")
    assert track["state"] == "ready", track
    rendition = await (await live.client.get(track["playlist_url"])).text()
    segment = re.findall(r"^(ad-fr_.+\.ts)$", rendition, re.M)[0]
    assert (await live.client.get(f"/vod/{rid}/{segment}")).status == 200
    resp = await live.client.delete(f"/api/v1/recordings/{rid}", headers={"X-CSRF-Token": live.csrf})
    assert resp.status in (200, 204), await resp.text()
    for name in ("ad-fr.m3u8", segment):
        assert (await live.client.get(f"/vod/{rid}/{name}")).status == 404
    assert not folder.exists()
    assert (await live.client.get(f"/api/v1/recordings/{rid}/audio-description")).status == 404


async def test_players_offer_the_described_sound_and_switch_to_it_with_the_keyboard(live: Live, browser: Any,
                                                                                     tmp_path: Path) -> None:
    from tests.web.browsing import check_page, new_page, open_context

    recording = await imported(live, tmp_path)
    rid = recording["id"]
    base = str(live.client.make_url("/"))

    # The lecturer, on the replay page in French, sends the descriptions with the page's form: a broken file is
    # refused with its line (the message takes the focus), a good one becomes the English track.
    context = await open_context(browser, base, live.lecturer, locale="fr-FR")
    page, errors = await new_page(context)
    await page.goto(f"/recordings/{rid}")
    (tmp_path / "broken.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\n00:00:02.5 -> 3\nbroken\n")
    (tmp_path / "short.vtt").write_text(SHORT)
    await page.select_option("#audio-description-language", "en")
    await page.set_input_files("#audio-description-text", str(tmp_path / "broken.vtt"))
    await page.focus("#audio-description-form button[type=submit]")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#audio-description-error:not([hidden])")
    assert await page.evaluate("document.activeElement.id") == "audio-description-error"
    assert await page.inner_text("#audio-description-error") == (
        "L’audiodescription n’a pas été acceptée : descriptions: line 7: a cue needs a timing line "
        "(00:00:01.000 --> 00:00:04.000)")
    await page.set_input_files("#audio-description-text", str(tmp_path / "short.vtt"))
    await page.focus("#audio-description-form button[type=submit]")
    async with page.expect_navigation():  # accepted: the page reloads, showing the track being made
        await page.keyboard.press("Enter")
    assert (await settled(live, rid))["state"] == "ready"

    await context.close()

    # The sound menu lists hls.js's two audio tracks, labelled. (A fresh profile: the reloaded page's player
    # fetched the master before the track was ready, and browsers may keep a playlist for its max-age, 5 s.)
    context = await open_context(browser, base, live.lecturer, locale="fr-FR")
    page, errors = await new_page(context)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"/recordings/{rid}")
    await page.wait_for_selector("#audio-tracks:not([hidden])", timeout=20_000)
    assert await page.inner_text("label[for=audio-track]") == "Son"
    options = await page.eval_on_selector_all("#audio-track option", "os => os.map(o => o.textContent)")
    assert options == ["Son original", "Audiodescription (anglais)"]
    assert "Anglais : prête, proposée dans le menu Son du lecteur" in " ".join((await page.inner_text("#audio-description")).split())

    # Keyboard only: Tab reaches the menu, an arrow picks the description; hls.js then loads its segments.
    await page.evaluate("() => { const v = document.getElementById('replay'); v.muted = true; v.play(); }")
    await pick_description_with_keyboard(page)
    await wait_for(lambda: _async(any(re.search(r"/ad-en_\d+_seg_\d+\.ts$", url) for url in requested)), 20,
                   "hls.js to load the described sound")
    await page.wait_for_function("() => document.getElementById('replay').currentTime > 1", timeout=20_000)
    assert await page.evaluate("localStorage.getItem('audio-description')") == "en"
    found = await check_page(page, tmp_path / "screenshots", "replay-audio-description")
    assert found == {}, found
    assert errors == []
    await context.close()

    # The embed (what an LMS shows), for a student who chose the description before: it is picked again.
    context = await open_context(browser, base)
    page, errors = await new_page(context)
    await page.goto(f"/recordings/{rid}")  # any page of the site, to reach its localStorage
    await page.evaluate("localStorage.setItem('audio-description', 'en')")
    await page.goto(f"/embed/recordings/{rid}")
    await page.click("#player")  # preload=none: the player starts on demand
    await page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; v.play(); }")
    await page.wait_for_selector("#audio-tracks:not([hidden])", timeout=20_000)
    options = await page.eval_on_selector_all("#audio-track option", "os => os.map(o => o.textContent)")
    assert options == ["Original sound", "Audio description (English)"]
    await page.wait_for_function("document.getElementById('audio-track').value === '1'")
    found = await check_page(page, tmp_path / "screenshots", "embed-audio-description")
    assert found == {}, found
    assert errors == []
    await context.close()


async def _async(value: Any) -> Any:
    return value


async def test_a_track_left_pending_by_a_stopped_server_is_marked_failed_at_start(live: Live) -> None:
    from live_server.db import DB
    from live_server.models import AudioDescription, AudioDescriptionState, Recording, RecordingState
    from vod.audio_descriptions import AudioDescriptions

    db = live.app[DB]

    def pending(session: Any) -> int:
        recording = Recording(owner_id=live.lecturer.id, title="Old", state=RecordingState.READY, media_path="recordings/x")
        session.add(recording)
        session.flush()
        session.add(AudioDescription(recording_id=recording.id, language="fr", source="descriptions", cues=3))
        return recording.id

    rid = db.transaction(pending)
    await AudioDescriptions(db, live.settings.media_dir, "ffmpeg").start()  # what a restarted process does first
    body = await (await live.client.get(f"/api/v1/recordings/{rid}/audio-description")).json()
    assert [(t["state"], t["error"]) for t in body["tracks"]] == [("failed", "interrupted by a server restart; ask again")]
    assert db.transaction(lambda s: s.get(AudioDescription, 1).state) == AudioDescriptionState.FAILED


async def test_a_stored_descriptions_track_is_spoken_in_its_language(live: Live, tmp_path: Path) -> None:
    """The text track a lecturer uploaded (kind descriptions) is the source: its published cues are spoken."""
    recording = await imported(live, tmp_path)
    rid, headers = recording["id"], {"X-CSRF-Token": live.csrf}
    made = {}
    for kind in ("descriptions", "subtitles"):
        form = aiohttp.FormData()
        form.add_field("file", SHORT.encode(), filename=f"{kind}.vtt", content_type="text/vtt")
        form.add_field("language", "en")
        form.add_field("kind", kind)
        resp = await live.client.post(f"/api/v1/recordings/{rid}/tracks", data=form, headers=headers)
        assert resp.status == 201, await resp.text()
        made[kind] = (await resp.json())["id"]

    async def from_track(track: Any, *extra: tuple[str, str]) -> aiohttp.ClientResponse:
        form = aiohttp.FormData(default_to_multipart=True)  # the API's one format, even without a file
        form.add_field("track", str(track))
        for name, value in extra:
            form.add_field(name, value)
        return await live.client.post(f"/api/v1/recordings/{rid}/audio-description", data=form, headers=headers)

    refused = await from_track(made["subtitles"])
    assert refused.status == 422 and "kind descriptions" in (await refused.json())["error"]["message"]
    assert (await from_track(987654)).status == 404
    both = await from_track(made["descriptions"], ("descriptions", SHORT))
    assert both.status == 422 and (await both.json())["error"]["code"] == "one_source"

    resp = await from_track(made["descriptions"])  # no language sent: the track's
    assert resp.status == 202, await resp.text()
    track = await settled(live, rid, "en")
    assert track["state"] == "ready", track
    master = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    assert 'TYPE=AUDIO' in master and 'LANGUAGE="en"' in master and "public.accessibility.describes-video" in master
