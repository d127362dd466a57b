"""LL-HLS playlists (``formats.m3u8.render_ll``, ``decide_reload``): the RFC 8216bis rules we rely on,
table tests of blocking reload, and hls.js's own parser (a parser we did not write) reading what we
render, delta updates included."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from formats.m3u8 import (LlPart, LlPlaylist, LlSegment, PlaylistParseError, Reload, RenditionReport,
                          advance_part_limit, blocking_timeout, decide_reload, parse_ll, read_ll, render_ll,
                          rendition_report)
from tests.formats.hls_js import hls_js_parse

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)
PART = 0.334


def _parts(msn: int, count: int) -> tuple[LlPart, ...]:
    return tuple(LlPart(f"p{msn}.{i}.m4s", PART, independent=i == 0) for i in range(count))


def live(segments: int = 10, pending: int = 2, first: int = 100, ended: bool = False,
         reports: tuple[RenditionReport, ...] = ()) -> LlPlaylist:
    """A 2 s-segment window: six parts per segment, ``pending`` parts of the next one."""
    segs = tuple(
        LlSegment(f"s{first + i}.m4s", 6 * PART, _parts(first + i, 6), T0 + timedelta(seconds=6 * PART * i))
        for i in range(segments)
    )
    return LlPlaylist(
        target_duration=2, part_target=PART, map_uri="init.mp4", media_sequence=first, segments=segs,
        pending_parts=_parts(first + segments, pending),
        preload_hint=f"p{first + segments}.{pending}.m4s", ended=ended, rendition_reports=reports,
        pending_program_date_time=T0 + timedelta(seconds=6 * PART * segments),
    )


def test_full_playlist_lists_tags_in_order_with_parts_near_the_live_edge() -> None:
    text = render_ll(live(reports=(RenditionReport("../360p/index.m3u8", 110, 1),)))
    lines = text.splitlines()
    assert lines[:7] == [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.00200,CAN-SKIP-UNTIL=12.00000",
        "#EXT-X-PART-INF:PART-TARGET=0.33400",
        "#EXT-X-MEDIA-SEQUENCE:100",
        '#EXT-X-MAP:URI="init.mp4"',
    ]
    assert lines[-4:] == [
        '#EXT-X-PART:DURATION=0.33400,URI="p110.0.m4s",INDEPENDENT=YES',
        '#EXT-X-PART:DURATION=0.33400,URI="p110.1.m4s"',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p110.2.m4s"',
        '#EXT-X-RENDITION-REPORT:URI="../360p/index.m3u8",LAST-MSN=110,LAST-PART=1',
    ]
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:00.000Z" in lines
    # RFC 8216bis 6.2.2: parts more than three target durations (6 s) from the end are not listed.
    # The window ends 10 x 2.004 + 0.668 s in; segments starting at or after 14.72 s keep their parts.
    listed = {line.split('"')[1].split(".")[0] for line in lines if line.startswith("#EXT-X-PART:")}
    assert listed == {"p108", "p109", "p110"}
    assert text.endswith("\n") and "#EXT-X-ENDLIST" not in text and "#EXT-X-SKIP" not in text


@pytest.mark.parametrize(("segments", "skipped"), [(3, 0), (6, 0), (7, 1), (8, 2), (10, 4)])
def test_delta_update_skips_segments_beyond_the_skip_boundary(segments: int, skipped: int) -> None:
    """6.2.5.1: segments further from the end than CAN-SKIP-UNTIL (12 s here) become EXT-X-SKIP.
    Segments last 2.004 s and 0.668 s of parts follow: the end of a segment six before the last is
    6 x 2.004 + 0.668 = 12.69 s from the end (skipped), five before 10.69 s (kept)."""
    text = render_ll(live(segments=segments), skip=True)
    if skipped:
        assert f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}\n" in text and "#EXT-X-VERSION:9\n" in text
        assert f"s{100 + skipped - 1}.m4s" not in text and f"s{100 + skipped}.m4s" in text
        # The first listed segment still carries its date, so a player can place it.
        first = text.index(f"s{100 + skipped}.m4s")
        assert "#EXT-X-PROGRAM-DATE-TIME:" in text[text.index("#EXT-X-SKIP"):first]
    else:
        assert "#EXT-X-SKIP" not in text and "#EXT-X-VERSION:6\n" in text


def test_skipping_stops_at_a_discontinuity_so_the_numbering_holds() -> None:
    base = live(segments=10)
    segs = list(base.segments)
    segs[1] = LlSegment(segs[1].uri, segs[1].duration, segs[1].parts, segs[1].program_date_time, discontinuity=True)
    text = render_ll(LlPlaylist(**{**base.__dict__, "segments": tuple(segs)}), skip=True)
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n" in text and text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert render_ll(base, skip=True).count("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n") == 1


def test_old_segments_render_as_a_fresh_render_from_the_lines_kept_on_them() -> None:
    """A segment's lines without parts are kept on it (a DVR view is rendered once per part): what a render
    lists must not depend on what earlier renders of the same segments kept, near the edge or far from it."""
    grown = live(segments=40)
    edge = replace(grown, segments=grown.segments[:3])  # the same segments while they were at the edge
    fresh = replace(grown, segments=tuple(replace(s) for s in grown.segments))  # equal segments, nothing kept
    edge_text = render_ll(edge)
    assert edge_text.count('#EXT-X-PART:DURATION=0.33400,URI="p101.') == 6
    assert render_ll(grown) == render_ll(fresh) == render_ll(grown)
    assert render_ll(grown, skip=True) == render_ll(fresh, skip=True)
    assert render_ll(edge) == edge_text  # parts listed again where they belong
    assert render_ll(grown).count("#EXT-X-PROGRAM-DATE-TIME:") == 41 and '"p101.' not in render_ll(grown)


def test_ended_playlist_has_endlist_no_hint_and_ignores_skip() -> None:
    text = render_ll(live(ended=True, pending=0), skip=True)
    assert text.endswith("s109.m4s\n#EXT-X-ENDLIST\n")
    assert "PRELOAD-HINT" not in text and "#EXT-X-SKIP" not in text


@pytest.mark.parametrize(("change", "message"), [
    ({"part_hold_back": 0.9}, "PART-HOLD-BACK must be at least three Part Target Durations"),
    ({"can_skip_until": 11.9}, "CAN-SKIP-UNTIL must be at least six Target Durations"),
    ({"map_uri": 'in"it.mp4'}, "quoted-string cannot contain quotes or newlines"),
])
def test_values_the_rfc_forbids_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_ll(LlPlaylist(**{**live().__dict__, **change}))


def test_rendition_report_names_the_last_part() -> None:
    assert rendition_report(live(pending=2), "a.m3u8") == RenditionReport("a.m3u8", 110, 1)
    assert rendition_report(live(pending=0), "a.m3u8") == RenditionReport("a.m3u8", 109, 5)


# Window: segments 100..109 complete (6 parts each), parts 0 and 1 of segment 110 exist.
@pytest.mark.parametrize(("msn", "part", "skip", "outcome", "reason"), [
    (None, None, None, Reload.READY, ""),
    ("109", None, None, Reload.READY, ""),
    ("110", None, None, Reload.WAIT, ""),  # M1: segment 110 is still in progress
    ("111", None, None, Reload.WAIT, ""),  # last complete + 2
    ("112", None, None, Reload.BAD_REQUEST, "_HLS_msn more than two segments ahead"),  # S1
    ("3", None, None, Reload.READY, ""),  # M4: long gone, answer with the whole playlist
    ("3", "9", None, Reload.READY, ""),
    ("110", "0", None, Reload.READY, ""),
    ("110", "1", None, Reload.READY, ""),
    ("110", "2", None, Reload.WAIT, ""),  # M2: the hinted part
    ("110", "9", None, Reload.WAIT, ""),  # 9 - 1 = 8 parts ahead <= 3 / 0.334 = 8.98
    ("110", "10", None, Reload.BAD_REQUEST, "_HLS_part beyond the Advance Part Limit"),  # S1
    ("109", "5", None, Reload.READY, ""),
    ("109", "6", None, Reload.READY, ""),  # M3: part 0 of segment 110, which exists
    ("111", "0", None, Reload.WAIT, ""),
    (None, "1", None, Reload.BAD_REQUEST, "_HLS_part without _HLS_msn"),  # M6
    ("-1", None, None, Reload.BAD_REQUEST, "_HLS_msn must be a decimal-integer, got '-1'"),
    ("1e3", None, None, Reload.BAD_REQUEST, "_HLS_msn must be a decimal-integer, got '1e3'"),
    ("110", "x", None, Reload.BAD_REQUEST, "_HLS_part must be a decimal-integer, got 'x'"),
    ("9" * 30, None, None, Reload.BAD_REQUEST, f"_HLS_msn must be a decimal-integer, got {'9' * 30!r}"),
    (None, None, "NO", Reload.BAD_REQUEST, "_HLS_skip must be YES or v2"),
])
def test_blocking_reload_decisions(msn: str | None, part: str | None, skip: str | None, outcome: Reload,
                                   reason: str) -> None:
    decision = decide_reload(live(), msn, part, skip)
    assert (decision.outcome, decision.reason) == (outcome, reason)


def test_reload_waits_until_the_part_exists_and_not_before() -> None:
    """The same request against the window as it grows: wait, wait, then ready with the part."""
    answers = [decide_reload(live(pending=n), "110", "3").outcome for n in range(5)]
    assert answers == [Reload.WAIT, Reload.WAIT, Reload.WAIT, Reload.WAIT, Reload.READY]
    # M3 across a segment end: part 6 of 110 is part 0 of 111; ready once 111 has a part.
    assert decide_reload(live(segments=11, pending=0), "110", "6").outcome is Reload.WAIT
    assert decide_reload(live(segments=11, pending=1), "110", "6").outcome is Reload.READY


def test_skip_and_end_of_stream() -> None:
    assert decide_reload(live(), "110", "1", "YES").skip and decide_reload(live(), None, None, "v2").skip
    assert not decide_reload(live(), "110", "1").skip
    # M5: with EXT-X-ENDLIST the directives are ignored, even one far ahead.
    assert decide_reload(live(ended=True), "999", "3", "YES") == decide_reload(live(ended=True))
    assert decide_reload(live(ended=True)).outcome is Reload.READY and not decide_reload(live(ended=True)).skip


def test_stream_start_without_a_complete_segment() -> None:
    start = LlPlaylist(2, PART, "init.mp4", media_sequence=0, pending_parts=_parts(0, 1), preload_hint="p0.1.m4s")
    assert decide_reload(start, "0", "0").outcome is Reload.READY
    assert decide_reload(start, "0", "1").outcome is Reload.WAIT
    assert decide_reload(start, "1").outcome is Reload.WAIT
    assert decide_reload(start, "2").outcome is Reload.BAD_REQUEST
    assert rendition_report(start, "x") == RenditionReport("x", 0, 0)


def test_limits_from_the_rfc() -> None:
    assert advance_part_limit(0.5) == 6 and advance_part_limit(1.0) == 3 and advance_part_limit(2.0) == 3
    assert blocking_timeout(live()) == 6.0


# --------------------------------------------------------------------------- hls.js reads it


def test_hls_js_reads_the_full_playlist_as_we_meant_it(tmp_path: Path) -> None:
    playlist = live(reports=(RenditionReport("../360p/index.m3u8", 110, 1),))
    got = hls_js_parse(render_ll(playlist), tmp_path)
    assert (got["startSN"], got["endSN"], got["skipped"], got["live"]) == (100, 109, 0, True)
    assert (got["partTarget"], got["partHoldBack"], got["canSkipUntil"], got["canBlockReload"]) == (
        PART, 3 * PART, 12, True)
    assert got["hint"] == {"TYPE": "PART", "URI": "p110.2.m4s"}
    assert (got["lastPartSn"], got["lastPartIndex"]) == (110, 1)
    assert got["parts"][-2:] == [[110, 0, PART, True, "p110.0.m4s"], [110, 1, PART, False, "p110.1.m4s"]]
    assert [p[0] for p in got["parts"]] == [108] * 6 + [109] * 6 + [110] * 2
    first = got["frags"][0]
    assert first == [100, 6 * PART, "s100.m4s", T0.timestamp() * 1000, "init.mp4"]
    assert got["reports"] == [{"URI": "../360p/index.m3u8", "LAST-MSN": "110", "LAST-PART": "1"}]


def test_hls_js_reads_the_delta_update(tmp_path: Path) -> None:
    got = hls_js_parse(render_ll(live(), skip=True), tmp_path)
    assert (got["version"], got["skipped"], got["startSN"], got["endSN"]) == (9, 4, 100, 109)
    frags = got["frags"]
    assert [f[0] for f in frags] == list(range(104, 110))
    assert frags[0][3] == (T0 + timedelta(seconds=4 * 6 * PART)).timestamp() * 1000


def test_a_dvr_window_over_two_sessions_names_each_init_section_where_it_starts(tmp_path: Path) -> None:
    """Segments of an earlier publish session keep their init section; parts in progress take the playlist's."""
    base = live(segments=4, pending=2)
    older = tuple(replace(s, map_uri="init_1.mp4") for s in base.segments[:2])
    newer = (replace(base.segments[2], map_uri="init_2.mp4", discontinuity=True),
             replace(base.segments[3], map_uri="init_2.mp4"))
    text = render_ll(replace(base, segments=older + newer, map_uri="init_2.mp4"))
    lines = text.splitlines()
    maps = [(i, line) for i, line in enumerate(lines) if line.startswith("#EXT-X-MAP:")]
    assert [line for _, line in maps] == ['#EXT-X-MAP:URI="init_1.mp4"', '#EXT-X-MAP:URI="init_2.mp4"']
    assert lines[maps[1][0] - 1] == "#EXT-X-DISCONTINUITY" and lines.index("s102.m4s") > maps[1][0] > lines.index("s101.m4s")
    # A pending part of a session whose first segment is not complete yet is read with the playlist's init.
    ahead = render_ll(replace(base, segments=older, media_sequence=100, map_uri="init_2.mp4"))
    assert ahead.count("#EXT-X-MAP:") == 2 and ahead.index('URI="init_2.mp4"') > ahead.index("s101.m4s")
    got = hls_js_parse(text, tmp_path)
    assert [f[4] for f in got["frags"]] == ["init_1.mp4", "init_1.mp4", "init_2.mp4", "init_2.mp4"]


# --- reading our own LL playlist back (web-only nodes answer blocking reloads from the file) -------------

def _two_sessions() -> LlPlaylist:
    base = live(segments=4, pending=2)
    older = tuple(replace(s, map_uri="init_1.mp4") for s in base.segments[:2])
    newer = (replace(base.segments[2], map_uri="init_2.mp4", discontinuity=True),
             replace(base.segments[3], map_uri="init_2.mp4"))
    return replace(base, segments=older + newer, map_uri="init_2.mp4")


ROUND_TRIPS = {
    "live window": live(reports=(RenditionReport("../360p/live.m3u8", 110, 1), RenditionReport("../audio/live.m3u8", 110, 0))),
    "long window (delta skips)": live(segments=10, pending=0),
    "start, no complete segment": live(segments=0, pending=3),
    "ended": live(ended=True),
    "two sessions": _two_sessions(),
    "new session, parts of the old one's init": replace(_two_sessions(), segments=_two_sessions().segments[:2]),
    "DVR after a reconnect": replace(live(segments=9), discontinuity_sequence=3, playlist_type="EVENT",
                                     segments=tuple(replace(s, discontinuity=i == 4) for i, s in enumerate(live(segments=9).segments))),
    "server control not the defaults": replace(live(), part_hold_back=1.5, can_skip_until=20.0),
    "odd durations": replace(live(segments=8), segments=tuple(
        replace(s, duration=2.0 + i / 3, parts=tuple(replace(p, duration=(2.0 + i / 3) / 6) for p in s.parts))
        for i, s in enumerate(live(segments=8).segments))),
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
@pytest.mark.parametrize("skip", [False, True])
def test_a_playlist_read_back_renders_the_same_text(name: str, skip: bool) -> None:
    """What the ingest node renders from memory, a web-only node renders from the file: full and delta."""
    original = ROUND_TRIPS[name]
    parsed = parse_ll(render_ll(original))
    assert render_ll(parsed, skip=skip) == render_ll(original, skip=skip)
    assert parse_ll(render_ll(parsed)) == parsed


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_a_playlist_read_back_gets_the_same_blocking_reload_answers(name: str) -> None:
    original = ROUND_TRIPS[name]
    parsed = parse_ll(render_ll(original))
    for field in ("media_sequence", "last_msn", "ended", "part_target", "target_duration", "discontinuity_sequence",
                  "playlist_type"):
        assert getattr(parsed, field) == getattr(original, field), field
    # An ended playlist lists no parts in progress, hint nor reports (what players are told is all there is).
    live_edge = ("pending_parts", "preload_hint", "rendition_reports")
    assert [getattr(parsed, f) for f in live_edge] == [None if original.ended and f == "preload_hint" else
                                                       () if original.ended else getattr(original, f) for f in live_edge]
    last = original.last_msn
    for msn in range(last - 1, last + 4):
        for part in (None, "0", "1", "2", "5", "6", "40"):
            for skip in (None, "YES"):
                assert decide_reload(parsed, str(msn), part, skip) == decide_reload(original, str(msn), part, skip)
    if not original.ended:
        assert rendition_report(parsed, "x") == rendition_report(original, "x")


def test_segments_far_from_the_live_edge_are_read_without_parts() -> None:
    """Parts are listed near the end only (6.2.2): older segments come back with none, as players see them."""
    parsed = parse_ll(render_ll(live(segments=10)))
    assert [bool(s.parts) for s in parsed.segments] == [False] * 8 + [True] * 2
    assert parsed.segments[-1].parts == live(segments=10).segments[-1].parts
    assert parsed.segments[0].program_date_time == T0


@pytest.mark.parametrize(("text", "message"), [
    ("", "line 1: missing #EXTM3U"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:2.0,\ns.m4s\n",
     "missing #EXT-X-PART-INF: not a Low-Latency HLS playlist"),
    ("#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=0.33400\n#EXT-X-MAP:URI=\"i.mp4\"\n", "missing #EXT-X-TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.33400\n", "missing #EXT-X-MAP"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n",
     "line 3: a delta update (#EXT-X-SKIP) cannot be read back whole"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=x,URI=\"p.m4s\"\n", "line 3: bad DURATION 'x'"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.3\n", "line 3: #EXT-X-PART without URI"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\ns.m4s\n", "line 3: URI 's.m4s' without #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n", "line 3: #EXTINF without URI"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-RENDITION-REPORT:URI=\"a\",LAST-MSN=x,LAST-PART=1\n",
     "line 3: bad LAST-MSN 'x'"),
])
def test_what_is_not_our_ll_playlist_is_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(PlaylistParseError) as caught:
        parse_ll(text)
    assert str(caught.value) == message


def test_hls_js_and_our_reader_agree_on_a_playlist_read_back(tmp_path: Path) -> None:
    """A parser we did not write sees the same fragments and parts in the text a web-only node renders."""
    original = live(segments=8, reports=(RenditionReport("../360p/live.m3u8", 108, 1),))
    for skip in (False, True):
        ours = hls_js_parse(render_ll(parse_ll(render_ll(original)), skip=skip), tmp_path)
        theirs = hls_js_parse(render_ll(original, skip=skip), tmp_path)
        assert ours == theirs and ours["frags"]


def test_the_next_version_of_a_dvr_playlist_is_read_from_where_it_differs() -> None:
    """A DVR playlist grows at its end (and drops the parts of segments leaving the last three target
    durations): reading each version from the last one parses the end only, with the same result."""
    full = live(segments=40, pending=5)
    previous = None
    for segments in range(30, 41):
        for pending in (0, 3):
            version = replace(full, segments=full.segments[:segments], pending_parts=_parts(100 + segments, pending),
                              preload_hint=f"p{100 + segments}.{pending}.m4s", playlist_type="EVENT")
            text = render_ll(version)
            read = read_ll(text, previous)
            assert read.playlist == parse_ll(text) and render_ll(read.playlist, skip=True) == render_ll(version, skip=True)
            if previous is not None:
                assert read.segments_read <= 4, read.segments_read  # the last three target durations, and the new one
            previous = read
    # A file that changed from its start (a live window sliding: a new EXT-X-MEDIA-SEQUENCE) is read whole.
    moved = render_ll(replace(full, media_sequence=101, segments=full.segments[1:]))
    assert read_ll(moved, previous).segments_read == 39
    # Another session's init section carried over where the read resumes.
    two = _two_sessions()
    grown = replace(two, segments=two.segments + (replace(live(segments=5).segments[4], map_uri="init_2.mp4"),))
    assert read_ll(render_ll(grown), read_ll(render_ll(two))).playlist == parse_ll(render_ll(grown))
