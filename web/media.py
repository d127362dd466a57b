"""Serving live HLS media: playlists and segments from memory, access checked without the database.

`web.static` costs three thread-pool trips per request (about 1,400 req/s here, see BASELINES.md);
a lecture hall of 1,500 viewers needs ~1,500 req/s of playlists and segments. So playlists are
re-read only when their mtime changes and segments, immutable once listed, are kept in a bounded
LRU. Access follows the one rule (``live_server/access.py``) with the event's access facts cached
by the directory and the viewer's login session resolved only when the rule needs it, from a short
cache (``live_server/session_people.py``): a logged-in viewer's polls cost no query. A password
event's pass (``live_server/passes.py``) is checked with one HMAC and renewed by playlist requests
while someone watches. In production nginx serves the same folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from formats.m3u8 import LlPlaylist, Reload, blocking_timeout, decide_reload
from live_server.access import Decision, Person, Target, can_view
from live_server.passes import MediaPasses

if TYPE_CHECKING:
    from sqlalchemy.orm import Session as SqlSession

    from live_server.db import Database

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt; charset=utf-8",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}
SAFE_TAIL = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*\.[a-z0-9]+$")


@dataclass(frozen=True)
class MediaLocation:
    """Where an event's live media is, and the event's access facts."""

    event_id: int
    folder: Path
    access: Target

    @property
    def private(self) -> bool:
        return self.access.private


class PersonSource(Protocol):
    """Who is asking, asked only when the access rule needs it (``live_server.session_people.SessionPeople``)."""

    async def person(self, request: web.Request) -> Person | None: ...


async def media_decision(request: web.Request, access: Target, passes: MediaPasses, who: PersonSource | None) -> Decision:
    """``can_view`` without a session lookup when it allows anyone anyway (public, unlisted, a valid pass):
    a person can only add rights, so the answer is the same as asking with them."""
    presented = passes.presented(request.cookies)
    decision = can_view(None, access, presented)
    if decision is Decision.ALLOWED or who is None:
        return decision
    return can_view(await who.person(request), access, presented)


class MediaDirectory(Protocol):
    """Maps an event slug to its current media folder (cached; the catalog is not asked per request)."""

    async def locate(self, slug: str) -> MediaLocation | None: ...


class LowLatencyPlaylists(Protocol):
    """One LL-HLS rendition's playlists as published: in memory on the ingest node
    (``ingest.packaging.ll_packager.LlPlaylists``), read from the media folder on a web-only node
    (``web.ll_files.LlFilePlaylists``). ``text`` is the text of the version ``current`` returned last."""

    def current(self, name: str) -> LlPlaylist | None: ...

    def text(self, name: str, skip: bool = False) -> str: ...

    def changed(self) -> asyncio.Event: ...


class LowLatencyStreams(Protocol):
    """Where an event's LL-HLS playlists are: the live hub (``ingest.live.LiveStreams``) where ingest runs,
    the run's media folder (``web.ll_files.LlFileStreams``) on a web-only node."""

    def ll_playlists(self, event_id: int, folder: Path, rendition: str) -> LowLatencyPlaylists | None: ...


#: The media playlists of a rendition that LL-HLS events publish in memory.
LL_PLAYLISTS = ("live.m3u8", "dvr.m3u8")


class MediaCache:
    """Bytes of recently served files; mutable files revalidated by (mtime, size), immutable ones kept."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, inline_read_limit: int = 64 * 1024) -> None:
        self.max_bytes = max_bytes
        self.inline_read_limit = inline_read_limit
        self._entries: OrderedDict[Path, tuple[int, int, bytes]] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    async def read(self, path: Path, immutable: bool) -> bytes | None:
        cached = self._entries.get(path)
        if cached is not None and immutable:
            self._entries.move_to_end(path)
            self.hits += 1
            return cached[2]
        try:
            st = os.stat(path)  # one syscall, no thread trip; files are on local disk
        except (FileNotFoundError, NotADirectoryError):
            return None
        if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            self._entries.move_to_end(path)
            self.hits += 1
            return cached[2]
        self.misses += 1
        if st.st_size <= self.inline_read_limit:
            data = _read(path)  # a playlist: smaller than a page, cheaper inline than via a thread
        else:
            data = await asyncio.get_running_loop().run_in_executor(None, _read, path)
        if data is None:
            return None
        self._store(path, st.st_mtime_ns, len(data), data)
        return data

    def _store(self, path: Path, mtime_ns: int, size: int, data: bytes) -> None:
        old = self._entries.pop(path, None)
        if old is not None:
            self._size -= len(old[2])
        if len(data) > self.max_bytes // 4:
            return
        self._entries[path] = (mtime_ns, size, data)
        self._size += len(data)
        while self._size > self.max_bytes and self._entries:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def holds(self, path: Path) -> bool:
        return path in self._entries

    def forget_under(self, folder: Path) -> None:
        for path in [p for p in self._entries if folder in p.parents]:
            self._size -= len(self._entries.pop(path)[2])


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


class ViewerCounter:
    """Distinct viewers per event in a sliding window, from playlist polls: a dict update per poll, no I/O."""

    def __init__(self, window_seconds: float = 20.0) -> None:
        self.window = window_seconds
        self._seen: dict[int, dict[str, float]] = {}

    def seen(self, event_id: int, viewer: str, now: float | None = None) -> None:
        self._seen.setdefault(event_id, {})[viewer] = time.monotonic() if now is None else now

    def count(self, event_id: int, now: float | None = None) -> int:
        viewers = self._seen.get(event_id)
        if not viewers:
            return 0
        cutoff = (time.monotonic() if now is None else now) - self.window
        stale = [v for v, t in viewers.items() if t < cutoff]
        for v in stale:
            del viewers[v]
        return len(viewers)

    def counts(self) -> dict[int, int]:
        return {event_id: self.count(event_id) for event_id in list(self._seen)}

    def forget(self, event_id: int) -> None:
        self._seen.pop(event_id, None)


VIEWER_COOKIE = "live_viewer"
_VIEWER_TOKEN = re.compile(r"^[0-9a-f]{24}$")


def viewer_id(request: web.Request) -> str:
    """A stable, anonymous handle for one player.

    The ``live_viewer`` cookie (set with the master playlist) tells apart the hundreds of students
    behind one campus NAT with the same browser; without it (cross-origin embeds, curl), address
    and user agent, hashed.
    """
    token = request.cookies.get(VIEWER_COOKIE, "")
    if _VIEWER_TOKEN.match(token):
        return token
    raw = f"{request.remote}|{request.headers.get('User-Agent', '')}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def player_handle(request: web.Request, response: web.StreamResponse) -> str:
    """The player's ``live_viewer`` handle, given to it now (on ``response``) if it has none: a replay
    viewer who never watched live is told apart from the others behind the same address and browser."""
    token = request.cookies.get(VIEWER_COOKIE, "")
    if _VIEWER_TOKEN.match(token):
        return token
    token = secrets.token_hex(12)
    response.set_cookie(VIEWER_COOKIE, token, max_age=24 * 3600, path="/", httponly=True, samesite="Lax")
    return token


class AudienceTap(Protocol):
    """Told of every media playlist poll (``audience.collector.Audience.polled``): a dict update, no I/O."""

    def polled(self, event_id: int, viewer: str, tail: str, session_token: str | None, captions: bool = False) -> None: ...


SESSION_COOKIE = "live_session"  # the login cookie (live_server.middleware.SESSION_COOKIE)
CAPTIONS_HEADER = "X-Live-Captions"  # our player says "1" on its playlist polls while captions are shown


class LiveMediaHandler:
    """GET /live/{slug}/{tail}: the HLS files of an event's current live run."""

    def __init__(self, directory: MediaDirectory, cache: MediaCache, viewers: ViewerCounter, passes: MediaPasses,
                 accel_redirect: str = "", media_root: Path | None = None, cookie_secure: str = "auto",
                 audience: AudienceTap | None = None, low_latency: LowLatencyStreams | None = None,
                 decision_seconds: int = 5) -> None:
        self.audience = audience
        self.low_latency = low_latency  # LL-HLS playlists: in memory (ingest here) or from files (web-only node)
        self.directory = directory
        self.cache = cache
        self.viewers = viewers
        self.passes = passes
        self.cookie_secure = cookie_secure
        self.accel_redirect = accel_redirect  # nginx internal location mapped to ``media_root``
        self.media_root = media_root
        self.decision_seconds = decision_seconds  # how long nginx keeps a viewer's decision (X-Accel-Expires)

    async def __call__(self, request: web.Request, who: PersonSource | None = None) -> web.StreamResponse:
        slug, tail = request.match_info["slug"], request.match_info["tail"]
        if not SAFE_TAIL.match(tail) or ".." in tail:
            raise web.HTTPNotFound(text="no such media\n")
        location = await self.directory.locate(slug)
        if location is None:
            raise web.HTTPNotFound(text="no such live event\n")
        if await media_decision(request, location.access, self.passes, who) is not Decision.ALLOWED:
            raise web.HTTPForbidden(text="this event's media needs a login or a valid viewing pass; open the event page\n")
        suffix = os.path.splitext(tail)[1]
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None:
            raise web.HTTPNotFound(text="no such media\n")
        is_playlist = suffix == ".m3u8"
        immutable = not is_playlist and suffix != ".vtt"
        scope = "private" if location.private else "public"
        rendition, _, name = tail.rpartition("/")
        ll = (self.low_latency.ll_playlists(location.event_id, location.folder, rendition)
              if self.low_latency and rendition else None)
        self._count(request, location, tail)
        data: bytes | None = None
        if ll is not None and name in LL_PLAYLISTS and ll.current(name) is not None:
            data = (await _blocking_reload(request, ll, name)).encode()
        elif immutable and self.accel_redirect and self.media_root is not None:
            if ll is not None and suffix == ".m4s" and not await self._hint_passed(ll, name):
                raise web.HTTPNotFound(text="no such media\n")
            return self._accel(location, tail, content_type, scope)
        else:
            data = await self.cache.read(location.folder / tail, immutable=immutable)
            if data is None and ll is not None and suffix == ".m4s" and await self._hint_passed(ll, name, hinted_only=True):
                data = await self.cache.read(location.folder / tail, immutable=True)
        if data is None:
            raise web.HTTPNotFound(text="no such media\n")
        if is_playlist:
            cache_control = f"{scope}, max-age=1"
        elif suffix == ".vtt":
            cache_control = f"{scope}, max-age=2"
        else:
            cache_control = f"{scope}, max-age=31536000, immutable"
        headers = {"Content-Type": content_type, "Cache-Control": cache_control}
        if not location.private:
            headers["Access-Control-Allow-Origin"] = "*"
        renew = (lambda r: self.passes.renew(request, r, location.access, self.cookie_secure)) if is_playlist else None
        if len(data) > STREAM_CHUNK:
            return await _send_paced(request, data, headers, renew)
        response = web.Response(body=data, headers=headers)
        if renew is not None:
            renew(response)
        if tail in ("master.m3u8", "master-dvr.m3u8"):
            player_handle(request, response)
        return response

    async def decide(self, request: web.Request, who: PersonSource | None = None) -> web.Response:
        """GET /live-decision/{slug}/{tail}: nginx's ``auth_request`` for a live media file or playlist.

        What the media route decides for a request, without the bytes: nginx keeps the answer for one
        viewer (its cookies, address and browser) and one rendition ``decision_seconds`` (``X-Accel-Expires``)
        and serves the files from disk itself, so a player's parts cost the app one request per few
        seconds instead of three per second. 204 with the run's folder (relative to the media root), the
        Cache-Control and CORS nginx adds, and a renewed pass (Set-Cookie: nginx never caches those);
        403 refused; 401 "not mine to decide" for an unknown event or file name: nginx then hands the request
        to the media route, which answers it (404). ``auth_request`` passes on only 2xx, 401 and 403; any other
        status is an error it logs on every such request and turns into a 500.
        Only behind nginx (``accel_redirect`` set: the app trusts nginx with its media folder anyway).
        """
        if not self.accel_redirect or self.media_root is None:
            raise web.HTTPNotFound(text="not found\n")
        slug, tail = request.match_info["slug"], request.match_info["tail"]
        suffix = os.path.splitext(tail)[1]
        if not SAFE_TAIL.match(tail) or ".." in tail or suffix not in CONTENT_TYPES:
            return web.Response(status=401, text="no such media: ask the media route\n")
        location = await self.directory.locate(slug)
        if location is None:
            return web.Response(status=401, text="no such live event: ask the media route\n")
        expires = {"X-Accel-Expires": str(self.decision_seconds)}
        if await media_decision(request, location.access, self.passes, who) is not Decision.ALLOWED:
            return web.Response(status=403, headers=expires)
        self._count(request, location, tail)
        scope = "private" if location.private else "public"
        response = web.Response(status=204, headers={
            **expires,
            "X-Live-Folder": os.path.relpath(location.folder, self.media_root),
            "X-Live-Cache-Control": f"{scope}, max-age=31536000, immutable",
        })
        if not location.private:
            response.headers["X-Live-Cors"] = "*"
        self.passes.renew(request, response, location.access, self.cookie_secure)
        return response

    def _count(self, request: web.Request, location: MediaLocation, tail: str) -> None:
        """Every player request counts, media ones too: behind nginx (deploy/nginx) a lecture hall's identical
        playlist requests reach the app once, and each player's own requests reach it once per decision."""
        if tail in ("master.m3u8", "master-dvr.m3u8"):
            return
        viewer = viewer_id(request)
        self.viewers.seen(location.event_id, viewer)
        if self.audience is not None:
            self.audience.polled(location.event_id, viewer, tail, request.cookies.get(SESSION_COOKIE),
                                 request.headers.get(CAPTIONS_HEADER) == "1")

    @staticmethod
    async def _hint_passed(ll: LowLatencyPlaylists, name: str, hinted_only: bool = False) -> bool:
        """A request for the part the live playlist hints at (``EXT-X-PRELOAD-HINT``) waits for it
        (RFC 8216bis 6.2.6) instead of a 404, until the playlist moves past the hint: then it is on disk
        (True). Any other part is answered at once (True: look on disk), unless ``hinted_only``;
        False when the hinted part did not come in time."""
        playlist = ll.current("live.m3u8")
        if playlist is None or playlist.preload_hint != name:
            return not hinted_only
        try:
            async with asyncio.timeout(blocking_timeout(playlist)):
                while playlist is not None and playlist.preload_hint == name:
                    await ll.changed().wait()
                    playlist = ll.current("live.m3u8")
        except TimeoutError:
            return False
        return True

    def _accel(self, location: MediaLocation, tail: str, content_type: str, scope: str) -> web.Response:
        """Access is checked; nginx sends the segment itself (sendfile) from its internal location."""
        assert self.media_root is not None
        relative = os.path.relpath(location.folder / tail, self.media_root)
        headers = {
            "X-Accel-Redirect": self.accel_redirect + relative,
            "Content-Type": content_type,
            "Cache-Control": f"{scope}, max-age=31536000, immutable",
        }
        if scope == "public":
            headers["Access-Control-Allow-Origin"] = "*"
        return web.Response(headers=headers)


async def _blocking_reload(request: web.Request, ll: LowLatencyPlaylists, name: str) -> str:
    """The LL playlist ``name`` once it satisfies the request's delivery directives (RFC 8216bis 6.2.5.2).

    Every waiting request sleeps on the stream's one ``changed`` event and reads the text rendered
    once for the new version: a lecture hall of blocked players costs one render per part, and
    nothing polls. 400 for directives the spec rejects, 503 after blocking three target durations.
    """
    query = request.query
    msn, part, skip = query.get("_HLS_msn"), query.get("_HLS_part"), query.get("_HLS_skip")
    playlist = ll.current(name)
    assert playlist is not None
    decision = decide_reload(playlist, msn, part, skip)
    if decision.outcome is Reload.WAIT:
        try:
            async with asyncio.timeout(blocking_timeout(playlist)):
                while decision.outcome is Reload.WAIT:
                    await ll.changed().wait()
                    playlist = ll.current(name)
                    if playlist is None:  # the run ended under the request
                        raise web.HTTPNotFound(text="no such media\n")
                    decision = decide_reload(playlist, msn, part, skip)
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the requested part did not arrive in time\n",
                                             headers={"Retry-After": "1"}) from None
    if decision.outcome is Reload.BAD_REQUEST:
        raise web.HTTPBadRequest(text=f"{decision.reason}\n")
    return ll.text(name, decision.skip)


# CORS preflight for media (live and recordings). Players embedded in other sites (LMS pages) often
# add a request header of their own, which makes the browser send OPTIONS first; without an answer
# the player fails before its first playlist.
PREFLIGHT_METHODS = "GET, HEAD, OPTIONS"
PREFLIGHT_HEADERS = "Range, If-None-Match, If-Modified-Since, Cache-Control, Pragma, X-Live-Captions"
PREFLIGHT_MAX_AGE = "86400"  # browsers cap it (Chromium: 2 h)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


async def media_preflight(request: web.Request) -> web.Response:
    """OPTIONS /live/... and /vod/...: the methods and request headers a cross-origin player may use.

    Answered without looking the event up: it grants nothing, since the GET still checks access and
    only public media carries ``Access-Control-Allow-Origin``. Requested header names are mirrored
    (requests are never credentialed with ``*``, and the server ignores headers it does not know);
    a malformed list gets the fixed one, which the browser then refuses.
    """
    requested = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
    allowed = PREFLIGHT_HEADERS
    if requested and len(requested) <= 32 and all(_HEADER_NAME.match(h) for h in requested):
        allowed = ", ".join(requested)
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": PREFLIGHT_METHODS,
        "Access-Control-Allow-Headers": allowed,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Access-Control-Request-Headers",
    })


STREAM_CHUNK = 64 * 1024


async def _send_paced(request: web.Request, data: bytes, headers: dict[str, str],
                      before: Callable[[web.StreamResponse], None] | None = None) -> web.StreamResponse:
    """Send a big body in chunks, waiting for each to drain.

    One ``Response(body=...)`` hands the whole segment to the transport, which copies whatever the
    socket cannot take at once: with a lecture hall of slow players that is a copy of every
    segment per player (1.1 GB measured with 1,500 players). Paced writes keep it to a chunk each.
    """
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    if before is not None:
        before(response)
    await response.prepare(request)
    view = memoryview(data)
    try:
        for start in range(0, len(data), STREAM_CHUNK):
            await response.write(view[start:start + STREAM_CHUNK])
        await response.write_eof()
    except ConnectionError:  # the player left mid-segment (its timeout, a seek): a clean end, not an error
        pass
    return response


class CatalogMediaDirectory:
    """``MediaDirectory`` over the catalog, with a short cache so polls do not query the database.

    One lookup per slug is in flight at a time (single flight): when an entry expires under a
    lecture hall of players, they wait for the same query instead of each starting one, and a
    known location is served stale while it is refreshed.
    """

    def __init__(self, db: "Database", media_dir: Path, ttl_seconds: float = 2.0, miss_ttl_seconds: float = 0.5) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ttl = ttl_seconds
        self.miss_ttl = miss_ttl_seconds  # an event about to go live should not 404 for long
        self._cache: dict[str, tuple[float, MediaLocation | None]] = {}
        self._pending: dict[str, asyncio.Future[MediaLocation | None]] = {}
        self.lookups = 0

    async def locate(self, slug: str) -> MediaLocation | None:
        now = time.monotonic()
        cached = self._cache.get(slug)
        if cached is not None and now - cached[0] < (self.ttl if cached[1] is not None else self.miss_ttl):
            return cached[1]
        pending = self._pending.get(slug)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(slug))
            self._pending[slug] = pending
            pending.add_done_callback(lambda done: self._lookup_done(slug, done))
        if cached is not None and cached[1] is not None:
            return cached[1]  # stale while revalidating
        return await asyncio.shield(pending)

    def _lookup_done(self, slug: str, done: "asyncio.Future[MediaLocation | None]") -> None:
        self._pending.pop(slug, None)
        if not done.cancelled() and done.exception() is not None:
            log.warning("looking up the media of %r failed: %r", slug, done.exception())

    async def _lookup(self, slug: str) -> MediaLocation | None:
        self.lookups += 1
        location = await self.db.run(lambda s: _locate(s, self.media_dir, slug))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[slug] = (time.monotonic(), location)
        return location

    def invalidate(self, slug: str | None = None) -> None:
        if slug is None:
            self._cache.clear()
        else:
            self._cache.pop(slug, None)


def _locate(session: "SqlSession", media_dir: Path, slug: str) -> MediaLocation | None:
    from sqlalchemy import select

    from live_server.layout import live_run_folder
    from live_server.access import event_target
    from live_server.models import Event, EventState

    event = session.scalar(select(Event).where(Event.slug == slug))
    if event is None or event.started_at is None or event.state == EventState.ENDED:
        return None  # once ended, the live URLs serve nothing: the recording (with its own rules) is the replay
    return MediaLocation(event.id, live_run_folder(media_dir, event.id, event.started_at), event_target(event))


VIEWERS = web.AppKey("viewers", ViewerCounter)  # the app's counter (tests play a viewer)
MEDIA_CACHE = web.AppKey("media_cache", MediaCache)  # the app's cache (tests check what nginx served)
