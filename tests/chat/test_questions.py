"""Webinar Q&A: ask, one vote per person, pre-moderation, answered, pinned, live for everyone."""

from __future__ import annotations

import asyncio

import pytest

from live_server.db import DB
from live_server.models import Question, QuestionVote
from tests.chat.clients import ChatSite


async def test_ask_and_vote_once_per_person(site: ChatSite) -> None:
    event = await site.create_event(guests_allowed=True)
    alice, bob = site.user(), site.user()
    a = await site.connect(event["slug"], alice)
    b = await site.connect(event["slug"], bob)
    g = await site.connect(event["slug"], nickname="Guest")
    asked = await a.call("ask", {"text": "Will this be on the exam?"})
    qid = asked["question"]["id"]
    assert asked["question"]["state"] == "approved" and asked["question"]["votes"] == 0
    await b.wait(lambda: b.of("question"), what="the new question")

    assert (await b.call("vote", {"id": qid}))["votes"] == 1
    assert (await b.call("vote", {"id": qid}))["error"]["code"] == "already_voted"
    # a second connection of the same person is still the same voter
    b2 = await site.connect(event["slug"], bob)
    assert (await b2.call("vote", {"id": qid}))["error"]["code"] == "already_voted"
    assert (await g.call("vote", {"id": qid}))["votes"] == 2
    assert (await a.call("vote", {"id": qid}))["votes"] == 3
    await a.wait(lambda: a.of("question")[-1]["votes"] == 3, what="live vote count")

    votes = site.app[DB].transaction(lambda s: sorted(v.voter for v in s.query(QuestionVote)))
    assert len(votes) == 3 and len(set(votes)) == 3
    assert site.app[DB].transaction(lambda s: s.get(Question, qid).votes) == 3
    late = await site.connect(event["slug"], bob)
    welcome = await late.welcome()
    assert welcome["my_votes"] == [qid] and welcome["questions"][0]["votes"] == 3
    reader = await site.connect(event["slug"])
    assert (await reader.call("vote", {"id": qid}))["error"]["code"] == "login_required"
    assert (await b.call("vote", {"id": 99999}))["error"]["code"] == "not_found"


async def test_premoderation_answer_and_pin(site: ChatSite) -> None:
    event = await site.create_event()
    owner = await site.connect(event["slug"], site.lecturer)
    asker, other = site.user(), site.user()
    q = await site.connect(event["slug"], asker)
    v = await site.connect(event["slug"], other)
    assert (await owner.call("settings", {"qa_premoderation": True}))["ok"]

    pending = (await q.call("ask", {"text": "<i>pending</i> question"}))["question"]
    assert pending["state"] == "pending" and pending["text"] == "<i>pending</i> question"
    await owner.wait(lambda: any(x["id"] == pending["id"] for x in owner.of("question")), what="moderators see it")
    await q.wait(lambda: any(x["id"] == pending["id"] for x in q.of("question")), what="the asker sees it")
    assert (await v.call("vote", {"id": pending["id"]}))["error"]["code"] == "not_found"
    assert (await v.call("question", {"id": pending["id"], "action": "approve"}))["error"]["code"] == "forbidden"
    assert not any(x["id"] == pending["id"] for x in v.of("question"))

    assert (await owner.call("question", {"id": pending["id"], "action": "approve"}))["question"]["state"] == "approved"
    await v.wait(lambda: any(x["id"] == pending["id"] and x["state"] == "approved" for x in v.of("question")),
                 what="approved question reaches everyone")
    assert (await owner.call("question", {"id": pending["id"], "action": "pin"}))["question"]["pinned"] is True
    await v.wait(lambda: v.of("question")[-1]["pinned"], what="pin")
    answered = (await owner.call("question", {"id": pending["id"], "action": "answer"}))["question"]
    assert answered["state"] == "answered" and answered["answered_at"] and answered["pinned"] is False
    await v.wait(lambda: v.of("question")[-1]["state"] == "answered", what="answered")

    second = (await q.call("ask", {"text": "another"}))["question"]
    await owner.call("question", {"id": second["id"], "action": "approve"})
    await owner.call("question", {"id": second["id"], "action": "reject"})
    await v.wait(lambda: {"id": second["id"]} in v.of("question_removed"), what="removal")
    late = await site.connect(event["slug"], site.user())
    assert [x["id"] for x in (await late.welcome())["questions"]] == [pending["id"]]
    assert (await owner.call("question", {"id": second["id"], "action": "explode"}))["error"]["code"] == "bad_request"


@pytest.mark.chat_settings(chat_presence_seconds=0.2)
async def test_presence_counts_viewers_and_pushes_changes(site: ChatSite) -> None:
    event = await site.create_event()
    first = await site.connect(event["slug"], site.user())
    assert (await first.welcome())["viewers"] == 1
    viewer = site.user()
    second = await site.connect(event["slug"], viewer)
    await site.connect(event["slug"], viewer)  # the same person twice (two tabs) is one viewer
    await site.connect(event["slug"], cookies={"live_viewer": "ab" * 12})  # a player's handle
    await first.wait(lambda: first.of("presence") and first.of("presence")[-1] == {"viewers": 3}, what="3 viewers")
    await second.sio.disconnect()
    await asyncio.sleep(0.6)
    assert first.of("presence")[-1] == {"viewers": 3}  # the other tab is still there
    for chat in site.clients[2:]:
        await chat.sio.disconnect()
    await first.wait(lambda: first.of("presence")[-1] == {"viewers": 1}, what="back to 1")
