"""Issue 17 (7, 7b): a media pass dies with what granted it.

One real publish: the event goes from authenticated to password and back while a viewer who
logged out, one whose account was deactivated and an anonymous viewer who entered the password
keep their old cookies; after the end, the recording follows the same rule.
"""

from __future__ import annotations

import re
import time
from typing import Any

from live_server import accounts
from live_server.access import event_target
from live_server.db import DB
from live_server.passes import MEDIA_PASS
from live_server.models import Event
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import push_rtmp, stop
from tests.support import Account, login


async def _client(live: Live, aiohttp_client: Any, cookies: Any = None) -> Any:
    client = await aiohttp_client(live.client.server)
    if cookies is not None:
        client.session.cookie_jar.update_cookies({c.key: c.value for c in cookies})
    return client


def _account(live: Live, username: str, role: str = "viewer") -> Account:
    user = live.app[DB].transaction(lambda s: accounts.create_user(s, username, f"{username}-password", role))
    return Account(user.id, username, f"{username}-password", role)


async def _status(client: Any, path: str) -> int:
    resp = await client.get(path, allow_redirects=False)
    await resp.read()
    return int(resp.status)


async def _until(client: Any, path: str, status: int, what: str) -> None:
    """Directories cache an event's access facts for a second or two: wait for the change, bounded."""
    async def reached() -> bool:
        return await _status(client, path) == status
    await wait_for(reached, 6, what)


async def _unlock(client: Any, path: str, password: str) -> int:
    page = await (await client.get(path)).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = await client.post(f"{path}/unlock", data={"password": password, "csrf_token": token})
    await resp.read()
    return int(resp.status)


async def _patch(live: Live, path: str, **fields: Any) -> None:
    resp = await live.client.patch(path, json=fields, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 200, await resp.text()


async def test_passes_die_with_logout_deactivation_password_and_visibility_changes(live: Live, aiohttp_client: Any) -> None:
    event = await live.create_event(visibility="authenticated")
    api = f"/api/v1/events/{event['id']}"
    media, chat, page = f"/live/{event['slug']}/master.m3u8", f"{api}/chat/messages", f"/events/{event['slug']}"
    pusher = await push_rtmp(live.publish_url(event), seconds=60)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 15, "live")
        await _until(live.client, media, 200, "the owner's playlist")

        # authenticated: a logged-in viewer sees media and chat; after logout their old cookies open nothing
        viewer = await _client(live, aiohttp_client)
        viewer_csrf = await login(viewer, _account(live, "student"))
        assert await _status(viewer, page) == 200
        assert await _status(viewer, media) == 200 and await _status(viewer, chat) == 200
        kept = list(viewer.session.cookie_jar)
        assert (await viewer.post("/api/v1/auth/logout", headers={"X-CSRF-Token": viewer_csrf})).status == 200
        replay = await _client(live, aiohttp_client, kept)
        assert await _status(replay, media) == 403 and await _status(replay, chat) == 404

        # a deactivated account's session and cookies stop at once
        other = await _client(live, aiohttp_client)
        other_account = _account(live, "other")
        await login(other, other_account)
        assert await _status(other, media) == 200
        admin = await _client(live, aiohttp_client)
        admin_csrf = await login(admin, _account(live, "boss", "admin"))
        done = await admin.post(f"/admin/users/{other_account.id}/active", data={"active": "no", "csrf_token": admin_csrf},
                                allow_redirects=False)
        assert done.status == 303
        assert await _status(other, media) == 403 and await _status(other, chat) == 404

        # password: the old (authenticated) cookies do not open it; the password does
        await _patch(live, api, visibility="password", password="first-pw")
        assert await _status(replay, media) == 403
        stranger = await _client(live, aiohttp_client)
        assert await _status(stranger, media) == 403
        assert await _unlock(stranger, page, "first-pw") == 200
        assert await _status(stranger, media) == 200 and await _status(stranger, chat) == 200

        # a new password voids the pass: media, chat transcript and captions
        await _patch(live, api, password="second-pw")
        await _until(stranger, media, 403, "the old pass to be refused")
        assert await _status(stranger, chat) == 403 and await _status(stranger, f"{api}/transcript") == 404
        assert await _unlock(stranger, page, "first-pw") == 403
        assert await _unlock(stranger, page, "second-pw") == 200
        assert await _status(stranger, media) == 200

        # a visibility change voids it too, even back to password with the same password
        await _patch(live, api, visibility="public")
        await _patch(live, api, visibility="password")
        await _until(stranger, media, 403, "the pass to be void after the visibility change")
        assert await _unlock(stranger, page, "second-pw") == 200
        assert await _status(stranger, media) == 200

        # while someone watches, the playlist requests renew a pass past half its life (and only a valid one)
        row = live.app[DB].transaction(lambda s: s.get(Event, event["id"]))
        passes, name = live.app[MEDIA_PASS], f"live_media_{event['id']}"
        aged = await _client(live, aiohttp_client)
        aged.session.cookie_jar.update_cookies({name: passes.issue(event_target(row), now=time.time() - 0.75 * passes.lifetime)})
        renewed = await aged.get(media)
        assert renewed.status == 200 and name in renewed.cookies
        assert passes.check(event_target(row), renewed.cookies[name].value)
        assert not passes.due_for_renewal(renewed.cookies[name].value)
        fresh = await stranger.get(media)
        assert fresh.status == 200 and name not in fresh.cookies  # not yet due
    finally:
        await stop(pusher)
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "ended")
    recordings = (await (await live.client.get(f"/api/v1/recordings?event={event['id']}")).json())["recordings"]
    rid = recordings[0]["id"]
    assert recordings[0]["state"] == "ready" and recordings[0]["visibility"] == "authenticated"

    # the recording: inherited visibility at its start (authenticated); made password, the event's pass opens it
    await _patch(live, f"/api/v1/recordings/{rid}", visibility="password")
    vod = f"/vod/{rid}/master.m3u8"
    await _until(stranger, vod, 200, "the event's pass to open its recording")
    assert await _status(stranger, f"/api/v1/recordings/{rid}/replay") == 200
    await _patch(live, api, password="third-pw")
    await _until(stranger, vod, 403, "the recording to refuse the old pass")
    assert await _status(stranger, f"/api/v1/recordings/{rid}/replay") == 404
    assert await _status(replay, vod) == 403 and await _status(other, vod) == 403


async def test_a_pass_for_a_deleted_event_does_not_open_the_next_one(live: Live, aiohttp_client: Any) -> None:
    """7b: lecturer A's password event, unlocked then deleted; B's new password event gets a new id and
    A's pass opens nothing of it."""
    a_event = await live.create_event(visibility="password", password="shared-pw")
    stranger = await _client(live, aiohttp_client)
    assert await _unlock(stranger, f"/events/{a_event['slug']}", "shared-pw") == 200
    old_pass = stranger.session.cookie_jar.filter_cookies(live.client.make_url("/"))[f"live_media_{a_event['id']}"].value
    resp = await live.client.delete(f"/api/v1/events/{a_event['id']}", headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 204

    lecturer_b = _account(live, "lecturer-b", "lecturer")
    b = await _client(live, aiohttp_client)
    b_csrf = await login(b, lecturer_b)
    created = await b.post("/api/v1/events", json={"title": "B", "visibility": "password", "password": "shared-pw"},
                           headers={"X-CSRF-Token": b_csrf})
    b_event = await created.json()
    assert b_event["id"] > a_event["id"]  # ids are never handed out twice
    # even under B's id, A's pass (same password!) is refused: it is bound to A's event secret
    forged = await _client(live, aiohttp_client)
    forged.session.cookie_jar.update_cookies({f"live_media_{b_event['id']}": old_pass})
    assert await _status(forged, f"/api/v1/events/{b_event['id']}/chat/messages") == 403
    assert 'name="password"' in await (await forged.get(f"/events/{b_event['slug']}")).text()
