"""BigBlueButton servers and lecturers' meetings in the catalog (admin pages, the CLI and the deposit share it).

A shared secret is sealed at rest with the server secret (``live_server.security.StreamKeyCipher``, bound to
the server's name), opened only to sign a call, and shown back as its first characters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from formats.bbb import ALGORITHMS, BbbError
from live_server import security
from live_server.db import Database
from live_server.errors import Conflict, NotFound, Unprocessable
from live_server.events import STREAM_KEY_CIPHER
from live_server.models import BbbMeeting, BbbServer, Event, User

MIN_SECRET_CHARS = 8
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """What signing a call needs; ``secret`` is in clear: never log or render it."""

    id: int
    name: str
    api_url: str
    secret: str
    algorithm: str

    def __repr__(self) -> str:  # a stray log of the object shows no secret
        return f"ServerConfig(id={self.id}, name={self.name!r}, api_url={self.api_url!r}, algorithm={self.algorithm!r})"


@dataclass(frozen=True)
class ServerView:
    """A server as the admin page and ``live-server bbb servers list`` show it."""

    id: int
    name: str
    api_url: str
    algorithm: str
    secret_hint: str


@dataclass(frozen=True)
class MeetingView:
    id: int
    server_name: str
    meeting_id: str
    owner_username: str
    auto_import: bool
    event_slug: str | None


def callback_url(base_url: str, server_id: int) -> str:
    """What meetings of this server pass as ``meta_bbb-recording-ready-url`` (``bbb.deposit.RecordingReadyApi``)."""
    return f"{base_url.rstrip('/')}/api/v1/bbb/recording-ready/{server_id}"


def _cipher(session: Session) -> security.StreamKeyCipher:
    cipher = session.info.get(STREAM_KEY_CIPHER)
    if cipher is None:
        raise RuntimeError("BigBlueButton secrets are sealed with the server secret: open the Database with stream_key_cipher")
    return cipher  # type: ignore[no-any-return]


def _sealing_id(name: str) -> str:
    return f"bbb-server:{name}"


def normalise_api_url(url: str) -> str:
    """The API endpoint: ``bbb-conf --secret`` prints ``https://host/bigbluebutton/``, calls go to ``…/api``."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise Unprocessable("the API URL must be an http(s) URL such as https://bbb.example.edu/bigbluebutton/api",
                            details=[{"field": "api_url", "message": "not an http(s) URL"}])
    url = url.rstrip("/")
    if url.endswith("/bigbluebutton"):
        url += "/api"
    return url


def add_server(session: Session, name: str, api_url: str, secret: str, algorithm: str = "sha256") -> BbbServer:
    name, secret = name.strip(), secret.strip()
    if not 1 <= len(name) <= 80 or any(ord(c) < 32 for c in name):
        raise Unprocessable("a server name has 1 to 80 characters", details=[{"field": "name", "message": "1 to 80 characters"}])
    if len(secret) < MIN_SECRET_CHARS or any(ord(c) < 33 for c in secret):
        raise Unprocessable(f"the shared secret has at least {MIN_SECRET_CHARS} characters, without spaces",
                            details=[{"field": "secret", "message": "too short"}])
    if algorithm not in ALGORITHMS:
        raise Unprocessable(f"the checksum algorithm is one of {', '.join(ALGORITHMS)}",
                            details=[{"field": "algorithm", "message": "unknown"}])
    url = normalise_api_url(api_url)
    if session.scalar(select(BbbServer.id).where(BbbServer.name == name)) is not None:
        raise Conflict(f"a BigBlueButton server is already named {name!r}")
    row = BbbServer(name=name, api_url=url, secret=_cipher(session).seal(_sealing_id(name), secret),
                    checksum_algorithm=algorithm)
    session.add(row)
    session.flush()
    return row


def remove_server(session: Session, server: int | str) -> None:
    session.delete(_server_row(session, server))


def _server_row(session: Session, server: int | str) -> BbbServer:
    row = session.get(BbbServer, server) if isinstance(server, int) else \
        session.scalar(select(BbbServer).where(BbbServer.name == server))
    if row is None:
        raise NotFound("no such BigBlueButton server")
    return row


class SecretUnreadable(BbbError):
    """The shared secret was sealed under another server secret (``secret_key`` changed): an admin enters it again."""


def server_config(session: Session, server: int | str) -> ServerConfig:
    row = _server_row(session, server)
    try:
        secret = _cipher(session).open(_sealing_id(row.name), row.secret)
    except ValueError:
        raise SecretUnreadable(f"the shared secret of {row.name} cannot be read (secret_key changed?): "
                               "an admin removes the server and adds it again") from None
    return ServerConfig(row.id, row.name, row.api_url, secret, row.checksum_algorithm)


def server_configs(session: Session) -> list[ServerConfig]:
    """Every server whose secret can be read (the others are logged, and shown as ``?`` on the admin page)."""
    configs = []
    for row in session.scalars(select(BbbServer).order_by(BbbServer.name)):
        try:
            configs.append(server_config(session, row.id))
        except SecretUnreadable as exc:
            log.warning("bbb: %s", exc)
    return configs


def server_views(session: Session) -> list[ServerView]:
    cipher = _cipher(session)
    views = []
    for row in session.scalars(select(BbbServer).order_by(BbbServer.name)):
        try:
            hint = security.redact(cipher.open(_sealing_id(row.name), row.secret))
        except ValueError:
            hint = "?"  # sealed under another server secret: re-enter it
        views.append(ServerView(row.id, row.name, row.api_url, row.checksum_algorithm, hint))
    return views


def map_meeting(session: Session, server: int | str, meeting_id: str, owner: str, auto_import: bool = False,
                event_id: int | None = None) -> BbbMeeting:
    """The meeting's recordings are ``owner``'s (a username); mapping it again updates the row."""
    meeting_id = meeting_id.strip()
    if not 2 <= len(meeting_id) <= 256 or "," in meeting_id or any(ord(c) < 32 for c in meeting_id):
        raise Unprocessable("a meeting ID has 2 to 256 characters and no comma",
                            details=[{"field": "meeting_id", "message": "invalid"}])
    row_server = _server_row(session, server)
    user = session.scalar(select(User).where(User.username == owner.strip()))
    if user is None:
        raise Unprocessable(f"no user {owner!r}", details=[{"field": "owner", "message": "unknown user"}])
    row = session.scalar(select(BbbMeeting).where(BbbMeeting.server_id == row_server.id, BbbMeeting.meeting_id == meeting_id))
    if row is None:
        row = BbbMeeting(server_id=row_server.id, meeting_id=meeting_id, owner_id=user.id)
        session.add(row)
    row.owner_id, row.auto_import = user.id, auto_import
    if event_id is not None:
        row.event_id = event_id
    session.flush()
    return row


def unmap_meeting(session: Session, mapping_id: int) -> None:
    row = session.get(BbbMeeting, mapping_id)
    if row is None:
        raise NotFound("no such meeting mapping")
    session.delete(row)


def meeting_views(session: Session, owner_id: int | None = None) -> list[MeetingView]:
    query = (select(BbbMeeting, BbbServer.name, User.username, Event.slug)
             .join(BbbServer, BbbServer.id == BbbMeeting.server_id).join(User, User.id == BbbMeeting.owner_id)
             .outerjoin(Event, Event.id == BbbMeeting.event_id).order_by(BbbServer.name, BbbMeeting.meeting_id))
    if owner_id is not None:
        query = query.where(BbbMeeting.owner_id == owner_id)
    return [MeetingView(m.id, server, m.meeting_id, username, m.auto_import, slug)
            for m, server, username, slug in session.execute(query)]


T = TypeVar("T")


class BbbAdmin:
    """The admin page's catalog work, on the database's thread pool."""

    def __init__(self, db: Database, base_url: str) -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")

    async def _run(self, work: Callable[[Session], T]) -> T:
        return await self.db.run(work)

    def callback_url(self, server_id: int) -> str:
        return callback_url(self.base_url, server_id)

    async def servers(self) -> list[ServerView]:
        return await self._run(server_views)

    async def add_server(self, name: str, api_url: str, secret: str, algorithm: str) -> None:
        await self._run(lambda s: add_server(s, name, api_url, secret, algorithm))

    async def remove_server(self, server_id: int) -> None:
        await self._run(lambda s: remove_server(s, server_id))

    async def meetings(self, owner_id: int | None = None) -> list[MeetingView]:
        return await self._run(lambda s: meeting_views(s, owner_id))

    async def map_meeting(self, server_id: int, meeting_id: str, owner: str, auto_import: bool) -> None:
        await self._run(lambda s: map_meeting(s, server_id, meeting_id, owner, auto_import))

    async def unmap_meeting(self, mapping_id: int) -> None:
        await self._run(lambda s: unmap_meeting(s, mapping_id))
