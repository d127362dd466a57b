"""Who may join and post follows the event's visibility; guests only where the event allows them."""

from __future__ import annotations

from chat.service import Room
from live_server.models import Visibility
from tests.chat.clients import ChatSite


def test_the_guest_flag_opens_only_events_anonymous_visitors_may_watch() -> None:
    """A course-only event is for its members, logged in from the LMS: like an authenticated one, it takes no
    nicknamed guests whatever its flag says (the access rule refuses them before; the room must say so too)."""
    def room(visibility: Visibility, allowed: bool = True) -> Room:
        return Room(1, "lecture", "Lecture", 1, visibility, True, allowed, True, None)

    takes_guests = {v for v in Visibility if room(v).guests_may_join}
    assert takes_guests == {Visibility.PUBLIC, Visibility.UNLISTED, Visibility.PASSWORD}
    assert not any(room(v, allowed=False).guests_may_join for v in Visibility)


async def test_public_event_guests_only_when_allowed(site: ChatSite) -> None:
    closed = await site.create_event(title="No guests")
    refused = await site.connect(closed["slug"], nickname="Lou", expect_refusal=True)
    assert refused.connect_error["data"]["code"] == "guests_not_allowed"
    reader = await site.connect(closed["slug"])  # reading stays possible on a public event
    assert (await reader.welcome())["you"]["can_post"] is False

    open_ = await site.create_event(title="Guests welcome", guests_allowed=True)
    g = await site.connect(open_["slug"], nickname="  Lou <b>Reed</b> ")
    you = (await g.welcome())["you"]
    assert you["author"]["name"] == "Lou <b>Reed</b>" and you["author"]["kind"] == "guest" and you["can_post"]
    assert (await g.call("send", {"text": "hi from a guest"}))["ok"]
    await g.wait(lambda: g.messages(), what="echo")
    assert g.messages()[0]["author"]["name"] == "Lou <b>Reed</b>"
    # the same guest token is the same guest (e.g. after a reload)
    again = await site.connect(open_["slug"], nickname="Lou", guest_token=you["guest_token"])
    assert (await again.welcome())["you"]["author"]["key"] == you["author"]["key"]
    assert (await site.connect(open_["slug"], nickname="x" * 41, expect_refusal=True)).connect_error["data"]["code"] == "bad_nickname"


async def test_authenticated_event_needs_a_login_and_never_takes_guests(site: ChatSite) -> None:
    event = await site.create_event(visibility="authenticated", guests_allowed=True)
    assert (await site.connect(event["slug"], expect_refusal=True)).connect_error["data"]["code"] == "login_required"
    assert (await site.connect(event["slug"], nickname="Lou", expect_refusal=True)).connect_error["data"]["code"] == "login_required"
    student = await site.connect(event["slug"], site.user())
    assert (await student.call("send", {"text": "logged in"}))["ok"]


async def test_password_event_needs_the_media_pass(site: ChatSite) -> None:
    event = await site.create_event(visibility="password", password="secret-pw", guests_allowed=True)
    viewer = site.user()
    assert (await site.connect(event["slug"], viewer, expect_refusal=True)).connect_error["data"]["code"] == "password_required"
    assert (await site.connect(event["slug"], nickname="Lou", expect_refusal=True)).connect_error["data"]["code"] == "password_required"
    forged = {f"live_media_{event['id']}": "9999999999.deadbeef"}
    assert (await site.connect(event["slug"], viewer, cookies=forged, expect_refusal=True)).connect_error["data"]["code"] == "password_required"

    # the unlock form hands out the pass, as a browser would get it
    unlock = await site.client.post(f"/events/{event['slug']}/unlock", allow_redirects=False,
                                    data={"password": "secret-pw", "csrf_token": site.csrf})
    assert unlock.status == 303, await unlock.text()
    pass_ = unlock.cookies[f"live_media_{event['id']}"].value
    cookies = {f"live_media_{event['id']}": pass_}
    member = await site.connect(event["slug"], viewer, cookies=cookies)
    assert (await member.call("send", {"text": "with the pass"}))["ok"]
    guest = await site.connect(event["slug"], nickname="Lou", cookies=cookies)
    assert (await guest.call("send", {"text": "guest with the pass"}))["ok"]
    owner = await site.connect(event["slug"], site.lecturer)  # the owner needs no pass
    assert (await owner.welcome())["you"]["moderator"] is True


async def test_chat_disabled_event_refuses_viewers(site: ChatSite) -> None:
    event = await site.create_event(chat_enabled=False)
    assert (await site.connect(event["slug"], site.user(), expect_refusal=True)).connect_error["data"]["code"] == "chat_disabled"


async def test_forged_connect_and_disconnect_events_are_refused(site: ChatSite) -> None:
    event = await site.create_event()
    a = await site.connect(event["slug"], site.user())
    reply = await a.call("connect", {"event": "other"})
    assert reply["error"]["code"] == "bad_request"
    reply = await a.call("disconnect", {})
    assert reply["error"]["code"] == "unknown_event_name"
    assert (await a.call("send", {"text": "still connected"}))["ok"]


async def test_unlisted_event_chat_is_not_joined_by_its_number(site: ChatSite) -> None:
    """Issue 17 (9): the socket's ``event`` may be the id only for listed events; unlisted ones need the slug."""
    event = await site.create_event(visibility="unlisted")
    for ref in (event["id"], str(event["id"])):
        refused = await site.connect(ref, expect_refusal=True)
        assert refused.connect_error["data"]["code"] == "unknown_event"
    reader = await site.connect(event["slug"])
    assert (await reader.welcome())["you"]["can_post"] is False
    owner = await site.connect(event["id"], site.lecturer)
    assert (await owner.welcome())["you"]["moderator"] is True
