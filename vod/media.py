"""Serving recordings: GET /vod/{id}/{file}, with the one access rule (``live_server/access.py``).

Public recordings are served to anyone (CORS open); authenticated ones to any logged-in account;
password ones need a pass (``live_server/passes.py``), a cookie the replay page hands out,
checked with one HMAC and renewed by playlist requests. A viewer who unlocked the live event
holds that event's pass, which opens its recordings too; owners and admins are let in by their
login. Where a recording lives, with its access facts, is cached briefly, so players polling or
fetching segments do not query the catalog each time. Segments are immutable; the playable
playlist changes only on a trim, so it is cached for a few seconds.

A recording in object storage (``vod/objects.py``) is checked the same way; then segments, the
thumbnail and the download are answered with a 302 to a short-lived presigned URL, and playlists
are sent from their local cached copy (or read from the object when this host has none).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from live_server.db import Database
from live_server.access import Decision, Target, can_manage, can_view, recording_target
from live_server.models import Event, Recording, Visibility
from live_server.passes import MediaPasses
from recorder.storage import MASTER, RecordingFiles, listed_names, listing_playlist, served_as_is
from web.media import CONTENT_TYPES, SAFE_TAIL, MediaCache, PersonSource

from .access import PUBLIC_REF
from .objects import RecordingStores, StoreUnavailable
from .subtitles import SubtitleMedia

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingLocation:
    recording_id: int
    event_id: int | None
    folder: Path
    access: Target
    storage_url: str | None = None  # set when the media is in object storage
    by_id: bool = True  # named by its sequential id (not enough for an unlisted recording)


class RecordingDirectory:
    """Recording id or public id → folder and access facts, cached for ``ttl_seconds``; invalidated on changes."""

    def __init__(self, db: Database, media_dir: Path, ttl_seconds: float = 2.0) -> None:
        self.db = db
        self.media_dir = media_dir
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, RecordingLocation | None]] = {}
        self._views: dict[tuple[int, str], tuple[bytes, frozenset[str]]] = {}

    async def locate(self, ref: int | str) -> RecordingLocation | None:
        key = str(ref)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        by_id = key.isascii() and key.isdigit()
        if not (by_id and len(key) < 19) and not PUBLIC_REF.match(key):
            return None

        def work(session: Session) -> RecordingLocation | None:
            if by_id:
                row = session.get(Recording, int(key))
            else:
                row = session.scalar(select(Recording).where(Recording.public_id == key))
            if row is None or not row.media_path:
                return None
            event = session.get(Event, row.event_id) if row.event_id is not None else None
            return RecordingLocation(row.id, row.event_id, self.media_dir / row.media_path,
                                     recording_target(row, event), row.storage_url, by_id)

        location = await self.db.run(work)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), location)
        return location

    def invalidate(self, recording_id: int) -> None:
        for key in [k for k, (_, loc) in self._cache.items() if k == str(recording_id)
                    or (loc is not None and loc.recording_id == recording_id)]:
            self._cache.pop(key, None)

    def view_names(self, recording_id: int, view: bytes, playlist: str) -> frozenset[str]:
        """The files a playlist players get (the view ``vod.m3u8``, or an audio-description rendition's) lists;
        parsed once per version of the playlist."""
        cached = self._views.get((recording_id, playlist))
        if cached is not None and cached[0] is view:
            return cached[1]
        names = listed_names(view)
        if len(self._views) > 10_000:
            self._views.clear()
        self._views[(recording_id, playlist)] = (view, names)
        return names


class VodMediaHandler:
    """GET /vod/{id}/{tail}: the files of a recording's folder."""

    def __init__(self, directory: RecordingDirectory, cache: MediaCache, passes: MediaPasses,
                 stores: RecordingStores | None = None, cookie_secure: str = "auto",
                 subtitles: SubtitleMedia | None = None) -> None:
        self.directory = directory
        self.cache = cache
        self.passes = passes
        self.stores = stores
        self.cookie_secure = cookie_secure
        self.subtitles = subtitles  # the text tracks as subtitle renditions (master.m3u8, subtitles/...)

    async def __call__(self, request: web.Request, who: PersonSource | None = None) -> web.StreamResponse:
        ref, tail = request.match_info["id"], request.match_info["tail"]
        if not SAFE_TAIL.match(tail) or ".." in tail or tail.startswith("."):
            raise web.HTTPNotFound(text="no such media\n")
        location = await self.directory.locate(ref)
        if location is None:
            raise web.HTTPNotFound(text="no such recording\n")
        # Who is asking is looked up (cached, session_people.py) only when it can change the answer.
        presented = self.passes.presented(request.cookies)
        hidden = location.by_id and location.access.visibility == Visibility.UNLISTED  # only by its public id...
        decision = can_view(None, location.access, presented)
        if (hidden or decision is not Decision.ALLOWED) and who is not None:
            person = await who.person(request)
            hidden = hidden and not can_manage(person, location.access)  # ...except for its managers
            decision = can_view(person, location.access, presented)
        if hidden:
            raise web.HTTPNotFound(text="no such recording\n")
        if decision is Decision.NOT_FOUND:
            raise web.HTTPNotFound(text="no such recording\n")
        if decision is not Decision.ALLOWED:
            raise web.HTTPForbidden(text="this recording's media needs a login or a valid viewing pass; open its replay page\n")
        private = location.access.private
        suffix = os.path.splitext(tail)[1]
        content_type = CONTENT_TYPES.get(suffix)
        if content_type is None:
            raise web.HTTPNotFound(text="no such media\n")
        is_playlist = suffix == ".m3u8"
        if self.subtitles is not None and tail.startswith("subtitles/"):  # generated from the catalog, same rule
            return await self._subtitles(request, location, tail, content_type, private)
        if not served_as_is(tail) and not await self._in_view(location, tail):  # the rest must be listed in the view
            # trimmed out, or not for players: the journal, the MP4 download (through the API, owners only);
            # an fMP4 recording's init sections (.mp4) are listed (EXT-X-MAP), so they are served
            raise web.HTTPNotFound(text="no such media\n")
        scope = "private" if private else "public"
        if location.storage_url is None:
            data = await self.cache.read(location.folder / tail, immutable=not is_playlist and suffix != ".jpg")
            if data is None and (self.stores is None or self.stores.s3 is None):
                raise web.HTTPNotFound(text="no such media\n")
            if data is None:  # uploaded to object storage a moment ago? (the location is cached briefly)
                self.directory.invalidate(location.recording_id)
                fresh = await self.directory.locate(location.recording_id)
                if fresh is None or fresh.storage_url is None:
                    raise web.HTTPNotFound(text="no such media\n")
                location = fresh
        if location.storage_url is not None:
            if not is_playlist:
                self._redirect(location.storage_url, tail, scope)
            data = await self._playlist(location, tail)
        if tail == MASTER and self.subtitles is not None and data is not None:
            data = await self.subtitles.master(location.recording_id, data)
        if tail == MASTER and self.subtitles is not None:
            cache_control = f"{scope}, no-cache"  # a track added or deleted shows at the next load of the master
        elif is_playlist or suffix == ".jpg":
            cache_control = f"{scope}, max-age=5"
        else:
            cache_control = f"{scope}, max-age=31536000, immutable"
        headers = {"Content-Type": content_type, "Cache-Control": cache_control}
        if not private:
            headers["Access-Control-Allow-Origin"] = "*"
        response = web.Response(body=data, headers=headers)
        if is_playlist:  # while someone watches, keep the pass that opened it alive
            self.passes.renew(request, response, location.access, self.cookie_secure)
            if location.access.event is not None:
                self.passes.renew(request, response, location.access.event, self.cookie_secure)
        return response

    async def _subtitles(self, request: web.Request, location: RecordingLocation, tail: str, content_type: str,
                         private: bool) -> web.Response:
        """A text track's playlist or WebVTT segment (``vod/subtitles.py``), under the recording's access rule."""
        assert self.subtitles is not None

        async def read(name: str) -> bytes | None:
            if location.storage_url is None:
                return await self.cache.read(location.folder / name, immutable=not name.endswith(".m3u8"))
            try:
                return await self._playlist(location, name)
            except web.HTTPException:
                return None

        data = await self.subtitles.track_file(location.recording_id, tail, read)
        if data is None:
            raise web.HTTPNotFound(text="no such media\n")
        headers = {"Content-Type": content_type, "Cache-Control": f"{'private' if private else 'public'}, max-age=5"}
        if not private:
            headers["Access-Control-Allow-Origin"] = "*"
        response = web.Response(body=data, headers=headers)
        if tail.endswith(".m3u8"):
            self.passes.renew(request, response, location.access, self.cookie_secure)
        return response

    def _redirect(self, storage_url: str, name: str, scope: str) -> NoReturn:
        """The bytes come from the object store: a presigned URL, valid ``s3_url_ttl_seconds``."""
        if self.stores is None:
            raise web.HTTPServiceUnavailable(text="recording storage is not configured here\n")
        try:
            store, location = self.stores.of(storage_url)
            url = store.signed_url(location or "", name)
        except StoreUnavailable as exc:
            log.error("recordings: %s", exc)
            raise web.HTTPServiceUnavailable(text="this recording's storage is not reachable from this server\n") from None
        if url is None:
            raise web.HTTPNotFound(text="no such media\n")
        # Shared caches may keep a public redirect briefly (the URL has >= half its lifetime left, >= 30 s);
        # private ones are per viewer.
        cache_control = "private, no-store" if scope == "private" else "public, max-age=10"
        raise web.HTTPFound(url, headers={"Cache-Control": cache_control})

    async def _in_view(self, location: RecordingLocation, name: str) -> bool:
        """Players get what the current view lists (an audio-description segment: what its rendition's
        playlist lists): a trimmed-out segment is not served."""
        if name.endswith(".m3u8"):
            return False  # the journal and any other playlist: not for players
        playlist = listing_playlist(name)
        if location.storage_url is None:
            view = await self.cache.read(location.folder / playlist, immutable=False)
        else:
            try:
                view = await self._playlist(location, playlist)
            except web.HTTPNotFound:
                view = None
        return view is not None and name in self.directory.view_names(location.recording_id, view, playlist)

    async def _playlist(self, location: RecordingLocation, name: str) -> bytes:
        """The cached copy kept beside the (removed) media, else the object."""
        data = await self.cache.read(location.folder / name, immutable=False)
        if data is not None:
            return data
        if self.stores is None or location.storage_url is None:
            raise web.HTTPNotFound(text="no such media\n")
        try:
            store, where = self.stores.of(location.storage_url)
            data = await asyncio.get_running_loop().run_in_executor(None, store.read, where or "", name)
        except StoreUnavailable as exc:
            log.error("recordings: %s", exc)
            raise web.HTTPServiceUnavailable(text="this recording's storage is not reachable from this server\n") from None
        except Exception as exc:  # the store's own errors
            log.warning("recording %d: %s not read from object storage: %s", location.recording_id, name, exc)
            raise web.HTTPServiceUnavailable(text="the recording's storage did not answer; try again\n",
                                             headers={"Retry-After": "5"}) from None
        if data is None:
            raise web.HTTPNotFound(text="no such media\n")
        return data
