"""BigBlueButton recordings into the catalog, against a BBB API server written from BBB's documentation: the lecturer
sees their recordings, imports one in one click, it becomes a ready (and searchable) replay; automatic mode imports a
new recording once; what BBB gets wrong reaches the lecturer as a sentence, never a traceback."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from bbb import servers as srv
from bbb.deposit import BBB_DEPOSIT
from live_server.db import DB
from live_server.models import BbbImport, Recording
from tests.bbb.fake_bbb import SECRET, FakeBbb, FakeRecording, jwt_hs256
from tests.ingest.live import Live, wait_for
from tests.media import count_video_frames


def _add_server(live: Live, name: str, api_url: str, secret: str = SECRET, algorithm: str = "sha256") -> int:
    return live.app[DB].transaction(lambda s: srv.add_server(s, name, api_url, secret, algorithm).id)  # type: ignore[no-any-return]


def _map(live: Live, server: str, meeting_id: str, owner: str, auto_import: bool = False) -> None:
    live.app[DB].transaction(lambda s: srv.map_meeting(s, server, meeting_id, owner, auto_import))


async def _page(live: Live) -> str:
    resp = await live.client.get("/dashboard/bigbluebutton")
    assert resp.status == 200
    return await resp.text()


async def _import(live: Live, server_id: int, record_id: str) -> Any:
    return await live.client.post("/dashboard/bigbluebutton/import", allow_redirects=False,
                                  data={"csrf_token": live.csrf, "server": str(server_id), "record": record_id})


async def _ready(live: Live, recording_id: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await (await live.client.get(f"/api/v1/recordings/{recording_id}")).json()
        return body if body["state"] in ("ready", "failed") else None

    return await wait_for(done, 60, "the import to finish")


def _imports(live: Live) -> list[tuple[str, str, int | None]]:
    return live.app[DB].transaction(lambda s: [(i.record_id, i.state, i.recording_id) for i in s.query(BbbImport).order_by(BbbImport.id)])


async def test_a_lecturer_sees_their_recordings_and_imports_one_in_one_click(live: Live, fake_bbb: FakeBbb) -> None:
    fake_bbb.recordings += [
        FakeRecording("rec-owned", "moodle-course-42", "Thermodynamics week 3", {"live-server-owner": "prof"}),
        FakeRecording("rec-mapped", "room-b-101", "Office hours", {}),
        FakeRecording("rec-other", "moodle-course-7", "Somebody else's lecture", {"live-server-owner": "someone"}),
        FakeRecording("rec-slides-only", "room-b-101", "Slides only", {}, has_video=False),
    ]
    server_id = _add_server(live, "campus", fake_bbb.api_url)
    _map(live, "campus", "room-b-101", "prof")

    page = await _page(live)
    assert "Thermodynamics week 3" in page and "Office hours" in page and "Slides only" in page
    assert "Somebody else" not in page
    assert page.count('action="/dashboard/bigbluebutton/import"') == 2  # the slides-only recording has nothing to import
    assert SECRET not in page and fake_bbb.refused == []  # every call passed BBB's checksum rule (sha256)

    started = time.monotonic()
    resp = await _import(live, server_id, "rec-owned")
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard/bigbluebutton?done=import"
    await live.app[BBB_DEPOSIT].settled()
    [(record, state, recording_id)] = _imports(live)
    assert (record, state) == ("rec-owned", "imported") and recording_id is not None
    body = await _ready(live, recording_id)
    print(f"BBB recording (2 s MP4, {fake_bbb.video.stat().st_size} bytes) from the click to a ready replay: "
          f"{time.monotonic() - started:.2f} s")
    assert body["state"] == "ready", body
    assert body["title"].startswith("Thermodynamics week 3 (") and abs(body["duration_seconds"] - 2.0) <= 0.5
    assert body["visibility"] == "authenticated" and body["thumbnail_url"]
    folder = live.settings.media_dir / "recordings" / "imported" / str(recording_id)
    assert count_video_frames(folder / "vod.m3u8") == 20
    assert list((live.settings.media_dir / "imports").iterdir()) == []  # the download is gone

    search = await (await live.client.get("/api/v1/search", params={"q": "thermodynamics"})).json()
    assert [r["recording"]["id"] for r in search["results"]] == [recording_id]
    public_id = live.app[DB].transaction(lambda s: s.get(Recording, recording_id).public_id)
    page = await _page(live)
    assert f'href="/recordings/{public_id}"' in page

    again = await _import(live, server_id, "rec-owned")  # a second click imports nothing
    assert again.headers["Location"] == "/dashboard/bigbluebutton?done=already"
    stolen = await _import(live, server_id, "rec-other")
    assert stolen.status == 404 and "not one of yours" in await stolen.text()
    no_video = await _import(live, server_id, "rec-slides-only")
    assert no_video.status == 422 and "no video to import" in await no_video.text()
    assert len(_imports(live)) == 1


async def test_automatic_mode_imports_each_new_recording_once(live: Live, fake_bbb: FakeBbb) -> None:
    server_id = _add_server(live, "campus", fake_bbb.api_url, algorithm="sha1")
    _map(live, "campus", "weekly-seminar", "prof", auto_import=True)
    deposit = live.app[BBB_DEPOSIT]
    callback = f"{str(live.client.make_url('')).rstrip('/')}/api/v1/bbb/recording-ready/{server_id}"

    fake_bbb.recordings.append(FakeRecording("sem-1", "weekly-seminar", "Seminar 1", {}))
    fake_bbb.recordings.append(FakeRecording("sem-0-processing", "weekly-seminar", "Seminar 0", {}, state="processing"))
    assert (await deposit.poll_once())[0] == 1
    assert (await deposit.poll_once())[0] == 0  # already claimed: not twice
    # BBB's callback for the same recording (a retry, or a poll that came first): received, nothing new
    assert await fake_bbb.post_callback(callback, jwt_hs256({"meeting_id": "weekly-seminar", "record_id": "sem-1"}, SECRET)) == 200

    # a new recording is announced by BBB's recording-ready callback (JWT signed with the shared secret)
    assert await fake_bbb.publish(FakeRecording("sem-2", "weekly-seminar", "Seminar 2", {}), callback_url=callback) == 202
    assert (await deposit.poll_once())[0] == 0
    await deposit.settled()
    imports = _imports(live)
    assert [(r, s) for r, s, _ in imports] == [("sem-1", "imported"), ("sem-2", "imported")]
    for _, _, recording_id in imports:
        assert recording_id is not None and (await _ready(live, recording_id))["state"] == "ready"

    # forged or foreign callbacks are refused (401: BBB's code for a secret that does not match), and import nothing
    fake_bbb.recordings.append(FakeRecording("sem-3", "weekly-seminar", "Seminar 3", {}))
    forged = jwt_hs256({"meeting_id": "weekly-seminar", "record_id": "sem-3"}, "not the shared secret")
    assert await fake_bbb.post_callback(callback, forged) == 401
    assert await fake_bbb.post_callback(callback, "") == 401
    assert await fake_bbb.post_callback(callback.rsplit("/", 1)[0] + "/999", forged) == 401
    # a meeting nobody mapped for automatic import: received, ignored
    fake_bbb.recordings.append(FakeRecording("other-1", "not-mapped", "Other", {}))
    assert await fake_bbb.post_callback(callback, jwt_hs256({"meeting_id": "not-mapped", "record_id": "other-1"}, SECRET)) == 200
    await deposit.settled()
    assert len(_imports(live)) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_what_bbb_gets_wrong_reaches_the_lecturer_as_messages(live: Live, fake_bbb: FakeBbb) -> None:
    fake_bbb.recordings.append(FakeRecording("rec-1", "course-1", "Still listed", {"live-server-owner": "prof"}))
    good = _add_server(live, "campus", fake_bbb.api_url)
    _add_server(live, "misconfigured", fake_bbb.api_url, secret="a-wrong-shared-secret")
    down = _add_server(live, "down", f"http://127.0.0.1:{_closed_port()}/bigbluebutton/api")

    page = await _page(live)
    assert "Still listed" in page  # one failing server does not hide the others
    problems = re.findall(r'<div class="error-summary bbb-server-problem" role="alert"><p>([^<]+)</p>', page)
    assert sorted(problems) == sorted([
        "The BigBlueButton server down cannot be reached right now; try again later.",
        "The BigBlueButton server misconfigured refused our signature: its shared secret or checksum algorithm is set "
        "wrongly here. Tell an administrator.",
    ])
    assert "Checksums do not match" in page and fake_bbb.refused == ["getRecordings"]
    assert "Traceback" not in page and "a-wrong-shared-secret" not in page

    resp = await _import(live, down, "rec-1")
    assert resp.status == 502 and "The BigBlueButton server down cannot be reached right now" in await resp.text()

    # webinar mode, attaching to a meeting BBB does not know: notFound, in words
    event = await live.create_event(title="Attach test")
    resp = await live.client.post("/dashboard/bigbluebutton/webinar", data={
        "csrf_token": live.csrf, "event": event["slug"], "server": str(good), "meeting": "no-such-meeting"})
    text = await resp.text()
    assert resp.status == 502
    assert "The BigBlueButton server campus does not know this meeting (it may have ended)." in text
    assert "We could not find a meeting with that meeting ID" in text

    # a secret sealed under another server secret (secret_key changed): that server is skipped, the page still works
    def reseal(session: Any) -> None:
        from live_server.models import BbbServer

        session.get(BbbServer, down).secret = "v1.c2VhbGVkLWVsc2V3aGVyZS1zZWFsZWQtZWxzZXdoZXJl"

    live.app[DB].transaction(reseal)
    resp = await live.client.get("/dashboard/bigbluebutton")
    assert resp.status == 200 and "Still listed" in await resp.text()

    # in French too
    fr = await live.client.get("/dashboard/bigbluebutton", headers={"Accept-Language": "fr"})
    assert "a refusé notre signature" in await fr.text()
