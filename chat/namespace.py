"""The Socket.IO handlers: one connection = one viewer in one event's room.

A client connects with ``auth = {"event": <slug or id>, "nickname"?, "guest_token"?}``; the
session cookie (resolved by the HTTP identity middleware on the handshake) says who it is.
Every client event goes through ``trigger_event``: unknown names, bad payloads and refusals
become an ``error`` event (and the ack) for that client only, are logged, and count as strikes;
too many strikes close the connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, Protocol

import socketio
from aiohttp import web

from chat import service as svc
from chat.fanout import RoomBatcher
from chat.limits import GuestGuard, Refusal, SenderLimits, Strikes
from chat.presence import Presence
from chat.service import Author, ChatError, Room
from live_server.http_request import identity_of
from live_server.db import Database
from live_server.models import User, Visibility
from live_server.passes import MediaPasses
from live_server.settings import Settings
from live_server.access import Decision, can_view, person_of
from web.media import VIEWER_COOKIE


log = logging.getLogger(__name__)


@dataclass
class Connection:
    sid: str
    room: Room
    user: User | None
    author: Author | None  # None: reading only (not logged in, no nickname)
    moderator: bool
    viewer: str  # presence handle
    address: str
    strikes: Strikes
    guest_token: str | None = None
    rooms: list[str] = field(default_factory=list)

    def describe(self) -> str:
        who = self.author.key if self.author else "anonymous"
        return f"{who} from {self.address} in event {self.room.event_id}"


Handler = Callable[[Connection, Any], Awaitable[dict[str, Any]]]


class Rooms(Protocol):
    async def get(self, ref: str | int) -> Room: ...

    def invalidate(self, event_id: int) -> None: ...


class ChatHost(Protocol):
    """What the handlers use of the process's chat (``chat.server.ChatServer``)."""

    settings: Settings
    db: Database
    rooms: Rooms
    media_pass: MediaPasses
    batcher: RoomBatcher
    limits: SenderLimits
    guests: GuestGuard
    presence: Presence

    def limits_json(self) -> dict[str, Any]: ...

    def metrics_refused(self, code: str) -> None: ...

    def start_background_task(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    async def publish_message(self, room: Room, message: dict[str, Any]) -> None: ...

    async def history(self, event_id: int) -> list[dict[str, Any]]: ...

    async def public_questions(self, event_id: int) -> list[dict[str, Any]]: ...

    def forget_questions(self, event_id: int) -> None: ...

    def remember(self, event_id: int, message: dict[str, Any]) -> None: ...

    def forget_history(self, event_id: int) -> None: ...

    def viewers(self, event_id: int) -> int: ...


class ChatNamespace(socketio.AsyncNamespace):
    """Handlers for ``/``; state per connection lives in ``self.connections`` (this process only)."""

    CLIENT_EVENTS = ("send", "delete", "ban", "unban", "settings", "ask", "vote", "question")

    def __init__(self, chat: ChatHost) -> None:
        super().__init__("/")
        self.chat = chat
        self.connections: dict[str, Connection] = {}
        self._handlers: dict[str, Handler] = {
            "send": self._send, "delete": self._delete, "ban": self._ban, "unban": self._unban,
            "settings": self._settings, "ask": self._ask, "vote": self._vote, "question": self._question,
        }

    # --- dispatch ----------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        sid = args[0] if args else ""
        if event == "connect":
            if sid in self.connections or self.server.manager.is_connected(sid, "/"):
                return await self._refuse_event(sid, "connect", ChatError("bad_request", "already connected"))
            return await self.on_connect(*args[:3])
        if event == "disconnect":
            if self.server.manager.is_connected(sid, "/"):  # a client cannot end someone's session by naming an event
                return await self._refuse_event(sid, event, ChatError("unknown_event_name", "no such chat action"))
            return await self.on_disconnect(sid)
        conn = self.connections.get(sid)
        if conn is None:
            return None
        handler = self._handlers.get(event) if isinstance(event, str) else None
        if handler is None:
            return await self._refused(conn, str(event)[:40], ChatError("unknown_event_name", "no such chat action"))
        if len(args) != 2:
            return await self._refused(conn, event, ChatError("bad_request", "send exactly one payload object"))
        try:
            return await handler(conn, args[1])
        except (ChatError, Refusal) as exc:
            return await self._refused(conn, event, exc)
        except Exception:
            log.exception("chat: %s failed for %s", event, conn.describe())
            return await self._refused(conn, event, ChatError("internal", "the server could not do that; try again"))

    async def _refuse_event(self, sid: str, event: str, error: ChatError) -> dict[str, Any]:
        conn = self.connections.get(sid)
        if conn is not None:
            return await self._refused(conn, event, error)
        log.warning("chat: refused %s from %s: %s", event, sid, error.message)
        return {"error": error.body(event)}

    async def _refused(self, conn: Connection, event: str, error: ChatError | Refusal) -> dict[str, Any]:
        body = error.body(event)
        level = logging.INFO if error.code in ("rate_limited", "slow_mode", "chat_closed", "already_voted") else logging.WARNING
        log.log(level, "chat: refused %s from %s: %s %s", event, conn.describe(), error.code, error.message)
        self.chat.metrics_refused(error.code)
        await self.emit("error", body, to=conn.sid)
        if conn.strikes.strike():
            log.warning("chat: disconnecting %s: too many refused actions", conn.describe())
            await self.emit("error", {"code": "flood", "message": "too many refused actions; disconnected"}, to=conn.sid)
            await self.server.disconnect(conn.sid)
        return {"error": body}

    # --- connect / disconnect ----------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        request: web.Request | None = environ.get("aiohttp.request")
        address = (request.remote if request is not None else None) or "?"
        try:
            conn = await self._admit(sid, request, address, auth)
        except ChatError as exc:
            log.info("chat: refused connection from %s: %s %s", address, exc.code, exc.message)
            self.chat.metrics_refused(exc.code)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.body()) from None
        except Exception:
            log.exception("chat: admitting a connection from %s failed", address)
            error = ChatError("internal", "the server could not admit you; try again")
            raise socketio.exceptions.ConnectionRefusedError(error.message, error.body()) from None
        self.connections[sid] = conn
        conn.rooms = [conn.room.name]
        if conn.moderator:
            conn.rooms.append(conn.room.moderators_room)
        if conn.author is not None:
            conn.rooms.append(conn.room.personal_room(conn.author.key))
        for room in conn.rooms:
            await self.enter_room(sid, room)
        self.chat.presence.join(conn.room.event_id, conn.viewer)
        self.chat.start_background_task(self._welcome(conn))
        log.debug("chat: %s joined", conn.describe())
        return True

    async def _admit(self, sid: str, request: web.Request | None, address: str, auth: Any) -> Connection:
        if request is None:
            raise ChatError("bad_request", "no handshake request")
        payload = svc.parse(svc.JoinPayload, auth)
        identity = identity_of(request)
        user = identity.user if identity is not None else None
        ref = payload.event
        if isinstance(ref, str) and (not ref or len(ref) > 120) or isinstance(ref, int) and not 0 < ref < 2**63:
            raise ChatError("unknown_event", "no such event")  # an id beyond 64 bits is no event either
        room = await self.chat.rooms.get(ref)
        moderator = False
        if user is not None:
            moderator = await self.chat.db.run(lambda s: svc.is_moderator(s, room.event_id, room.owner_id, user))
        if room.visibility == Visibility.UNLISTED and not moderator and (isinstance(ref, int) or ref.isdigit()):
            raise ChatError("unknown_event", "no such event")  # unlisted: only by its slug (the link), ids are counted
        decision = Decision.NOT_FOUND if room.access is None else can_view(
            person_of(identity), room.access, self.chat.media_pass.presented(request.cookies))
        error = svc.admission_error(room, moderator=moderator, decision=decision)
        if error is not None:
            raise error
        author: Author | None = None
        guest_token: str | None = None
        if user is not None:
            author = svc.user_author(user)
        elif payload.nickname is not None:
            if not room.guests_may_join:
                raise ChatError("guests_not_allowed", "log in to chat in this event")
            name = svc.clean_nickname(payload.nickname)
            guest_token = payload.guest_token if payload.guest_token and svc.GUEST_TOKEN.match(payload.guest_token) else None
            guest_token = guest_token or svc.new_guest_token()
            author = Author("guest", svc.guest_id_for(guest_token), name)
            await self._admit_guest(room, author, address, request)
        if author is not None and not moderator:
            who = author
            await self.chat.db.run(lambda s: svc.check_not_banned(s, room.event_id, who))
        viewer = request.cookies.get(VIEWER_COOKIE) or (author.key if author else sid)
        settings = self.chat.settings
        return Connection(sid, room, user, author, moderator, viewer, address,
                          Strikes(settings.chat_max_strikes, settings.chat_rate_window_seconds), guest_token)

    async def _admit_guest(self, room: Room, author: Author, address: str, request: web.Request) -> None:
        """Per-address guest limits, and bans that follow a banned guest's address and browser.

        A guest is only the token its browser sends: without these, dropping the token gives fresh
        rate limits and escapes a ban. Counted before any ``await``, so a burst of connections
        cannot all pass the check at once.
        """
        browser = request.cookies.get(VIEWER_COOKIE)
        marks = [f"addr:{address}"] + ([f"browser:{browser}"] if browser else [])
        banned = self.chat.guests.banned_by(room.event_id, marks) - {author.key}
        refusal = self.chat.guests.admit(address, author.key, marks)
        if refusal is not None:
            raise ChatError(refusal.code, refusal.message)
        for target in sorted(banned):
            ban = await self.chat.db.run(lambda s: svc.active_ban(s, room.event_id, target))
            if ban is not None:
                log.info("chat: refused guest %s from %s: same address or browser as banned %s",
                         author.key, address, target)
                reason = f": {ban.reason}" if ban.reason else ""
                raise ChatError("banned", f"you are banned from this chat{reason}")
            self.chat.guests.lift(room.event_id, target)  # lifted elsewhere (another process)

    async def _welcome(self, conn: Connection) -> None:
        """History, questions and settings for a new connection, sent right after the handshake."""
        room = conn.room
        try:
            history = await self.chat.history(room.event_id)
            mine = conn.author.key if conn.author else None
            questions: list[dict[str, Any]]
            votes: list[int]
            if mine is None and not conn.moderator:
                questions, votes = await self.chat.public_questions(room.event_id), []
            else:
                questions, votes = await self.chat.db.run(lambda s: (
                    svc.questions(s, room.event_id, conn.moderator, mine),
                    svc.my_votes(s, room.event_id, mine) if mine else [],
                ))
        except Exception:
            log.exception("chat: welcome for %s failed", conn.describe())
            return
        if conn.sid not in self.connections:
            return
        you: dict[str, Any] = {
            "author": conn.author.json() if conn.author else None,
            "moderator": conn.moderator,
            "can_post": conn.author is not None,
        }
        if conn.guest_token:
            you["guest_token"] = conn.guest_token
        await self.emit("welcome", {
            "event": {"id": room.event_id, "slug": room.slug, "title": room.title},
            "you": you,
            "settings": (await self.chat.rooms.get(room.event_id)).settings.json(),
            "limits": self.chat.limits_json(),
            "history": history,
            "questions": questions,
            "my_votes": votes,
            "viewers": self.chat.viewers(room.event_id),
        }, to=conn.sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        if conn is not None:
            self.chat.presence.leave(conn.room.event_id, conn.viewer)
            log.debug("chat: %s left", conn.describe())

    # --- messages ----------------------------------------------------------------------------

    def _need_author(self, conn: Connection) -> Author:
        if conn.author is None:
            if conn.room.guests_may_join:
                raise ChatError("login_required", "log in or choose a nickname to take part")
            raise ChatError("login_required", "log in to take part")
        return conn.author

    def _check_guest_address(self, conn: Connection, author: Author) -> None:
        if author.kind == "guest":
            refusal = self.chat.guests.check_message(conn.address)
            if refusal is not None:
                raise refusal

    def _count_guest_address(self, conn: Connection, author: Author) -> None:
        if author.kind == "guest":
            self.chat.guests.take(conn.address)

    async def _current_room(self, conn: Connection) -> Room:
        return await self.chat.rooms.get(conn.room.event_id)

    async def _send(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.TextPayload, data)
        author = self._need_author(conn)
        text = svc.clean_text(payload.text, self.chat.settings.chat_max_message_length)
        room = await self._current_room(conn)
        if not room.settings.open and not conn.moderator:
            raise ChatError("chat_closed", "the chat is closed")
        slow = 0 if conn.moderator else room.settings.slow_mode_seconds
        self._check_guest_address(conn, author)
        refusal = self.chat.limits.check(author.key, len(text.encode()), slow)
        if refusal is not None:
            raise refusal
        self._count_guest_address(conn, author)
        message = await self.chat.db.run(lambda s: svc.post_message(s, room.event_id, author, text, conn.moderator))
        self.chat.remember(room.event_id, message)
        await self.chat.publish_message(room, message)
        return {"ok": True, "id": message["id"]}

    async def _delete(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.IdPayload, data)
        room = conn.room
        message_id = await self.chat.db.run(lambda s: svc.delete_message(s, room, conn.user, payload.id))
        log.info("chat: %s deleted message %d", conn.describe(), message_id)
        self.chat.forget_history(room.event_id)
        await self.chat.batcher.flush(room.name)  # the message, if still pending, goes out before its deletion
        await self.emit("message_deleted", {"id": message_id}, room=room.name)
        return {"ok": True}

    async def _ban(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.AuthorPayload, data)
        room = conn.room
        result = await self.chat.db.run(lambda s: svc.ban(s, room, conn.user, payload.author, payload.reason))
        log.info("chat: %s banned %s", conn.describe(), payload.author)
        if payload.author.startswith("guest:"):
            self.chat.guests.ban(room.event_id, payload.author)
        personal = room.personal_room(payload.author)
        await self.emit("banned", {"reason": payload.reason, "event": room.slug}, room=personal)
        for sid, _eio in list(self.server.manager.get_participants("/", personal)):
            await self.server.disconnect(sid)
        await self.emit("moderation", {"action": "ban", **result}, room=room.moderators_room)
        return {"ok": True, **result}

    async def _unban(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.AuthorPayload, data)
        room = conn.room
        result = await self.chat.db.run(lambda s: svc.unban(s, room, conn.user, payload.author))
        log.info("chat: %s lifted the ban on %s", conn.describe(), payload.author)
        self.chat.guests.lift(room.event_id, payload.author)
        await self.emit("moderation", {"action": "unban", **result}, room=room.moderators_room)
        return {"ok": True, **result}

    async def _settings(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.SettingsPayload, data)
        changes = payload.model_dump(exclude_none=True)
        if not changes:
            raise ChatError("bad_request", "nothing to change: send open, slow_mode_seconds or qa_premoderation")
        room = conn.room
        settings = await self.chat.db.run(lambda s: svc.update_settings(s, room, conn.user, changes))
        self.chat.rooms.invalidate(room.event_id)
        log.info("chat: %s changed settings %s", conn.describe(), changes)
        await self.emit("settings", settings.json(), room=room.name)
        return {"ok": True, "settings": settings.json()}

    # --- questions ---------------------------------------------------------------------------

    async def _ask(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.TextPayload, data)
        author = self._need_author(conn)
        text = svc.clean_text(payload.text, self.chat.settings.chat_max_message_length)
        self._check_guest_address(conn, author)
        refusal = self.chat.limits.check(author.key, len(text.encode()))
        if refusal is not None:
            raise refusal
        self._count_guest_address(conn, author)
        room = conn.room
        question = await self.chat.db.run(lambda s: svc.ask(s, room.event_id, author, text))
        await self._publish_question(room, question, was_visible=False)
        if question["state"] == "pending":
            await self.emit("question", question, room=room.personal_room(author.key))
        return {"ok": True, "question": question}

    async def _vote(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.IdPayload, data)
        author = self._need_author(conn)
        question = await self.chat.db.run(lambda s: svc.vote(s, conn.room.event_id, author, payload.id))
        await self._publish_question(conn.room, question, was_visible=True)
        return {"ok": True, "votes": question["votes"]}

    async def _question(self, conn: Connection, data: Any) -> dict[str, Any]:
        payload = svc.parse(svc.QuestionActionPayload, data)
        room = conn.room
        question, was_visible = await self.chat.db.run(
            lambda s: svc.moderate_question(s, room, conn.user, payload.id, payload.action)
        )
        log.info("chat: %s %s question %d", conn.describe(), payload.action, payload.id)
        await self._publish_question(room, question, was_visible)
        return {"ok": True, "question": question}

    async def _publish_question(self, room: Room, question: dict[str, Any], was_visible: bool) -> None:
        """Visible questions go to everyone; pending and rejected ones only to moderators (and their author)."""
        self.chat.forget_questions(room.event_id)
        if question["state"] in ("approved", "answered"):
            await self.emit("question", question, room=room.name)
            return
        await self.emit("question", question, room=room.moderators_room)
        if was_visible:
            await self.emit("question_removed", {"id": question["id"]}, room=room.name)
