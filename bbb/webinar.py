"""Webinar mode: a BigBlueButton meeting broadcast to a live event for a large audience.

We ``create`` the meeting (or attach to one that runs) with the event's publish URL in its metadata, hand the
lecturer a signed presenter ``join`` link, and render the configuration of an existing open-source streaming
runner (aau-zid/BigBlueButton-liveStreaming: a container that joins the meeting as a browser and pushes RTMP)
for the operator to start. We write no runner of our own: its RTMP arrives as any other encoder's.

The meeting is created with ``record=false``: the live event records the broadcast itself, and BigBlueButton
copies a recorded meeting's metadata (the stream URL, whose key lets anyone publish) into files its web server
serves publicly.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from formats.bbb import EVENT_META, OWNER_META, RECORDING_READY_META, STREAM_META, api_url, parse_meeting
from live_server import events as ev
from live_server.db import Database
from live_server.errors import Forbidden, NotFound
from live_server.models import BbbMeeting, User

from . import servers as srv
from .client import BbbClient

# Pinned: the runner's latest release tag (git tag 1.0.0-beta.9, 2021-12-13); ``latest`` would change under a
# lecture on any ``docker compose pull``. README, "BigBlueButton", says why and how to move it.
RUNNER_IMAGE = "aauzid/bigbluebutton-livestreaming:1.0.0-beta.9"
RUNNER_USER_NAME = "Live"


@dataclass(frozen=True)
class Webinar:
    """A meeting broadcast to an event; ``join_url`` is the presenters' signed link (a credential: the owner's eyes only)."""

    server_id: int
    server_name: str
    meeting_id: str
    event_slug: str
    event_title: str
    join_url: str
    attached: bool  # True: the meeting existed (created elsewhere, or by an earlier click)


def presenter_join_url(server: srv.ServerConfig, meeting_id: str, full_name: str, moderator_pw: str = "") -> str:
    """A moderator's join link: ``role=MODERATOR`` (BBB >= 2.4), and the moderator password older servers want."""
    params = {"fullName": (full_name or "Presenter")[:200], "meetingID": meeting_id, "role": "MODERATOR"}
    if moderator_pw:
        params["password"] = moderator_pw
    return api_url(server.api_url, "join", params, server.secret, server.algorithm)


def runner_compose(server: srv.ServerConfig, meeting_id: str, stream_url: str, title: str, event_slug: str) -> str:
    """docker-compose.yml of the streaming runner for one webinar. It holds the shared secret and the stream key:
    for the operator's machine only (``live-server bbb runner-config``), never a page."""
    def q(value: str) -> str:  # a JSON string is a valid YAML double-quoted scalar
        return json.dumps(value, ensure_ascii=False)

    env = {
        "BBB_URL": server.api_url,
        "BBB_SECRET": server.secret,
        "BBB_MEETING_ID": meeting_id,
        "BBB_STREAM_URL": stream_url,
        "BBB_START_MEETING": "false",
        "BBB_MEETING_TITLE": title,
        "BBB_USER_NAME": RUNNER_USER_NAME,
        "BBB_SHOW_CHAT": "false",
        "BBB_DOWNLOAD_MEETING": "false",
        "BBB_INTRO": "false",
    }
    lines = [
        f"# BigBlueButton webinar -> live event {event_slug}: rendered by `live-server bbb runner-config --event {event_slug}`.",
        "# Holds the BBB shared secret and the event's stream key: keep it on the runner's machine (mode 600).",
        "# Start it once the presenters are in the meeting: docker compose up -d; stop: docker compose down.",
        "services:",
        "  bbb-streamer:",
        f"    image: {RUNNER_IMAGE}",
        "    shm_size: \"2gb\"  # Chromium inside needs more than Docker's 64 MB default",
        "    restart: \"no\"",
        "    environment:",
        *(f"      {name}: {q(value)}" for name, value in env.items()),
    ]
    return "\n".join(lines) + "\n"


class Webinars:
    """Creating or attaching to a lecturer's webinar meeting, and what the runner needs."""

    def __init__(self, db: Database, client: BbbClient, rtmp_url: str, base_url: str) -> None:
        self.db = db
        self.client = client
        self.rtmp_url = rtmp_url.rstrip("/")
        self.base_url = base_url.rstrip("/")

    def _context(self, session: Session, user: User, event_ref: str, server_id: int) -> tuple[srv.ServerConfig, str, str, str, str | None]:
        event = ev.get_event(session, event_ref, user)
        if not ev.can_manage(user, event):
            raise Forbidden("only the event's owner or an admin turns a meeting into its live broadcast")
        key = ev.revealed_stream_key(session, event) or ev.issue_stream_key(session, event)
        config = srv.server_config(session, server_id)
        existing = session.scalar(select(BbbMeeting.meeting_id).where(BbbMeeting.event_id == event.id,
                                                                      BbbMeeting.server_id == server_id))
        return config, event.slug, event.title, f"{self.rtmp_url}/{key}", existing

    async def start(self, user: User, event_ref: str, server_id: int, attach_to: str = "") -> Webinar:
        """Create the event's meeting (idempotent: the same meeting on later clicks), or attach to ``attach_to``,
        a running meeting (``getMeetingInfo`` must know it: :class:`formats.bbb.BbbFailed` ``notFound`` otherwise)."""
        config, slug, title, stream_url, existing = await self.db.run(lambda s: self._context(s, user, event_ref, server_id))
        attach_to = attach_to.strip()
        if attach_to:
            meeting = parse_meeting(await self.client.call(config, "getMeetingInfo", {"meetingID": attach_to}))
            attached = True
        else:
            meeting_id = existing or f"live-{slug[:60]}-{secrets.token_hex(6)}"
            name = title[:64] if len(title) >= 2 else f"{title} live"
            meeting = parse_meeting(await self.client.call(config, "create", {
                "name": name, "meetingID": meeting_id, "record": "false",
                "logoutURL": f"{self.base_url}/events/{slug}",
                f"meta_{OWNER_META}": user.username, f"meta_{EVENT_META}": slug, f"meta_{STREAM_META}": stream_url,
                f"meta_{RECORDING_READY_META}": srv.callback_url(self.base_url, config.id),
            }))
            attached = meeting.message_key == "duplicateWarning"

        def save(session: Session) -> None:
            event = ev.get_event(session, slug, user)
            srv.map_meeting(session, config.id, meeting.meeting_id, user.username, auto_import=False, event_id=event.id)

        await self.db.run(save)
        join = presenter_join_url(config, meeting.meeting_id, user.display_name or user.username, meeting.moderator_pw)
        return Webinar(config.id, config.name, meeting.meeting_id, slug, title, join, attached)


def runner_config(session: Session, user: User, event_ref: str, rtmp_url: str) -> str:
    """The runner's docker-compose.yml for the event's webinar meeting (NotFound when it has none)."""
    event = ev.get_event(session, event_ref, user)
    if not ev.can_manage(user, event):
        raise Forbidden("only the event's owner or an admin")
    row = session.scalar(select(BbbMeeting).where(BbbMeeting.event_id == event.id).order_by(BbbMeeting.id.desc()))
    if row is None:
        raise NotFound("this event has no BigBlueButton webinar meeting yet: start one from the dashboard "
                       "(/dashboard/bigbluebutton)")
    config = srv.server_config(session, row.server_id)
    key = ev.revealed_stream_key(session, event) or ev.issue_stream_key(session, event)
    return runner_compose(config, row.meeting_id, f"{rtmp_url.rstrip('/')}/{key}", event.title, event.slug)
