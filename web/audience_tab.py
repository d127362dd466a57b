"""The Audience tab of the event and replay pages: the owners' figures (``audience.store``, the same numbers as
``/api/v1/.../audience``) drawn as SVG on the server with leather, each chart with a one-sentence summary and a
data table, so it needs no script, passes the strict CSP (presentation attributes only) and reads aloud.

The one script is ``web/static/audience.js``: clicking the replay heatmap (or a row of its table) seeks the video.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import leather
from sqlalchemy.orm import Session

from live_server.db import Database
from live_server.models import Event, Recording
from web import i18n

class AudienceFigures(Protocol):
    """The owners' figures, as the API gives them (``audience.store``, handed over by the app factory)."""

    def event_audience(self, session: Session, event: Event) -> dict[str, Any]: ...

    def recording_audience(self, session: Session, recording: Recording, bucket_seconds: int) -> dict[str, Any]: ...

    def peak_viewers(self, session: Session, event_ids: Iterable[int]) -> dict[int, int]: ...


WIDTH, HEIGHT = 720, 260
MAX_MINUTES = 24 * 60  # a longer span is drawn from its first day (the table and the API keep everything)
# Series colours: at least 3:1 against the chart's background (WCAG 1.4.11), told apart by dashes too.
VIEWERS, SECOND, MARK_START, MARK_END, MARK_RECONNECT = "#1f5fa8", "#b3261e", "#2e7d32", "#5d4037", "#8e24aa"


@dataclass
class Chart:
    """One chart: its SVG, the sentence that says what it shows, and its data as a table."""

    key: str
    title: str
    summary: str
    svg: str  # serialized by ElementTree, which escapes every text and attribute: safe to insert
    columns: list[str]
    rows: list[list[str]]
    seek: list[int] = field(default_factory=list)  # heatmap rows: the second each row's button plays from


def _time(iso: str | None, zone: ZoneInfo) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(zone).strftime("%H:%M")


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc)


def _svg(chart: leather.Chart, label_id: str, title: str, key: str,
         decorate: Callable[[ET.Element], None] | None = None) -> str:
    """Leather's drawing inside our own ``<svg role="img">`` named by its title and summary (for screen readers)."""
    group = chart.to_svg_group(WIDTH, HEIGHT)
    _one_legend_entry_per_name(group)
    if decorate is not None:
        decorate(group)
    root = ET.Element("svg", {"xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {WIDTH} {HEIGHT}",
                              "role": "img", "aria-labelledby": f"{label_id}-title {label_id}-summary",
                              "class": "chart-svg", "focusable": "false", "data-chart": key})
    heading = ET.SubElement(root, "title")
    heading.text = title
    root.append(group)
    return ET.tostring(root, encoding="unicode", short_empty_elements=True)


def _one_legend_entry_per_name(group: ET.Element) -> None:
    """Several marks of one kind (each live run's end) are one entry of the legend."""
    seen: set[str] = set()
    for parent in group.iter("g"):
        for item in list(parent):
            texts = [t.text or "" for t in item.findall("text")]
            if item.tag == "g" and item.find("rect") is not None and len(texts) == 1 and len(item) == 2:
                if texts[0] in seen:
                    parent.remove(item)
                seen.add(texts[0])


def _counts(top: int) -> list[int]:
    """Whole-number ticks for a count axis (leather would write 0.25 viewers)."""
    step = max(1, -(-top // 5))
    return list(range(0, top + step, step))


def _ticks(count: int, most: int = 6) -> list[int]:
    if count <= 1:
        return [0]
    step = max(1, -(-(count - 1) // (most - 1)))
    for nice in (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720):
        if nice >= step:
            step = nice
            break
    return list(range(0, count, step))


def _minute_span(payload: dict[str, Any]) -> list[datetime]:
    """Every minute from the first thing that happened (a view, a message, a live run) to the last."""
    moments = [_parse(m["minute"]) for m in payload["minutes"]]
    for run in payload["broadcasts"]:
        moments += [_parse(run[k]) for k in ("started_at", "ended_at") if run.get(k)]
    moments += [_parse(m["minute"]) for m in payload.get("joins", []) + payload.get("leaves", [])]
    if not moments:
        return []
    first = min(moments).replace(second=0, microsecond=0)
    last = max(moments).replace(second=0, microsecond=0)
    count = min(int((last - first).total_seconds() // 60) + 1, MAX_MINUTES)
    return [first + timedelta(minutes=i) for i in range(count)]


def _key(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _marks(payload: dict[str, Any], span: list[datetime]) -> list[tuple[int, str]]:
    """(minute index, kind) of each live run's start, reconnects (a later start) and end."""
    if not span:
        return []
    first, marks = span[0], []
    for i, run in enumerate(payload["broadcasts"]):
        for name, kind in (("started_at", "start" if i == 0 else "reconnect"), ("ended_at", "end")):
            if run.get(name):
                index = int((_parse(run[name]) - first).total_seconds() // 60)
                if 0 <= index < len(span):
                    marks.append((index, kind))
    return marks


def event_charts(payload: dict[str, Any], _: Callable[[str], str], zone: ZoneInfo, lang: str) -> list[Chart]:
    """The live audience: viewers over time with the live run marked, joins and leaves, chat and questions."""
    span = _minute_span(payload)
    if not span:
        return []
    by_minute = {m["minute"]: m for m in payload["minutes"]}
    joins = {m["minute"]: m["viewers"] for m in payload["joins"]}
    leaves = {m["minute"]: m["viewers"] for m in payload["leaves"]}
    keys = [_key(m) for m in span]
    labels = [m.astimezone(zone).strftime("%H:%M") for m in span]
    ticks = _ticks(len(span))

    def axis(chart: leather.Chart, y_name: str, top: int) -> None:
        chart.add_x_axis(ticks=ticks, tick_formatter=lambda v, i, n: labels[int(v)], name=_("Time"))
        y_ticks = _counts(max(top, 1))
        chart.add_y_axis(ticks=y_ticks, name=y_name)
        chart.set_x_scale(leather.Linear(0, max(len(span) - 1, 1)))
        chart.set_y_scale(leather.Linear(0, y_ticks[-1]))

    number = lambda n: i18n.format_number(n, lang)  # noqa: E731
    viewers = [by_minute.get(k, {}).get("viewers", 0) for k in keys]
    top = max(viewers + [1])
    marks = _marks(payload, span)
    mark_names = {"start": _("Live run started"), "reconnect": _("Reconnected"), "end": _("Live run ended")}
    mark_colors = {"start": MARK_START, "reconnect": MARK_RECONNECT, "end": MARK_END}
    chart = leather.Chart()
    chart.add_line(list(enumerate(viewers)), name=_("Viewers"), stroke_color=VIEWERS, width=3)
    for index, kind in marks:
        chart.add_line([(index, 0), (index, top)], name=mark_names[kind],
                       stroke_color=mark_colors[kind], width=2, stroke_dasharray="6 4")
    axis(chart, _("Viewers"), top)
    reconnects = sum(1 for _i, kind in marks if kind == "reconnect")
    peak_at = _time(payload.get("peak_at"), zone)
    runs = payload["broadcasts"]
    started = _time(runs[0]["started_at"], zone) if runs else ""
    ended = _time(runs[-1].get("ended_at"), zone) if runs else ""
    summary = (_("Most viewers at once: %(peak)s, at %(time)s.") % {"peak": number(payload["peak_viewers"]), "time": peak_at}
               if peak_at else _("No viewers were counted."))
    if started:
        summary += " " + _("The live run started at %(start)s.") % {"start": started}
    if ended:
        summary += " " + _("It ended at %(end)s.") % {"end": ended}
    if reconnects:
        summary += " " + _("Reconnections: %(count)s.") % {"count": number(reconnects)}
    marks_at: dict[int, list[str]] = {}
    for index, kind in marks:
        marks_at.setdefault(index, []).append(mark_names[kind])
    charts = [Chart("viewers", _("Viewers over time"), summary,
                    _svg(chart, "chart-viewers", _("Viewers over time"), "viewers"),
                    [_("Minute"), _("Viewers"), _("New viewers"), _("Live run")],
                    [[labels[i], number(viewers[i]), number(by_minute.get(k, {}).get("new_viewers", 0)),
                      ", ".join(marks_at.get(i, []))] for i, k in enumerate(keys)])]

    charts.append(_joins_chart([joins.get(k, 0) for k in keys], [leaves.get(k, 0) for k in keys], labels, ticks,
                               _("Minute"), lambda chart, y_name, top: axis(chart, y_name, top), _, lang))

    messages = [by_minute.get(k, {}).get("chat_messages", 0) for k in keys]
    questions = [by_minute.get(k, {}).get("questions", 0) for k in keys]
    chart = leather.Chart()
    chart.add_line(list(enumerate(messages)), name=_("Chat messages"), stroke_color=VIEWERS, width=3)
    chart.add_line(list(enumerate(questions)), name=_("Questions"), stroke_color=SECOND, width=3, stroke_dasharray="6 3")
    axis(chart, _("Per minute"), max(messages + questions + [1]))
    busiest = max(range(len(keys)), key=lambda i: messages[i] + questions[i])
    summary = _("Chat messages: %(messages)s; questions: %(questions)s.") % {
        "messages": number(payload["chat_messages"]), "questions": number(payload["questions"])}
    if messages[busiest] + questions[busiest]:
        summary += " " + _("The busiest minute was %(time)s.") % {"time": labels[busiest]}
    charts.append(Chart("activity", _("Chat and questions over time"), summary,
                        _svg(chart, "chart-activity", _("Chat and questions over time"), "activity"),
                        [_("Minute"), _("Chat messages"), _("Questions")],
                        [[labels[i], number(messages[i]), number(questions[i])] for i in range(len(keys))]))
    return charts


def _joins_chart(joined: list[int], left: list[int], labels: list[str], ticks: list[int], period: str,
                 axis: Callable[[leather.Chart, str, int], None], _: Callable[[str], str], lang: str) -> Chart:
    """Joining and leaving per period (live: per minute; replay: per minute, hour or day), drawn and tabled."""
    number = lambda n: i18n.format_number(n, lang)  # noqa: E731
    chart = leather.Chart()
    chart.add_line(list(enumerate(joined)), name=_("Joined"), stroke_color=VIEWERS, width=3)
    chart.add_line(list(enumerate(left)), name=_("Left"), stroke_color=SECOND, width=3, stroke_dasharray="6 3")
    axis(chart, _("Viewers"), max(joined + left + [1]))
    most_joined = max(range(len(labels)), key=lambda i: joined[i])
    most_left = max(range(len(labels)), key=lambda i: left[i])
    summary = _("Viewers who joined: %(count)s.") % {"count": number(sum(joined))}
    if joined[most_joined]:
        summary += " " + _("Most arrivals at %(time)s (%(count)s).") % {"time": labels[most_joined], "count": number(joined[most_joined])}
    if left[most_left]:
        summary += " " + _("Most departures at %(time)s (%(count)s).") % {"time": labels[most_left], "count": number(left[most_left])}
    return Chart("joins", _("Joining and leaving"), summary, _svg(chart, "chart-joins", _("Joining and leaving"), "joins"),
                 [period, _("Joined"), _("Left")], [[labels[i], number(joined[i]), number(left[i])] for i in range(len(labels))])


#: A replay's sessions spread over days: joins and leaves are counted per minute, hour or day, the finest that
#: keeps the chart within this many points.
REPLAY_POINTS = 240


def replay_joins_chart(payload: dict[str, Any], _: Callable[[str], str], zone: ZoneInfo, lang: str) -> Chart | None:
    """When replay viewers started and stopped watching, on the viewers' clock (minutes, hours or days)."""
    joins, leaves = payload.get("joins", []), payload.get("leaves", [])
    moments = [_parse(m["minute"]) for m in joins + leaves]
    if not moments:
        return None
    first, last = min(moments), max(moments)
    for step, period, pattern in ((timedelta(minutes=1), _("Minute"), "%Y-%m-%d %H:%M"),
                                  (timedelta(hours=1), _("Hour"), "%Y-%m-%d %H:00"),
                                  (timedelta(days=1), _("Day"), "%Y-%m-%d")):
        if (last - first) / step < REPLAY_POINTS:
            break
    local_first = first.astimezone(zone)
    if step >= timedelta(hours=1):
        local_first = local_first.replace(minute=0)
    if step >= timedelta(days=1):
        local_first = local_first.replace(hour=0)
    count = min(int((last - local_first) / step) + 1, MAX_MINUTES)

    def index(iso: str) -> int:
        return int((_parse(iso) - local_first) / step)

    joined, left = [0] * count, [0] * count
    for series, entries in ((joined, joins), (left, leaves)):
        for entry in entries:
            if 0 <= index(entry["minute"]) < count:
                series[index(entry["minute"])] += int(entry["viewers"])
    labels = [(local_first + i * step).astimezone(zone).strftime(pattern) for i in range(count)]
    ticks = _ticks(count)

    def axis(chart: leather.Chart, y_name: str, top: int) -> None:
        chart.add_x_axis(ticks=ticks, tick_formatter=lambda v, i, n: labels[int(v)], name=_("Time"))
        y_ticks = _counts(max(top, 1))
        chart.add_y_axis(ticks=y_ticks, name=y_name)
        chart.set_x_scale(leather.Linear(0, max(count - 1, 1)))
        chart.set_y_scale(leather.Linear(0, y_ticks[-1]))

    return _joins_chart(joined, left, labels, ticks, period, axis, _, lang)


#: The heatmap's data table stays short: past this many buckets, one row covers a round span (a minute, 2, 5 ...).
TABLE_ROWS = 60
ROW_SPANS = (60, 120, 300, 600, 900, 1800, 3600, 7200)


def _table_span(buckets: int, width: int) -> int:
    """Seconds of video one row of the heatmap's table covers: one bucket, or a round span holding several."""
    if buckets <= TABLE_ROWS:
        return width
    for span in ROW_SPANS:
        span = -(-span // width) * width  # whole buckets
        if -(-buckets * width // span) <= TABLE_ROWS:
            return span
    return -(-buckets // TABLE_ROWS) * width


def heatmap_chart(payload: dict[str, Any], _: Callable[[str], str], lang: str) -> Chart | None:
    """How often each part of the recording was watched, along its timeline; a bar (or a row) seeks the video."""
    buckets: Sequence[dict[str, Any]] = payload["heatmap"]
    if not buckets:
        return None
    width = int(payload["bucket_seconds"])
    views = [int(b["views"]) for b in buckets]
    starts = [int(b["start"]) for b in buckets]
    names = [i18n.format_duration(s) for s in starts]
    chart = leather.Chart()
    chart.add_columns([(str(i), v) for i, v in enumerate(views)], name=_("Views"), fill_color=VIEWERS)
    chart.add_x_axis(ticks=[str(t) for t in _ticks(len(buckets))], tick_formatter=lambda v, i, n: names[int(v)],
                     name=_("Position in the video"))
    y_ticks = _counts(max(views + [1]))
    chart.add_y_axis(ticks=y_ticks, name=_("Views"))
    chart.set_y_scale(leather.Linear(0, y_ticks[-1]))

    def decorate(group: ET.Element) -> None:
        """Each bar says which second it plays from (``audience.js`` seeks there on a click)."""
        series = next(g for g in group.iter("g") if g.get("class") == "series columns")
        for rect, start in zip(series.iter("rect"), starts):
            rect.set("data-seek", str(start))

    number = lambda n: i18n.format_number(n, lang)  # noqa: E731
    top = payload.get("most_watched")
    summary = (_("The most watched part starts at %(time)s (%(count)s views).") % {
        "time": i18n.format_duration(top), "count": number(max(views))} if top is not None
        else _("No part of the recording has been watched yet."))
    title = _("Replay heatmap")
    drawing = _svg(chart, "chart-heatmap", title, "heatmap", decorate)
    span = _table_span(len(buckets), width)
    if span == width:
        return Chart("heatmap", title, summary, drawing, [_("Part of the video"), _("Views")],
                     [[f"{names[i]}–{i18n.format_duration(starts[i] + width)}", number(views[i])] for i in range(len(buckets))],
                     seek=starts)
    groups: dict[int, list[int]] = {}
    for start, count in zip(starts, views):
        groups.setdefault(start // span * span, []).append(count)
    rows = [[f"{i18n.format_duration(s)}–{i18n.format_duration(s + span)}", number(max(v)),
             i18n.format_number(round(sum(v) / len(v), 1), lang)] for s, v in sorted(groups.items())]
    summary += " " + _("The data table has one row per %(span)s of video.") % {"span": i18n.format_duration(span)}
    return Chart("heatmap", title, summary, drawing, [_("Part of the video"), _("Most views"), _("Average views")],
                 rows, seek=sorted(groups))


def figures(payload: dict[str, Any], lang: str) -> dict[str, str]:
    """The headline numbers, formatted as the tab shows them (tests compare them with the API)."""
    seconds = payload["watch_seconds"]
    return {
        "viewers": i18n.format_number(payload["viewers"]["total"], lang),
        "logged_in": i18n.format_number(payload["viewers"]["logged_in"], lang),
        "anonymous": i18n.format_number(payload["viewers"]["anonymous"], lang),
        "average": i18n.format_duration(seconds["average"]),
        "median": i18n.format_duration(seconds["median"]),
    }


class AudienceTab:
    """Reads an event's or recording's audience for its owner's page (the caller checked who may see it)."""

    def __init__(self, db: Database, figures: AudienceFigures, bucket_seconds: int) -> None:
        self.db = db
        self.figures = figures
        self.bucket_seconds = bucket_seconds

    async def for_event(self, event: Event, _: Callable[[str], str], zone: ZoneInfo, lang: str) -> dict[str, Any]:
        payload = await self.db.run(lambda s: self.figures.event_audience(s, s.get(Event, event.id) or event))
        return {"kind": "event", "data": payload, "figures": figures(payload, lang),
                "charts": event_charts(payload, _, zone, lang), "event_id": event.id,
                "attendance_required": bool(event.attendance_required)}

    async def for_recording(self, recording: Recording, event: Event | None, _: Callable[[str], str],
                            zone: ZoneInfo, lang: str) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any]:
            return self.figures.recording_audience(session, session.get(Recording, recording.id) or recording, self.bucket_seconds)

        payload = await self.db.run(work)
        charts = [heatmap_chart(payload, _, lang), replay_joins_chart(payload, _, zone, lang)]
        return {"kind": "recording", "data": payload, "figures": figures(payload, lang),
                "charts": [c for c in charts if c is not None],
                "event_id": event.id if event is not None else None,
                "attendance_required": bool(event.attendance_required) if event is not None else False}
