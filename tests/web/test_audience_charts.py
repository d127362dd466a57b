"""The Audience tab's charts as pure code (web/audience_tab.py): the API's payload in, SVG that the strict CSP
accepts, summaries and tables out. The pages and their numbers are checked in Chromium (tests/audience)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

from web.audience_tab import REPLAY_POINTS, TABLE_ROWS, event_charts, heatmap_chart, replay_joins_chart

PARIS = ZoneInfo("Europe/Paris")


def _minute(m: int, **fields: int) -> dict[str, object]:
    return {"minute": f"2026-12-01T10:{m:02d}:00Z", "viewers": 0, "new_viewers": 0, "chat_messages": 0, "questions": 0, **fields}


PAYLOAD = {
    "minutes": [_minute(0, viewers=3, new_viewers=3, chat_messages=2), _minute(1, viewers=5, questions=1), _minute(3, viewers=1)],
    "broadcasts": [{"started_at": "2026-12-01T10:00:05Z", "ended_at": "2026-12-01T10:01:10Z"},
                   {"started_at": "2026-12-01T10:01:30Z", "ended_at": "2026-12-01T10:04:10Z"}],
    "joins": [{"minute": "2026-12-01T10:00:00Z", "viewers": 3}, {"minute": "2026-12-01T10:01:00Z", "viewers": 2}],
    "leaves": [{"minute": "2026-12-01T10:03:00Z", "viewers": 4}, {"minute": "2026-12-01T10:04:00Z", "viewers": 1}],
    "peak_viewers": 5, "peak_at": "2026-12-01T10:01:00Z", "chat_messages": 2, "questions": 1,
}


def _no_inline_code(svg: str) -> None:
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.find("{http://www.w3.org/2000/svg}title") is not None
    for node in root.iter():
        assert "style" not in node.attrib, node.tag  # a style attribute in markup breaks the CSP
        assert node.tag.split("}")[-1] not in ("script", "style", "foreignObject")
        assert not any(name.startswith("on") for name in node.attrib)


def test_event_charts_fill_missing_minutes_mark_the_live_run_and_say_what_they_show() -> None:
    viewers, joins, activity = event_charts(PAYLOAD, lambda s: s, PARIS, "en")
    assert [row[:2] for row in viewers.rows] == [["11:00", "3"], ["11:01", "5"], ["11:02", "0"], ["11:03", "1"], ["11:04", "0"]]
    assert [row[3] for row in viewers.rows] == ["Live run started", "Live run ended, Reconnected", "", "", "Live run ended"]
    assert viewers.summary == ("Most viewers at once: 5, at 11:01. The live run started at 11:00. It ended at 11:04. "
                               "Reconnections: 1.")
    legend = [t.text for t in ET.fromstring(viewers.svg).iter("{http://www.w3.org/2000/svg}text")
              if t.text in ("Live run ended", "Reconnected", "Live run started")]
    assert sorted(legend) == ["Live run ended", "Live run started", "Reconnected"]  # two ends, one legend entry
    assert joins.summary == "Viewers who joined: 5. Most arrivals at 11:00 (3). Most departures at 11:03 (4)."
    assert [row[1:] for row in joins.rows] == [["3", "0"], ["2", "0"], ["0", "0"], ["0", "4"], ["0", "1"]]
    assert activity.summary == "Chat messages: 2; questions: 1. The busiest minute was 11:00."
    for chart in (viewers, joins, activity):
        _no_inline_code(chart.svg)


def test_no_audience_means_no_chart() -> None:
    empty = {**PAYLOAD, "minutes": [], "broadcasts": [], "joins": [], "leaves": [], "peak_viewers": 0, "peak_at": None}
    assert event_charts(empty, lambda s: s, PARIS, "en") == []


def test_the_heatmap_bars_say_where_they_seek_and_numbers_follow_the_language() -> None:
    payload = {"bucket_seconds": 5, "most_watched": 10,
               "heatmap": [{"start": 0, "views": 1}, {"start": 5, "views": 0}, {"start": 10, "views": 1200}]}
    chart = heatmap_chart(payload, lambda s: s, "fr")
    assert chart is not None and chart.seek == [0, 5, 10]
    bars = [r.get("data-seek") for r in ET.fromstring(chart.svg).iter("{http://www.w3.org/2000/svg}rect") if r.get("data-seek")]
    assert bars == ["0", "5", "10"]  # the empty part keeps its bar (of no height): clicks map along the timeline
    assert chart.rows == [["0:00–0:05", "1"], ["0:05–0:10", "0"], ["0:10–0:15", "1\u202f200"]]
    assert chart.summary == "The most watched part starts at 0:10 (1\u202f200 views)."
    _no_inline_code(chart.svg)
    assert heatmap_chart({**payload, "heatmap": []}, lambda s: s, "en") is None


def test_a_long_recordings_heatmap_table_has_one_row_per_round_span() -> None:
    # two hours in 5 s buckets (1,440): the table would be 1,440 rows; it gets one per 2 minutes (60 rows)
    views = [(i // 12) % 7 for i in range(1440)]
    views[5] = 40  # one bucket rewatched: its row's "most views"
    payload = {"bucket_seconds": 5, "most_watched": 25, "heatmap": [{"start": i * 5, "views": v} for i, v in enumerate(views)]}
    chart = heatmap_chart(payload, lambda s: s, "en")
    assert chart is not None and len(chart.rows) == TABLE_ROWS
    assert chart.columns == ["Part of the video", "Most views", "Average views"]
    assert chart.rows[0] == ["0:00–2:00", "40", str(round((sum(views[:24]) / 24), 1))]
    assert chart.rows[-1][0] == "1:58:00–2:00:00" and chart.seek[:3] == [0, 120, 240]
    assert chart.summary.endswith("The data table has one row per 2:00 of video.")
    assert len([r for r in ET.fromstring(chart.svg).iter("{http://www.w3.org/2000/svg}rect") if r.get("data-seek")]) == 1440
    # a short recording keeps one row per bucket
    short = heatmap_chart({**payload, "heatmap": payload["heatmap"][:TABLE_ROWS]}, lambda s: s, "en")
    assert short is not None and len(short.rows) == TABLE_ROWS and short.columns == ["Part of the video", "Views"]


def test_replay_joins_and_leaves_are_counted_per_minute_hour_or_day() -> None:
    payload = {"joins": [{"minute": "2026-12-01T10:00:00Z", "viewers": 2}, {"minute": "2026-12-01T10:02:00Z", "viewers": 1}],
               "leaves": [{"minute": "2026-12-01T10:02:00Z", "viewers": 2}, {"minute": "2026-12-01T10:03:00Z", "viewers": 1}]}
    chart = replay_joins_chart(payload, lambda s: s, PARIS, "en")
    assert chart is not None and chart.key == "joins" and chart.columns[0] == "Minute"
    assert chart.rows == [["2026-12-01 11:00", "2", "0"], ["2026-12-01 11:01", "0", "0"], ["2026-12-01 11:02", "1", "2"],
                          ["2026-12-01 11:03", "0", "1"]]
    assert chart.summary == ("Viewers who joined: 3. Most arrivals at 2026-12-01 11:00 (2). "
                             "Most departures at 2026-12-01 11:02 (2).")
    _no_inline_code(chart.svg)
    # watched over two days: per hour, in the viewer's time zone
    days = {"joins": [{"minute": "2026-12-01T10:05:00Z", "viewers": 1}, {"minute": "2026-12-02T22:59:00Z", "viewers": 1}],
            "leaves": [{"minute": "2026-12-01T10:40:00Z", "viewers": 1}, {"minute": "2026-12-02T23:10:00Z", "viewers": 1}]}
    hourly = replay_joins_chart(days, lambda s: s, PARIS, "en")
    assert hourly is not None and hourly.columns[0] == "Hour" and len(hourly.rows) <= REPLAY_POINTS
    assert hourly.rows[0] == ["2026-12-01 11:00", "1", "1"] and hourly.rows[-1] == ["2026-12-03 00:00", "0", "1"]
    assert hourly.rows[-2] == ["2026-12-02 23:00", "1", "0"]
    # watched over a term: per day
    term = {"joins": [{"minute": "2026-09-01T08:00:00Z", "viewers": 4}], "leaves": [{"minute": "2026-12-20T08:00:00Z", "viewers": 4}]}
    daily = replay_joins_chart(term, lambda s: s, PARIS, "en")
    assert daily is not None and daily.columns[0] == "Day"
    assert daily.rows[0] == ["2026-09-01", "4", "0"] and daily.rows[-1] == ["2026-12-20", "0", "4"]
    assert replay_joins_chart({"joins": [], "leaves": []}, lambda s: s, PARIS, "en") is None
