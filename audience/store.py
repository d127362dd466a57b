"""The audience tables: batched writes from the collector, reads for the API, and the retention reduction.

Plain functions of a SQLAlchemy session, run by ``Database.run`` on the db thread pool. Upserts use
each backend's ``ON CONFLICT`` (SQLite and PostgreSQL) so workers add to the same session and heatmap
rows without reading them first.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from live_server.models import (
    AudienceMinute, AudienceReduced, AudienceReplayBucket, AudienceSession, BroadcastSession, ChatMessage, Event,
    Question, Recording, User,
)

LIVE, REPLAY = "live", "replay"


@dataclass
class MinuteRow:
    """This worker's cumulative view of one event's minute (it owns the row: written over each flush)."""

    event_id: int
    minute: int  # unix time // 60
    viewers: int = 0
    new_viewers: int = 0
    caption_viewers: int = 0
    qualities: dict[str, int] | None = None


@dataclass
class SessionDelta:
    """What one flush adds to one viewer's session."""

    kind: str
    target_id: int
    event_id: int | None
    recording_id: int | None
    viewer: str  # already hashed
    user_id: int | None
    first_seen: float  # unix time
    last_seen: float
    watched_seconds: float


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def write_batch(session: Session, worker: str, minutes: list[MinuteRow], sessions: list[SessionDelta],
                buckets: dict[tuple[int, int], int]) -> None:
    """One flush: this worker's minute rows, the viewers' session deltas and the replay bucket counts."""
    if minutes:
        stmt = _insert(session, AudienceMinute.__table__)
        stmt = stmt.on_conflict_do_update(index_elements=["event_id", "minute", "worker"], set_={
            "viewers": stmt.excluded.viewers, "new_viewers": stmt.excluded.new_viewers,
            "caption_viewers": stmt.excluded.caption_viewers, "qualities": stmt.excluded.qualities,
        })
        session.execute(stmt, [{
            "event_id": m.event_id, "minute": _utc(m.minute * 60), "worker": worker, "viewers": m.viewers,
            "new_viewers": m.new_viewers, "caption_viewers": m.caption_viewers,
            "qualities": json.dumps(m.qualities or {}, sort_keys=True),
        } for m in minutes])
    if sessions:
        table = AudienceSession.__table__
        stmt = _insert(session, table)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(index_elements=["kind", "target_id", "viewer"], set_={
            "first_seen": case((table.c.first_seen <= ex.first_seen, table.c.first_seen), else_=ex.first_seen),
            "last_seen": case((table.c.last_seen >= ex.last_seen, table.c.last_seen), else_=ex.last_seen),
            "watched_seconds": table.c.watched_seconds + ex.watched_seconds,
            "user_id": func.coalesce(ex.user_id, table.c.user_id),
        })
        session.execute(stmt, [{
            "kind": s.kind, "target_id": s.target_id, "event_id": s.event_id, "recording_id": s.recording_id,
            "viewer": s.viewer, "user_id": s.user_id, "first_seen": _utc(s.first_seen), "last_seen": _utc(s.last_seen),
            "watched_seconds": s.watched_seconds,
        } for s in sessions])
    if buckets:
        table = AudienceReplayBucket.__table__
        stmt = _insert(session, table)
        stmt = stmt.on_conflict_do_update(index_elements=["recording_id", "start_second"],
                                          set_={"views": table.c.views + stmt.excluded.views})
        session.execute(stmt, [{"recording_id": r, "start_second": s, "views": n} for (r, s), n in sorted(buckets.items())])


def existing_ids(session: Session, event_ids: Iterable[int], recording_ids: Iterable[int]) -> tuple[set[int], set[int]]:
    """Events and recordings that still exist (one deleted meanwhile would fail the batch's foreign keys)."""
    events, recordings = set(event_ids), set(recording_ids)
    found_events = set(session.scalars(select(Event.id).where(Event.id.in_(events)))) if events else set()
    found_recordings = set(session.scalars(select(Recording.id).where(Recording.id.in_(recordings)))) if recordings else set()
    return found_events, found_recordings


# --- reading -----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value is not None else None


def _minute(value: datetime) -> str:
    return _iso(value.astimezone(timezone.utc).replace(second=0, microsecond=0)) or ""


def _per_minute(values: Iterable[datetime]) -> Counter[str]:
    return Counter(_minute(v) for v in values)


def _viewer_summary(session: Session, kind: str, target_id: int) -> dict[str, Any]:
    """Counts, watch time and join/leave distributions from the sessions, plus what retention reduced."""
    rows = session.execute(select(AudienceSession.first_seen, AudienceSession.last_seen, AudienceSession.watched_seconds,
                                  AudienceSession.user_id)
                           .where(AudienceSession.kind == kind, AudienceSession.target_id == target_id)).all()
    watched = [float(r.watched_seconds) for r in rows]
    joins = _per_minute(r.first_seen for r in rows)
    leaves = _per_minute(r.last_seen for r in rows)
    viewers, logged_in, total = len(rows), sum(1 for r in rows if r.user_id is not None), sum(watched)
    reduced = session.scalar(select(AudienceReduced).where(AudienceReduced.kind == kind, AudienceReduced.target_id == target_id))
    if reduced is not None:
        viewers += reduced.viewers
        logged_in += reduced.logged_in
        total += reduced.watched_seconds
        for minutes, count in json.loads(reduced.watch_histogram).items():
            watched.extend([int(minutes) * 60.0 + 30.0] * int(count))  # the middle of its minute
        joins.update({k: int(v) for k, v in json.loads(reduced.joins).items()})
        leaves.update({k: int(v) for k, v in json.loads(reduced.leaves).items()})
    return {
        "viewers": {"total": viewers, "logged_in": logged_in, "anonymous": viewers - logged_in},
        "watch_seconds": {
            "total": round(total, 1),
            "average": round(total / viewers, 1) if viewers else 0.0,
            "median": round(statistics.median(watched), 1) if watched else 0.0,
        },
        "joins": [{"minute": m, "viewers": n} for m, n in sorted(joins.items())],
        "leaves": [{"minute": m, "viewers": n} for m, n in sorted(leaves.items())],
        "reduced": reduced is not None,
    }


def event_audience(session: Session, event: Event) -> dict[str, Any]:
    """The live audience of an event, minute by minute, and its viewers' watch time."""
    rows = session.scalars(select(AudienceMinute).where(AudienceMinute.event_id == event.id)).all()
    minutes: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = minutes.setdefault(_minute(row.minute), {"viewers": 0, "new_viewers": 0, "caption_viewers": 0, "qualities": {}})
        entry["viewers"] = max(entry["viewers"], row.viewers)
        entry["new_viewers"] += row.new_viewers
        entry["caption_viewers"] = max(entry["caption_viewers"], row.caption_viewers)
        for name, count in json.loads(row.qualities or "{}").items():
            entry["qualities"][name] = max(entry["qualities"].get(name, 0), int(count))
    messages = _per_minute(session.scalars(select(ChatMessage.created_at).where(ChatMessage.event_id == event.id)))
    questions = _per_minute(session.scalars(select(Question.created_at).where(Question.event_id == event.id)))
    series = []
    for minute in sorted(set(minutes) | set(messages) | set(questions)):
        entry = minutes.get(minute, {"viewers": 0, "new_viewers": 0, "caption_viewers": 0, "qualities": {}})
        series.append({
            "minute": minute, **entry,
            "caption_share": round(entry["caption_viewers"] / entry["viewers"], 3) if entry["viewers"] else 0.0,
            "chat_messages": messages.get(minute, 0), "questions": questions.get(minute, 0),
        })
    peak = max(series, key=lambda e: e["viewers"], default=None)
    runs = session.scalars(select(BroadcastSession).where(BroadcastSession.event_id == event.id)
                           .order_by(BroadcastSession.started_at)).all()
    return {
        "event": {"id": event.id, "slug": event.slug, "title": event.title, "state": event.state.value,
                  "started_at": _iso(event.started_at), "ended_at": _iso(event.ended_at),
                  "attendance_required": bool(event.attendance_required)},
        # each publish, reconnects included: the charts mark the live run's start, end and breaks
        "broadcasts": [{"started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at), "end_reason": r.end_reason}
                       for r in runs],
        "minutes": series,
        "peak_viewers": peak["viewers"] if peak else 0,
        "peak_at": peak["minute"] if peak and peak["viewers"] else None,
        "chat_messages": sum(messages.values()),
        "questions": sum(questions.values()),
        **_viewer_summary(session, LIVE, event.id),
        "replay": _replay_totals(session, event.id),
    }


def _replay_totals(session: Session, event_id: int) -> dict[str, Any]:
    """Watching of the event's recordings (details per recording: ``recording_audience``)."""
    viewers, seconds = session.execute(
        select(func.count(), func.coalesce(func.sum(AudienceSession.watched_seconds), 0.0))
        .where(AudienceSession.kind == REPLAY, AudienceSession.event_id == event_id)).one()
    reduced_viewers, reduced_seconds = session.execute(
        select(func.coalesce(func.sum(AudienceReduced.viewers), 0), func.coalesce(func.sum(AudienceReduced.watched_seconds), 0.0))
        .where(AudienceReduced.kind == REPLAY, AudienceReduced.event_id == event_id)).one()
    return {"viewers": int(viewers) + int(reduced_viewers), "watch_seconds": round(float(seconds) + float(reduced_seconds), 1)}


def peak_viewers(session: Session, event_ids: Iterable[int]) -> dict[int, int]:
    """Peak viewers per event, for lists (the dashboard): the largest minute, workers combined by MAX."""
    ids = list(event_ids)
    if not ids:
        return {}
    per_minute = (select(AudienceMinute.event_id, func.max(AudienceMinute.viewers).label("viewers"))
                  .where(AudienceMinute.event_id.in_(ids))
                  .group_by(AudienceMinute.event_id, AudienceMinute.minute).subquery())
    rows = session.execute(select(per_minute.c.event_id, func.max(per_minute.c.viewers)).group_by(per_minute.c.event_id))
    return {int(event_id): int(peak or 0) for event_id, peak in rows}


def recording_audience(session: Session, recording: Recording, bucket_seconds: int) -> dict[str, Any]:
    """Replay viewers and the heatmap: how many times each ``bucket_seconds`` of the recording was watched."""
    counts = dict(session.execute(select(AudienceReplayBucket.start_second, AudienceReplayBucket.views)
                                  .where(AudienceReplayBucket.recording_id == recording.id)).tuples().all())
    end = max([int(recording.duration_seconds or 0), *(s + bucket_seconds for s in counts)])
    # stored buckets keep the width they were counted with; the series is laid out on the current width
    series: Counter[int] = Counter()
    for start, views in counts.items():
        series[(start // bucket_seconds) * bucket_seconds] += views
    heatmap = [{"start": s, "views": series.get(s, 0)} for s in range(0, end, bucket_seconds)]
    return {
        "recording": {"id": recording.id, "title": recording.title, "event_id": recording.event_id,
                      "duration_seconds": recording.duration_seconds},
        "bucket_seconds": bucket_seconds,
        "heatmap": heatmap,
        "most_watched": max(heatmap, key=lambda b: b["views"])["start"] if any(b["views"] for b in heatmap) else None,
        **_viewer_summary(session, REPLAY, recording.id),
    }


def attendance(session: Session, event: Event) -> list[dict[str, Any]]:
    """Logged-in viewers of an event, live and on its recordings' replays; anonymous viewers are never listed."""
    rows = session.execute(
        select(AudienceSession.kind, AudienceSession.user_id, AudienceSession.first_seen, AudienceSession.last_seen,
               AudienceSession.watched_seconds)
        .where(AudienceSession.event_id == event.id, AudienceSession.user_id.is_not(None))).all()
    people: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = people.setdefault(row.user_id, {"first": row.first_seen, "last": row.last_seen, "live": 0.0, "replay": 0.0})
        entry["first"] = min(entry["first"], row.first_seen)
        entry["last"] = max(entry["last"], row.last_seen)
        entry[row.kind] += float(row.watched_seconds)
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(people)))} if people else {}
    listed = []
    for user_id, entry in people.items():
        user = users.get(user_id)
        if user is None:
            continue
        listed.append({
            "name": user.display_name or user.username, "username": user.username, "email": user.email or "",
            "first_joined": _iso(entry["first"]), "last_left": _iso(entry["last"]),
            "minutes_live": round(entry["live"] / 60, 1), "minutes_replay": round(entry["replay"] / 60, 1),
        })
    return sorted(listed, key=lambda p: (p["name"].lower(), p["username"]))


# --- retention ---------------------------------------------------------------------------------


def reduce_expired(session: Session, now: datetime, retention_days: int, limit: int = 20_000) -> int:
    """Sessions last seen more than ``retention_days`` before ``now`` become counts and distributions
    (``audience_reduced``) and are deleted. Returns how many sessions were reduced."""
    cutoff = now - timedelta(days=retention_days)
    # several web workers run this: each takes sessions no other one holds (PostgreSQL; SQLite has one writer)
    rows = session.scalars(select(AudienceSession).where(AudienceSession.last_seen < cutoff)
                           .order_by(AudienceSession.id).limit(limit).with_for_update(skip_locked=True)).all()
    if not rows:
        return 0
    groups: dict[tuple[str, int], list[AudienceSession]] = {}
    for row in rows:
        groups.setdefault((row.kind, row.target_id), []).append(row)
    for (kind, target_id), members in groups.items():
        reduced = session.scalar(select(AudienceReduced).where(AudienceReduced.kind == kind,
                                                               AudienceReduced.target_id == target_id).with_for_update())
        if reduced is None:
            reduced = AudienceReduced(kind=kind, target_id=target_id, event_id=members[0].event_id,
                                      recording_id=members[0].recording_id, viewers=0, logged_in=0,
                                      watched_seconds=0.0, watch_histogram="{}", joins="{}", leaves="{}")
            session.add(reduced)
        histogram = Counter({k: int(v) for k, v in json.loads(reduced.watch_histogram).items()})
        joins = Counter({k: int(v) for k, v in json.loads(reduced.joins).items()})
        leaves = Counter({k: int(v) for k, v in json.loads(reduced.leaves).items()})
        for member in members:
            histogram[str(int(member.watched_seconds // 60))] += 1
            joins[_minute(member.first_seen)] += 1
            leaves[_minute(member.last_seen)] += 1
        reduced.viewers += len(members)
        reduced.logged_in += sum(1 for m in members if m.user_id is not None)
        reduced.watched_seconds += sum(float(m.watched_seconds) for m in members)
        reduced.watch_histogram = json.dumps(dict(histogram), sort_keys=True)
        reduced.joins = json.dumps(dict(joins), sort_keys=True)
        reduced.leaves = json.dumps(dict(leaves), sort_keys=True)
        reduced.reduced_at = now
    session.execute(delete(AudienceSession).where(AudienceSession.id.in_([r.id for r in rows])))
    return len(rows)
