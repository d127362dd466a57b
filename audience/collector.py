"""Collecting the audience in memory and writing it in batches.

The hot path (``polled``, called by the live media handler for each media playlist poll) is a few
dict operations: no I/O, no await. Every ``audience_flush_seconds`` the collected minutes are merged
with the other workers' through Redis (``audience/merge.py``), viewers' login sessions are resolved
(once per player), and everything is written in one transaction on the db thread pool: writes per
minute follow the number of viewers and minutes, never the number of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Protocol

from aiohttp import web
from live_server.db import Database
from live_server.settings import Settings

from . import store
from .merge import Merge, MemoryMerge, MinuteBatch
from .ranges import Beacon, bucket_counts

log = logging.getLogger(__name__)


class PeopleBySession(Protocol):
    """Login session token -> person (``live_server.session_people.SessionPeople``, cached)."""

    async def of_session(self, token: str) -> object | None: ...


@dataclass
class _Replay:
    event_id: int | None
    user_id: int | None
    first: float
    last: float
    seconds: float


def _combined(deltas: list[store.SessionDelta]) -> list[store.SessionDelta]:
    merged: dict[tuple[str, int, str], store.SessionDelta] = {}
    for delta in deltas:
        key = (delta.kind, delta.target_id, delta.viewer)
        known = merged.get(key)
        if known is None:
            merged[key] = delta
            continue
        known.first_seen, known.last_seen = min(known.first_seen, delta.first_seen), max(known.last_seen, delta.last_seen)
        known.watched_seconds += delta.watched_seconds
        known.user_id = delta.user_id if delta.user_id is not None else known.user_id
    return list(merged.values())


def storage_viewer(viewer: str) -> str:
    """What the catalog keeps of a player's anonymous id: a hash, so rows cannot be matched to a cookie."""
    return hashlib.blake2b(viewer.encode(), digest_size=16, person=b"live-audience").hexdigest()


class Audience:
    """Collector, batch writer and retention of the audience figures of one process."""

    def __init__(self, settings: Settings, db: Database, people: PeopleBySession | None = None, merge: Merge | None = None,
                 clock: Callable[[], float] = time.time, captions_folder: str = "subtitles",
                 retention_batch: int = 5_000) -> None:
        """``merge``: how minutes are combined with other workers' (``RedisMerge``); none: this process alone."""
        self.settings = settings
        self.enabled = settings.audience_enabled
        self.slot_seconds = settings.audience_slot_seconds
        self.bucket_seconds = settings.audience_bucket_seconds
        self.worker = f"{secrets.token_hex(4)}@{settings.effective_node_name}"[:120]
        self.captions_folder = captions_folder
        self.retention_batch = retention_batch  # sessions reduced per transaction
        self.clock = clock  # public: tests drive it instead of waiting
        self._minutes: dict[tuple[int, int], MinuteBatch] = {}
        self._rows: dict[tuple[int, int], store.MinuteRow] = {}  # this worker's rows of recent minutes
        self._tokens: dict[str, str] = {}  # viewer -> login session token, until the next flush resolves it
        self._users: dict[str, tuple[int, int | None]] = {}  # viewer -> (hash of its session token, user id)
        self._replays: dict[tuple[int, str], _Replay] = {}
        self._buckets: Counter[tuple[int, int]] = Counter()
        self._unwritten_deltas: list[store.SessionDelta] = []  # merged but not written (the catalog failed)
        self._unwritten_rows: list[store.MinuteRow] = []
        self._db = db
        self._people = people
        self.merge: Merge = merge if merge is not None else MemoryMerge()
        self._tasks: list[asyncio.Task[None]] = []
        self._flushing = asyncio.Lock()
        self.flushes = 0
        self.rows_written = 0

    # --- the hot path ------------------------------------------------------------------------

    def polled(self, event_id: int, viewer: str, tail: str, session_token: str | None, captions: bool = False) -> None:
        """A player polled one of an event's media playlists (``tail``: ``<rendition>/live.m3u8``); ``captions``:
        it says it shows captions (our player's overlay is fed by the chat socket, not the subtitles playlist)."""
        if not self.enabled:
            return
        now = self.clock()
        minute = int(now // 60)
        batch = self._minutes.get((event_id, minute))
        if batch is None:
            batch = self._minutes[(event_id, minute)] = MinuteBatch(event_id, minute)
        slots = batch.slots.get(viewer)
        if slots is None:
            slots = batch.slots[viewer] = set()
        slots.add(int(now % 60) // self.slot_seconds)
        folder = tail.split("/", 1)[0] if "/" in tail else ""
        if folder == self.captions_folder:
            batch.captions.add(viewer)
        else:
            if captions:
                batch.captions.add(viewer)
            if folder:
                batch.renditions.setdefault(folder, set()).add(viewer)
        if session_token:
            known = self._users.get(viewer)
            if known is None or known[0] != hash(session_token):
                self._tokens[viewer] = session_token
        elif viewer in self._users and self._users[viewer][1] is not None:
            self._users[viewer] = (0, None)  # logged out: anonymous from now on

    def watched(self, recording_id: int, event_id: int | None, viewer: str, user_id: int | None, beacon: Beacon) -> None:
        """A replay beacon: ranges of the recording played since the previous one."""
        if not self.enabled:
            return
        now = self.clock()
        for key, views in bucket_counts(beacon.ranges, self.bucket_seconds).items():
            self._buckets[(recording_id, key)] += views
        entry = self._replays.get((recording_id, viewer))
        if entry is None:
            self._replays[(recording_id, viewer)] = _Replay(event_id, user_id, now, now, beacon.seconds)
        else:
            entry.last = now
            entry.seconds += beacon.seconds
            entry.user_id = user_id if user_id is not None else entry.user_id

    # --- flushing ----------------------------------------------------------------------------

    async def flush(self) -> int:
        """Merge and write what was collected since the last flush; returns the rows written."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        now = self.clock()
        batches, self._minutes = list(self._minutes.values()), {}
        replays, self._replays = self._replays, {}
        buckets, self._buckets = self._buckets, Counter()
        if not (batches or replays or buckets or self._unwritten_deltas or self._unwritten_rows):
            return 0
        try:
            merged = await self.merge.merge(batches)
        except Exception:
            self._requeue(batches, replays, buckets)
            raise
        await self._resolve_people()
        sessions: dict[tuple[int, str], store.SessionDelta] = {}
        for batch, result in zip(batches, merged):
            row = self._rows.get((batch.event_id, batch.minute))
            if row is None:
                row = self._rows[(batch.event_id, batch.minute)] = store.MinuteRow(batch.event_id, batch.minute, qualities={})
            row.viewers = max(row.viewers, result.viewers)
            row.caption_viewers = max(row.caption_viewers, result.caption_viewers)
            row.new_viewers += result.new_viewers
            assert row.qualities is not None
            for name, count in result.qualities.items():
                row.qualities[name] = max(row.qualities.get(name, 0), count)
            for viewer, slots in batch.slots.items():
                start = batch.minute * 60 + min(slots) * self.slot_seconds
                end = batch.minute * 60 + max(slots) * self.slot_seconds  # seen within the slot that starts here
                credited = result.credited.get(viewer, 0) * self.slot_seconds
                delta = sessions.get((batch.event_id, viewer))
                if delta is None:
                    user = self._users.get(viewer)
                    sessions[(batch.event_id, viewer)] = store.SessionDelta(
                        store.LIVE, batch.event_id, batch.event_id, None, storage_viewer(viewer),
                        user[1] if user else None, start, end, credited)
                else:
                    delta.first_seen, delta.last_seen = min(delta.first_seen, start), max(delta.last_seen, end)
                    delta.watched_seconds += credited
        deltas, self._unwritten_deltas = self._unwritten_deltas, []
        deltas += list(sessions.values()) + [
            store.SessionDelta(store.REPLAY, recording_id, r.event_id, recording_id, storage_viewer(viewer), r.user_id,
                               r.first, r.last, r.seconds)
            for (recording_id, viewer), r in replays.items()]
        deltas = _combined(deltas)  # one row per session: an upsert batch may not touch the same row twice
        rows = list({id(r): r for r in [*self._unwritten_rows, *(self._rows[(b.event_id, b.minute)] for b in batches)]}.values())
        self._unwritten_rows = []
        db = self._db

        def write(session: store.Session) -> int:
            events, recordings = store.existing_ids(
                session, {m.event_id for m in rows} | {d.event_id for d in deltas if d.event_id is not None},
                {d.recording_id for d in deltas if d.recording_id is not None} | {r for r, _ in buckets})
            kept_rows = [m for m in rows if m.event_id in events]
            kept = [d for d in deltas if (d.event_id is None or d.event_id in events)
                    and (d.recording_id is None or d.recording_id in recordings)]
            kept_buckets = {k: v for k, v in buckets.items() if k[0] in recordings}
            store.write_batch(session, self.worker, kept_rows, kept, kept_buckets)
            return len(kept_rows) + len(kept) + len(kept_buckets)

        try:
            written = await db.run(write)
        except Exception:
            # the catalog is away: Redis has already counted these, so keep the results (not the polls) for next time
            self._unwritten_deltas.extend(deltas)
            self._unwritten_rows = rows[-10_000:]
            self._buckets.update(buckets)
            del self._unwritten_deltas[:-100_000]
            raise
        self.flushes += 1
        self.rows_written += written
        current = int(now // 60)
        for key in [k for k in self._rows if k[1] < current - 5]:
            del self._rows[key]  # a late poll for an older minute starts a new row state: MAX on read copes
        return written

    def _requeue(self, batches: list[MinuteBatch], replays: dict[tuple[int, str], _Replay],
                 buckets: Counter[tuple[int, int]]) -> None:
        """Redis was unreachable: keep what was collected for the next flush (within reason)."""
        for batch in batches:
            current = self._minutes.setdefault((batch.event_id, batch.minute), MinuteBatch(batch.event_id, batch.minute))
            for viewer, slots in batch.slots.items():
                current.slots.setdefault(viewer, set()).update(slots)
            current.captions |= batch.captions
            for name, who in batch.renditions.items():
                current.renditions.setdefault(name, set()).update(who)
        for key, entry in replays.items():
            self._replays.setdefault(key, entry)
        self._buckets.update(buckets)
        if len(self._minutes) > 10_000:
            self._minutes.clear()

    async def _resolve_people(self) -> None:
        """Logged-in players: their session token, looked up once per player (cached by ``SessionPeople``)."""
        tokens, self._tokens = self._tokens, {}
        if len(self._users) > 200_000:
            self._users.clear()
        for viewer, token in tokens.items():
            person = None
            if self._people is not None:
                try:
                    person = await self._people.of_session(token)
                except Exception as exc:  # the catalog hiccuped: anonymous this time, asked again next poll
                    log.warning("audience: resolving a viewer's login failed: %r", exc)
                    continue
            self._users[viewer] = (hash(token), getattr(person, "user_id", None))

    # --- retention ---------------------------------------------------------------------------

    async def reduce_expired(self, now: datetime | None = None) -> int:
        """Reduce the sessions past ``audience_retention_days`` (``now``: the clock, for tests)."""
        when = now or datetime.fromtimestamp(self.clock(), timezone.utc)
        days, batch, total = self.settings.audience_retention_days, self.retention_batch, 0
        while True:  # in batches: one transaction never holds a whole year of sessions
            reduced = await self._db.run(lambda s: store.reduce_expired(s, when, days, batch))
            total += reduced
            if reduced < batch:
                return total

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, retention: bool = True) -> None:
        """The periodic flush and (``retention``: one role of the site runs it) the retention reduction."""
        if not self.enabled:
            return
        self._tasks.append(asyncio.create_task(self._every(self.settings.audience_flush_seconds, self.flush),
                                               name="audience-flush"))
        if retention:
            self._tasks.append(asyncio.create_task(
                self._every(self.settings.audience_retention_check_seconds, self.reduce_expired, first=True),
                name="audience-retention"))

    async def _every(self, period: float, work: Callable[[], Awaitable[object]], first: bool = False) -> None:
        if not first:
            await asyncio.sleep(period)
        while True:
            try:
                await work()
            except Exception as exc:  # the database or Redis is away: try again next period
                log.warning("audience: %s failed: %r", getattr(work, "__name__", "work"), exc)
            await asyncio.sleep(period)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.flush()  # what this process saw last is kept


AUDIENCE = web.AppKey("audience", Audience)
