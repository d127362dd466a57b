"""A recording's text tracks end to end: a French SRT with an error is refused line by line and nothing is
saved; a valid one becomes a second SUBTITLES rendition of the master (with its own playlist and WebVTT
segments mapped to the video's clock), a <track> in the replay page's player menu (and hls.js lists it
from the master), searchable in French only; a private recording's tracks need the same access as its video.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from formats import webvtt
from formats.m3u8 import parse_media_playlist, parse_media_tags
from formats.mpegts import first_pts
from live_server.db import DB
from live_server.models import CaptionSegment, CaptionTrack, CaptionTrackVersion, Recording
from tests.ingest.live import Live, event_state_is, live, wait_for  # noqa: F401  (the `live` fixture)
from tests.media import FAST, push_rtmp
from tests.web.browsing import check_page, new_page, open_context
from vod.tracks import ensure_automatic

BROKEN_SRT = ("1\n00:00:00,200 --> 00:00:01,500\nBonjour à tous\n\n"
              "2\n00:00:01,800 --> 00:00:0x,000\nLa leçon commence\n\n"  # line 6: a typo in the end time
              "3\n00:00:03,000 --> 00:00:02,000\nFin\n")  # line 10: ends before it starts
VALID_SRT = ("1\n00:00:00,200 --> 00:00:01,500\n<i>Bonjour</i> à tous\n\n"
             "2\n00:00:01,800 --> 00:00:02,600\nLa leçon d’aujourd’hui : les ondelettes\n\n"
             "3\n00:00:03,000 --> 00:00:03,800\nFin de l’introduction\n")
AUTOMATIC = [(0.2, 1.5, "Hello everyone"), (1.8, 2.6, "Today we study filterbanks")]


async def _recording(live: Live, **event_fields: Any) -> dict[str, Any]:  # noqa: F811
    event = await live.create_event(title="Wavelets", **event_fields)
    pusher = await push_rtmp(live.publish_url(event), frames=50, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 30) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")

    async def ready() -> Any:
        body = await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json()
        return next((r for r in body["recordings"] if r["state"] == "ready"), None)
    recording: dict[str, Any] = await wait_for(ready, 20, "the recording")
    def automatic_captions(session: Any) -> None:  # as a recording finished with its live captions has them
        session.add_all([CaptionSegment(event_id=event["id"], recording_id=recording["id"], language="en",
                                        start_seconds=start, end_seconds=end, text=text) for start, end, text in AUTOMATIC])
        session.flush()
        ensure_automatic(session, session.get(Recording, recording["id"]))
    live.app[DB].transaction(automatic_captions)
    return recording


def _form(content: str, filename: str, language: str = "fr", kind: str = "subtitles") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("language", language)
    form.add_field("kind", kind)
    form.add_field("file", content.encode("utf-8"), filename=filename, content_type="application/x-subrip")
    return form


def _counts(live: Live, recording_id: int) -> tuple[int, int, int]:  # noqa: F811
    def work(session: Any) -> tuple[int, int, int]:
        tracks = session.scalar(select(func.count()).select_from(CaptionTrack).where(CaptionTrack.recording_id == recording_id))
        versions = session.scalar(select(func.count()).select_from(CaptionTrackVersion).join(
            CaptionTrack, CaptionTrack.id == CaptionTrackVersion.track_id).where(CaptionTrack.recording_id == recording_id))
        rows = session.scalar(select(func.count()).select_from(CaptionSegment).where(CaptionSegment.track_id.is_not(None)))
        return int(tracks), int(versions), int(rows)
    return live.app[DB].transaction(work)


@pytest.mark.live_settings(subtitle_max_bytes=2048)
async def test_tracks_api_master_playlist_search_and_access(live: Live, aiohttp_client: Any) -> None:  # noqa: F811
    recording = await _recording(live)
    rid, api, csrf = recording["id"], f"/api/v1/recordings/{recording['id']}", {"X-CSRF-Token": live.csrf}

    # a broken French SRT: 422 with each problem's line, and nothing saved
    resp = await live.client.post(f"{api}/tracks", data=_form(BROKEN_SRT, "cours.srt"), headers=csrf)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_subtitles"
    assert [(p["line"], p["code"]) for p in error["details"]["problems"]] == [(6, "bad_end"), (10, "ends_before_start")]
    assert "line 6: bad end time '00:00:0x,000'" in error["message"]
    listed = await (await live.client.get(f"{api}/tracks")).json()
    assert [(t["language"], t["origin"]) for t in listed["tracks"]] == [("en", "live")]  # the automatic track only
    assert _counts(live, rid) == (1, 0, 0)
    # an unknown language tag and a file over the size limit are refused the same way
    resp = await live.client.post(f"{api}/tracks", data=_form(VALID_SRT, "cours.srt", language="fr_FR!"), headers=csrf)
    assert resp.status == 422 and "language" in (await resp.json())["error"]["details"]["fields"]
    resp = await live.client.post(f"{api}/tracks", data=_form(VALID_SRT * 20, "long.srt"), headers=csrf)
    assert resp.status == 413
    assert _counts(live, rid) == (1, 0, 0)

    # the valid file: a second track, version 1 published and indexed
    resp = await live.client.post(f"{api}/tracks", data=_form(VALID_SRT, "cours.srt"), headers=csrf)
    assert resp.status == 201, await resp.text()
    track = await resp.json()
    assert (track["language"], track["kind"], track["name"], track["cues"], track["default"]) == ("fr", "subtitles", "Français", 3, False)
    assert _counts(live, rid) == (2, 1, 3)
    vtt = await (await live.client.get(f"{api}/tracks/{track['id']}.vtt")).text()
    assert [c.text for c in webvtt.parse(vtt)[1]] == ["Bonjour à tous", "La leçon d’aujourd’hui : les ondelettes",
                                                      "Fin de l’introduction"]

    # the master: one SUBTITLES rendition per track, at most one DEFAULT, the variant in their group
    master = await (await live.client.get(f"/vod/{rid}/master.m3u8")).text()
    media = parse_media_tags(master)
    assert [(m["TYPE"], m["LANGUAGE"], m["NAME"], m["DEFAULT"], m["AUTOSELECT"]) for m in media] == [
        ("SUBTITLES", "en", "English", "YES", "YES"), ("SUBTITLES", "fr", "Français", "NO", "YES")]
    assert "FORCED" not in master and len({m["GROUP-ID"] for m in media}) == 1
    assert f'SUBTITLES="{media[0]["GROUP-ID"]}"' in next(line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    french = media[1]["URI"]
    playlist = parse_media_playlist(await (await live.client.get(f"/vod/{rid}/{french}")).text()).playlist
    view = parse_media_playlist(await (await live.client.get(f"/vod/{rid}/vod.m3u8")).text()).playlist
    assert [s.duration for s in playlist.segments] == [s.duration for s in view.segments]
    assert all(s.uri.endswith(".vtt") for s in playlist.segments)
    folder = french.rsplit("/", 1)[0]
    segment = await (await live.client.get(f"/vod/{rid}/{folder}/{playlist.segments[0].uri}")).text()
    tsmap, cues = webvtt.parse(segment)
    assert [c.text for c in cues] == ["Bonjour à tous"]  # only what overlaps the first segment
    if not live.settings.ll_hls:  # the map ties LOCAL to the video's own PTS at that moment
        head = (live.settings.media_dir / recording["media_path"] / view.segments[0].uri).read_bytes()
        assert tsmap is not None and tsmap.local == 1.0 and tsmap.mpegts == first_pts(head) + 90_000

    # search per language: the French word in French, not in English
    found = await (await live.client.get("/api/v1/search", params={"q": "ondelettes", "language": "fr"})).json()
    assert [(r["recording"]["id"], [m["language"] for m in r["matches"]]) for r in found["results"]] == [(rid, ["fr"])]
    found = await (await live.client.get("/api/v1/search", params={"q": "ondelettes", "language": "en"})).json()
    assert found["results"] == []
    found = await (await live.client.get("/api/v1/search", params={"q": "filterbanks", "language": "en"})).json()
    assert [r["recording"]["id"] for r in found["results"]] == [rid]

    # the search page: a language filter, and each excerpt marked with its language
    page = await (await live.client.get("/search", params={"q": "ondelettes", "language": "fr"})).text()
    assert 'name="language"' in page and '<span lang="fr">La leçon d’aujourd’hui : les ondelettes</span>' in page
    page = await (await live.client.get("/search", params={"q": "ondelettes", "language": "en"})).text()
    assert "les ondelettes" not in page

    # an uploaded track has versions too: a correction is published and searchable, version 1 comes back
    versions = f"{api}/tracks/{track['id']}/versions"
    cues = (await (await live.client.get(f"{api}/tracks/{track['id']}/cues")).json())["cues"]
    cues[1][2] = "La leçon d’aujourd’hui : les spectrogrammes"
    resp = await live.client.post(versions, json={"cues": cues}, headers=csrf)
    assert resp.status == 201 and (await resp.json())["published"] == 2
    found = await (await live.client.get("/api/v1/search", params={"q": "spectrogrammes", "language": "fr"})).json()
    assert [r["recording"]["id"] for r in found["results"]] == [rid]
    assert (await live.client.post(f"{versions}/1/publish", headers=csrf)).status == 200
    found = await (await live.client.get("/api/v1/search", params={"q": "spectrogrammes"})).json()
    assert found["results"] == []
    assert (await live.client.post(f"{versions}/7/publish", headers=csrf)).status == 404

    # private: the tracks and their renditions follow the recording's access rule
    resp = await live.client.patch(api, json={"visibility": "authenticated"}, headers=csrf)
    assert resp.status == 200, await resp.text()
    anonymous = await aiohttp_client(live.app)
    assert (await anonymous.get(f"/vod/{rid}/{french}")).status == 403
    assert (await anonymous.get(f"/vod/{rid}/{folder}/0.vtt")).status == 403
    assert (await anonymous.get(f"{api}/tracks/{track['id']}.vtt")).status == 404
    assert (await anonymous.get(f"{api}/tracks")).status == 404
    assert (await live.client.get(f"/vod/{rid}/{french}")).status == 200  # the owner's login opens them

    # others may not add or delete a track; the owner deletes the uploaded one (the automatic one stays)
    assert (await anonymous.post(f"{api}/tracks", data=_form(VALID_SRT, "x.srt"))).status in (401, 403)
    assert (await live.client.delete(f"{api}/tracks/{listed['tracks'][0]['id']}", headers=csrf)).status == 409
    assert (await live.client.delete(f"{api}/tracks/{track['id']}", headers=csrf)).status == 204
    assert _counts(live, rid) == (1, 0, 0)
    assert len(parse_media_tags(await (await live.client.get(f"/vod/{rid}/master.m3u8")).text())) == 1


HLS_TRACKS = """async (src) => {
  const hls = new Hls();
  const video = document.createElement('video');
  const listed = new Promise(resolve => hls.on(Hls.Events.MANIFEST_PARSED, () => resolve()));
  hls.loadSource(src);
  hls.attachMedia(video);
  await listed;
  const tracks = hls.subtitleTracks.map(t => [t.lang, t.name, t.default]);
  hls.destroy();
  return tracks;
}"""


# A stock hls.js plays the master and shows the French rendition: where it places the cues says whether each
# WebVTT segment's X-TIMESTAMP-MAP ties cue time to the video's clock.
HLS_CUES = """async (src) => {
  const hls = new Hls();
  const video = document.createElement('video');
  video.muted = true;
  const listed = new Promise(resolve => hls.on(Hls.Events.MANIFEST_PARSED, () => resolve()));
  hls.loadSource(src);
  hls.attachMedia(video);
  await listed;
  hls.subtitleTrack = hls.subtitleTracks.findIndex(t => t.lang === 'fr');
  hls.subtitleDisplay = true;
  video.play().catch(() => {});
  let cues = [];
  for (let i = 0; i < 150 && cues.length < 2; i++) {
    await new Promise(r => setTimeout(r, 100));
    const track = [...video.textTracks].find(t => t.language === 'fr');
    cues = track && track.cues ? [...track.cues].map(c => [Math.round(c.startTime * 100) / 100, c.text]) : [];
  }
  hls.destroy();
  return cues;
}"""


async def test_replay_page_upload_form_and_player_menu(live: Live, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    recording = await _recording(live)
    rid = recording["id"]
    broken, valid = tmp_path / "cours.srt", tmp_path / "cours-valide.srt"
    broken.write_text(BROKEN_SRT, encoding="utf-8")
    valid.write_text(VALID_SRT, encoding="utf-8")
    base = str(live.client.make_url("")).rstrip("/")
    problems: dict[str, Any] = {}
    for locale, words in (("en-GB", ("Line 6", "Add the track", "The track was added.")),
                          ("fr-FR", ("Ligne 6", "Ajouter la piste", "La piste a été ajoutée."))):
        owner = await open_context(browser, base, live.lecturer, locale=locale)
        page, errors = await new_page(owner)
        await page.goto(f"/recordings/{rid}")
        if locale == "en-GB":
            # the broken file, with the keyboard only: refused (422), the summary focused, each problem by line
            await page.set_input_files("#track-file", str(broken))
            await page.focus("#track-language")
            await page.keyboard.type("fr")
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#error-summary")
            assert await page.evaluate("document.activeElement.id") == "error-summary"
            assert (await page.title()).startswith("Error:")
            text = await page.inner_text("#file-problems")
            assert words[0] in text and "00:00:0x,000" in text and "Line 10" in text
            assert _counts(live, rid) == (1, 0, 0)
            problems.update(await check_page(page, tmp_path / "shots", "tracks-refused-en"))
            # a file over subtitle_max_bytes (512 KiB): said in words, nothing saved
            big = tmp_path / "big.srt"
            big.write_text(VALID_SRT * 3000, encoding="utf-8")
            assert big.stat().st_size > 512 * 1024
            await page.set_input_files("#track-file", str(big))
            await page.focus("#track-language")
            await page.keyboard.press("Enter")
            await page.wait_for_function("() => document.activeElement.id === 'error-summary'")
            assert "at most 512 KiB" in await page.inner_text("#error-summary")
            assert _counts(live, rid) == (1, 0, 0)
            await page.set_input_files("#track-file", str(valid))
            assert await page.input_value("#track-language") == "fr"  # kept from the refused form
            await page.focus("#track-file")
            await page.keyboard.press("Tab")
            await page.keyboard.press("Enter")  # the language field: submits the form
            await page.wait_for_selector("#tracks [role=status]")
            assert words[2] in await page.inner_text("#tracks [role=status]")
        else:
            assert words[1] in await page.inner_text("#tracks")
        # the player's menu: both tracks, the French one with its language; hls.js lists both from the master
        menu = await page.evaluate("""() => [...document.getElementById('replay').textTracks]
            .filter(t => t.kind !== 'chapters').map(t => [t.language, t.kind, t.label])""")
        assert [m[:2] for m in menu] == [["en", "captions"], ["fr", "subtitles"]], menu
        assert menu[1][2] == ("French (subtitles)" if locale == "en-GB" else "Français (sous-titres)")
        await page.wait_for_function("() => window.Hls !== undefined")
        assert await page.evaluate(HLS_TRACKS, f"/vod/{rid}/master.m3u8") == [["en", "English", True], ["fr", "Français", False]]
        if locale == "en-GB":
            placed = await page.evaluate(HLS_CUES, f"/vod/{rid}/master.m3u8")
            assert [text for _, text in placed[:2]] == ["Bonjour à tous", "La leçon d’aujourd’hui : les ondelettes"], placed
            assert abs(placed[0][0] - 0.2) < 0.1 and abs(placed[1][0] - 1.8) < 0.1, placed
        problems.update(await check_page(page, tmp_path / "shots", f"tracks-{locale}"))
        assert errors == []
        await owner.close()

    # the embed shows the same tracks
    viewer = await open_context(browser, base)
    embed, embed_errors = await new_page(viewer)
    await embed.goto(f"/embed/recordings/{rid}")
    assert await embed.evaluate("[...document.querySelectorAll('#player track')].map(t => t.srclang)") == ["en", "fr"]
    assert embed_errors == []
    await viewer.close()
    assert not problems, f"axe found problems: {problems}"


async def test_caption_editor_with_the_keyboard_only(live: Live, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    recording = await _recording(live)
    rid, api = recording["id"], f"/api/v1/recordings/{recording['id']}"
    base = str(live.client.make_url("")).rstrip("/")

    async def served() -> str:
        return await (await live.client.get(f"{api}/captions.vtt")).text()

    async def found(word: str) -> list[int]:
        body = await (await live.client.get("/api/v1/search", params={"q": word})).json()
        return [r["recording"]["id"] for r in body["results"]]

    owner = await open_context(browser, base, live.lecturer)
    page, errors = await new_page(owner)
    await page.goto(f"/recordings/{rid}")
    await page.wait_for_function("() => document.getElementById('replay').readyState >= 1", timeout=15_000)
    status = "#editor-status"
    await page.focus("#editor-track")  # the editor's first control; from here on, keys only
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # "Edit the cues"
    await page.wait_for_function("() => document.activeElement.id === 'cue-text-1'")
    await page.wait_for_function(f"() => document.querySelector('{status}').textContent.includes('2 cues loaded')")
    for _ in range(5):  # past the first cue's Split, Merge, Earlier, Later: the second cue's text
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "cue-text-2"
    # the video follows the cue being edited, and the focus ring shows where the keyboard is
    await page.wait_for_function("() => Math.abs(document.getElementById('replay').currentTime - 1.81) < 0.05")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await page.keyboard.press("Control+A")
    await page.keyboard.type("Today we study spectrograms")
    for _ in range(7):  # back up to "Save as a new version"
        await page.keyboard.press("Shift+Tab")
    assert await page.evaluate("document.activeElement.id") == "editor-save"
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"() => document.querySelector('{status}').textContent.includes('version 2')")
    assert await page.locator("#editor-versions tbody tr").count() == 2
    problems = await check_page(page, tmp_path / "shots", "editor-en")

    vtt = await served()
    assert "Today we study spectrograms" in vtt and "filterbanks" not in vtt and "Hello everyone" in vtt
    assert await found("spectrograms") == [rid] and await found("filterbanks") == []
    listed = await (await live.client.get(f"{api}/tracks")).json()
    automatic = listed["tracks"][0]
    versions = await (await live.client.get(f"{api}/tracks/{automatic['id']}/versions")).json()
    assert [(v["number"], v["source"], v["author"], v["published"]) for v in versions["versions"]] == [
        (2, "edit", "prof", True), (1, "automatic", None, False)]
    assert "spectrograms" in await (await live.client.get(f"{api}/transcript.srt")).text()  # downloads follow
    resp = await live.client.post(f"{api}/tracks/{automatic['id']}/versions", json={"cues": [[2, 1, "x"], [0, 1, " "]]},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 422 and [p["cue"] for p in (await resp.json())["error"]["details"]["problems"]] == [1, 2]

    # reset to the automatic version: the next key stop after Save
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "editor-reset"
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"() => document.querySelector('{status}').textContent.includes('Version 1')")
    assert "Today we study filterbanks" in await served() and await found("filterbanks") == [rid]
    assert await found("spectrograms") == []
    versions = await (await live.client.get(f"{api}/tracks/{automatic['id']}/versions")).json()
    assert [(v["number"], v["published"]) for v in versions["versions"]] == [(2, False), (1, True)]  # the edit is kept
    assert await page.input_value("#cue-text-2") == "Today we study filterbanks"

    # split, move and merge, still with the keys: each said in the live region
    async def said(words: str) -> None:
        await page.wait_for_function(f"() => document.querySelector('{status}').textContent.includes({words!r})")
    await page.keyboard.press("Tab")  # the first cue's text
    assert await page.evaluate("document.activeElement.id") == "cue-text-1"
    await page.keyboard.press("Tab")  # its "Split"
    await page.keyboard.press("Enter")
    await said("Cue 1 split in two.")
    assert [await page.input_value(f"#cue-text-{n}") for n in (1, 2, 3)] == ["Hello", "everyone", "Today we study filterbanks"]
    assert await page.evaluate("document.activeElement.id") == "cue-text-2"
    await page.keyboard.press("Shift+Tab")  # the first cue's "0.1 s later"
    await page.keyboard.press("Enter")
    await said("Cue 1 now from 0:00.3")
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")  # its "Merge with the next"
    await page.keyboard.press("Enter")
    await said("Cue 1 merged with the next.")
    assert await page.input_value("#cue-text-1") == "Hello everyone" and await page.locator("#editor-cues li").count() == 2
    assert errors == []
    await owner.close()

    # the editor in French: the same checks by axe
    french = await open_context(browser, base, live.lecturer, locale="fr-FR")
    page, errors = await new_page(french)
    await page.goto(f"/recordings/{rid}")
    await page.click("#editor-open")
    await page.wait_for_function("() => document.querySelector('#editor-status').textContent.includes('sous-titres chargés')")
    assert "Version" in await page.inner_text("#editor-versions")
    problems.update(await check_page(page, tmp_path / "shots", "editor-fr"))
    assert errors == []
    await french.close()
    assert not problems, f"axe found problems: {problems}"
