"""Guests cannot escape limits and bans by dropping their guest token (issue 17 item 10), with real clients."""

from __future__ import annotations

import time

import pytest

from tests.chat.clients import ChatSite


async def test_fresh_guest_identities_from_one_address_are_bounded(site: ChatSite) -> None:
    """20 fresh guest identities x 5 messages from one address: at most
    ``chat_guest_identities_per_address`` identities get in, and all guests of the address together
    get ``chat_guest_messages_per_address`` messages per window (plus what refills meanwhile)."""
    s = site.settings
    event = await site.create_event(guests_allowed=True)
    reader = await site.connect(event["slug"], site.user())
    started = time.monotonic()
    admitted, refused = [], []
    for i in range(20):
        chat = await site.connect(event["slug"], nickname=f"guest {i}", expect_refusal=i >= s.chat_guest_identities_per_address)
        (admitted if chat.sio.connected else refused).append(chat)
    assert len(admitted) == s.chat_guest_identities_per_address
    assert all(c.connect_error["data"]["code"] == "too_many_guests" for c in refused)
    accepted = 0
    for chat in admitted:
        for n in range(5):
            ack = await chat.call("send", {"text": f"spam {n}"})
            accepted += "ok" in ack
            if "error" in ack:
                assert ack["error"]["code"] == "rate_limited" and "address" in ack["error"]["message"]
    refill = (time.monotonic() - started) * s.chat_guest_messages_per_address / s.chat_rate_window_seconds
    assert s.chat_guest_messages_per_address <= accepted <= s.chat_guest_messages_per_address + refill + 1
    await reader.wait(lambda: len(reader.texts()) == accepted, what="the accepted messages")
    # a known guest token is the same identity: it may come back; a logged-in user there is not limited
    token = (await admitted[0].welcome())["you"]["guest_token"]
    await admitted[0].sio.disconnect()
    back = await site.connect(event["slug"], nickname="guest 0", guest_token=token)
    assert back.sio.connected
    assert (await reader.call("send", {"text": "logged in"}))["ok"] is True


async def test_banned_guest_cannot_return_under_a_new_identity(site: ChatSite) -> None:
    event = await site.create_event(guests_allowed=True)
    owner = await site.connect(event["slug"], site.lecturer)
    guest = await site.connect(event["slug"], nickname="Troll", cookies={"live_viewer": "a" * 24})
    key = (await guest.welcome())["you"]["author"]["key"]
    assert (await owner.call("ban", {"author": key, "reason": "spam"}))["ok"]
    await guest.wait(lambda: guest.disconnected.is_set(), what="the banned guest's disconnect")
    again = await site.connect(event["slug"], nickname="Nice person", expect_refusal=True)  # no token: a new identity
    assert again.connect_error["data"]["code"] == "banned" and "spam" in again.connect_error["data"]["message"]
    same_browser = await site.connect(event["slug"], nickname="Other", cookies={"live_viewer": "a" * 24},
                                      expect_refusal=True)
    assert same_browser.connect_error["data"]["code"] == "banned"
    # logged-in users from the same address are not guests: unaffected
    assert (await site.connect(event["slug"], site.user())).sio.connected
    # the ban's duration: once lifted, new guests from there are welcome again
    assert (await owner.call("unban", {"author": key}))["ok"]
    welcome = await (await site.connect(event["slug"], nickname="Reformed")).welcome()
    assert welcome["you"]["can_post"] is True


@pytest.mark.chat_settings(chat_guest_identities_per_address=2)
async def test_identity_limit_is_a_setting(site: ChatSite) -> None:
    event = await site.create_event(guests_allowed=True)
    for i in range(2):
        await site.connect(event["slug"], nickname=f"g{i}")
    refused = await site.connect(event["slug"], nickname="g2", expect_refusal=True)
    assert refused.connect_error["data"]["code"] == "too_many_guests"
    assert "log in" in refused.connect_error["data"]["message"]
