"""Webinar mode against the BBB API server of tests/bbb/fake_bbb.py: the meeting is created (or attached to) with the
event's publish URL in its metadata, the presenters' join link passes BBB's checksum, the streaming runner's
configuration is rendered from the event, and RTMP pushed to its URL makes the event live as any encoder would."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import text

from live_server import cli
from live_server.db import DB
from bbb import servers as srv
from tests.bbb.fake_bbb import SECRET, FakeBbb
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import FAST, push_rtmp, stop


def _join_link(page: str) -> str:
    found = re.search(r'<a id="presenter-join" href="([^"]+)"', page)
    assert found, "no presenter link on the page"
    return html.unescape(found.group(1))


async def _start(live: Live, slug: str, server_id: int, meeting: str = "") -> tuple[int, str]:
    resp = await live.client.post("/dashboard/bigbluebutton/webinar", data={
        "csrf_token": live.csrf, "event": slug, "server": str(server_id), "meeting": meeting})
    return resp.status, await resp.text()


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], live: Live, *args: str,
         stdin: str = "") -> tuple[int, str]:
    monkeypatch.setenv("LIVE_DATABASE_URL", live.settings.effective_database_url)
    monkeypatch.setenv("LIVE_DATA_DIR", str(live.settings.data_dir))
    monkeypatch.setenv("LIVE_RTMP_PUBLIC_URL", live.rtmp_base)  # the port the test's RTMP listener really bound
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def test_a_meeting_becomes_a_live_event(live: Live, fake_bbb: FakeBbb, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    server_id = live.app[DB].transaction(lambda s: srv.add_server(s, "campus", fake_bbb.api_url, SECRET, "sha512").id)
    event = await live.create_event(title="Inaugural lecture")
    key = event["stream"]["stream_key"]

    status, page = await _start(live, event["slug"], server_id)
    assert status == 200, page
    [params] = [p for call, p in fake_bbb.calls if call == "create"]
    assert params["meetingID"].startswith(f"live-{event['slug']}-")
    assert params["name"] == "Inaugural lecture" and params["record"] == "false"
    assert params["meta_live-server-stream-url"] == f"{live.settings.rtmp_url}/{key}"
    assert params["meta_live-server-owner"] == "prof" and params["meta_live-server-event"] == event["slug"]
    assert params["meta_bbb-recording-ready-url"].endswith(f"/api/v1/bbb/recording-ready/{server_id}")
    meeting_id = params["meetingID"]
    assert "A meeting was created on campus" in page

    join = _join_link(page)
    async with aiohttp.ClientSession() as session:
        async with session.get(join, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()  # BBB checked the checksum and lets the presenter in
        tampered = join.replace("fullName=prof", "fullName=intruder")
        async with session.get(tampered, allow_redirects=False) as resp:
            assert "checksumError" in await resp.text()
    assert [(j["fullName"], j["meetingID"], j["as"]) for j in fake_bbb.joins] == [("prof", meeting_id, "MODERATOR")]

    status, page = await _start(live, event["slug"], server_id)  # a second click: the same meeting (create is idempotent)
    creates = [p for call, p in fake_bbb.calls if call == "create"]
    assert status == 200 and len(creates) == 2 and creates[-1]["meetingID"] == meeting_id and len(fake_bbb.meetings) == 1
    assert "existing meeting" in page

    # the runner's configuration, rendered from the event by the CLI, and its RTMP arriving as any encoder's
    code, out = _cli(monkeypatch, capsys, live, "bbb", "runner-config", "--event", event["slug"])
    assert code == 0
    compose: dict[str, Any] = yaml.safe_load(out)
    env = compose["services"]["bbb-streamer"]["environment"]
    assert env["BBB_URL"] == fake_bbb.api_url and env["BBB_SECRET"] == SECRET and env["BBB_MEETING_ID"] == meeting_id
    assert env["BBB_STREAM_URL"] == f"{live.rtmp_base}/{key}" and env["BBB_START_MEETING"] == "false"
    image = compose["services"]["bbb-streamer"]["image"]
    assert image.startswith("aauzid/bigbluebutton-livestreaming:") and not image.endswith(":latest")  # pinned
    shipped = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "bbb-streaming" / "docker-compose.yml").read_text())
    assert shipped["services"]["bbb-streamer"]["image"] == image  # deploy/ shows the same pin
    pusher = await push_rtmp(env["BBB_STREAM_URL"], readrate=FAST, seconds=20)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 20, "the runner's stream to make the event live")
    finally:
        await stop(pusher)


async def test_attaching_to_a_running_meeting(live: Live, fake_bbb: FakeBbb) -> None:
    server_id = live.app[DB].transaction(lambda s: srv.add_server(s, "campus", fake_bbb.api_url, SECRET, "sha1").id)
    async with aiohttp.ClientSession() as session:  # a meeting Greenlight or Moodle created
        from formats.bbb import api_url

        created = api_url(fake_bbb.api_url, "create", {"name": "Room B", "meetingID": "greenlight-room-b",
                                                        "moderatorPW": "mod-pw", "attendeePW": "att-pw"}, SECRET)
        async with session.get(created) as resp:
            assert "SUCCESS" in await resp.text()
    event = await live.create_event(title="Broadcast of room B")
    status, page = await _start(live, event["slug"], server_id, meeting="greenlight-room-b")
    assert status == 200 and "existing meeting (greenlight-room-b on campus)" in page
    assert ("getMeetingInfo", {"meetingID": "greenlight-room-b"}) in fake_bbb.calls
    join = _join_link(page)
    assert "password=mod-pw" in join  # servers before BBB 2.4 want the moderator password
    async with aiohttp.ClientSession() as session:
        async with session.get(join, allow_redirects=False) as resp:
            assert resp.status == 302
    assert fake_bbb.joins[-1]["as"] == "MODERATOR"
    meetings = live.app[DB].transaction(lambda s: srv.meeting_views(s))
    assert [(m.meeting_id, m.owner_username, m.event_slug) for m in meetings] == [("greenlight-room-b", "prof", event["slug"])]

    other = await live.create_event(title="Someone else's")
    live.app[DB].transaction(lambda s: _give_to_admin(s, other["id"]))
    status, _ = await _start(live, other["slug"], server_id)
    assert status == 403  # only the event's owner (or an admin) broadcasts to it


def _give_to_admin(session: Any, event_id: int) -> None:
    from live_server import accounts
    from live_server.models import Event

    admin = accounts.create_user(session, "dean", "dean-password", "admin")
    session.get(Event, event_id).owner_id = admin.id


async def test_cli_servers_and_meetings(live: Live, fake_bbb: FakeBbb, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(monkeypatch, capsys, live, "bbb", "servers", "add", "--name", "campus",
                     "--api-url", f"{fake_bbb.base}/bigbluebutton/", "--secret-stdin", stdin=SECRET + "\n")
    assert code == 0 and f"added BigBlueButton server 'campus' ({fake_bbb.api_url}, sha256)" in out
    code, out = _cli(monkeypatch, capsys, live, "bbb", "servers", "list")
    assert code == 0 and SECRET not in out and f"secret {SECRET[:4]}…" in out
    code, out = _cli(monkeypatch, capsys, live, "bbb", "meetings", "map", "--server", "campus", "--meeting", "course-1",
                     "--owner", "prof", "--auto-import")
    assert code == 0 and "imported automatically" in out
    code, out = _cli(monkeypatch, capsys, live, "bbb", "meetings", "list")
    assert "campus\tcourse-1\tprof\tauto" in out
    code, out = _cli(monkeypatch, capsys, live, "bbb", "servers", "add", "--name", "bad", "--api-url", "ftp://x",
                     "--secret-stdin", stdin=SECRET + "\n")
    assert code == 1 and "the API URL must be an http(s) URL" in out
    # the secret is sealed at rest: the catalog alone does not give it away
    sealed = live.app[DB].transaction(lambda s: s.execute(text("SELECT secret FROM bbb_servers")).scalar())
    assert SECRET not in sealed and sealed.startswith("v1.")


def test_the_shipped_runner_file_has_the_shape_the_cli_renders() -> None:
    from pathlib import Path

    from bbb.webinar import runner_compose

    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "bbb-streaming" / "docker-compose.yml").read_text())
    config = srv.ServerConfig(1, "campus", "https://bbb.example.edu/bigbluebutton/api", 'se"cr\\et: #1', "sha256")
    rendered = yaml.safe_load(runner_compose(config, "live-x-1", "rtmp://live.example.edu/live/k", 'Title: "quoted" #1', "x"))
    service, expected = rendered["services"]["bbb-streamer"], shipped["services"]["bbb-streamer"]
    assert set(service["environment"]) == set(expected["environment"])
    assert {k: v for k, v in service.items() if k != "environment"} == {k: v for k, v in expected.items() if k != "environment"}
    # values that YAML would misread unquoted come back as they were
    assert service["environment"]["BBB_SECRET"] == 'se"cr\\et: #1'
    assert service["environment"]["BBB_MEETING_TITLE"] == 'Title: "quoted" #1'
