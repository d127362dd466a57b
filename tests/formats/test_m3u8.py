"""m3u8 rendering and parsing (RFC 8216): table tests, exact texts, a round-trip property."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.m3u8 import (
    MediaPlaylist,
    PlaylistParseError,
    Segment,
    SubtitleRendition,
    VariantStream,
    parse_media_playlist,
    journal_entry,
    journal_header,
    parse_journal,
    parse_master,
    render_master,
    render_vod,
    target_duration_for,
)

T0 = datetime(2024, 3, 4, 9, 15, 0, 250_000, tzinfo=timezone.utc)


def playlist(durations: list[float], disc_at: tuple[int, ...] = (), target: int = 2) -> MediaPlaylist:
    pl = MediaPlaylist(target_duration=target)
    t = T0
    for i, d in enumerate(durations):
        pl.append(Segment(f"seg_{i:06d}.ts", d, i, i in disc_at, t))
        t += timedelta(seconds=d)
    return pl


def test_live_window_exact_text() -> None:
    pl = playlist([2.0, 2.0, 1.96, 2.04], disc_at=(2,))
    assert pl.render_live(window=3) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:1\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:02.250Z\n"
        "#EXTINF:2.000,\n"
        "seg_000001.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:04.250Z\n"
        "#EXTINF:1.960,\n"
        "seg_000002.ts\n"
        "#EXTINF:2.040,\n"
        "seg_000003.ts\n"
    )


@pytest.mark.parametrize(
    ("count", "disc_at", "window", "media_seq", "disc_seq", "first_has_tag"),
    [
        (3, (), 6, 0, 0, False),  # fewer segments than the window
        (10, (), 6, 4, 0, False),  # window slides
        (10, (2,), 6, 4, 1, False),  # discontinuity slid out: counted in the sequence
        (10, (4,), 6, 4, 0, True),  # discontinuity on the first listed segment: tag kept
        (10, (2, 3, 7), 6, 4, 2, False),
        (10, (2, 3, 7), 1, 9, 3, False),
    ],
)
def test_live_window_sequences(
    count: int, disc_at: tuple[int, ...], window: int, media_seq: int, disc_seq: int, first_has_tag: bool
) -> None:
    text = playlist([2.0] * count, disc_at).render_live(window)
    assert f"#EXT-X-MEDIA-SEQUENCE:{media_seq}\n" in text
    if disc_seq:
        assert f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}\n" in text
    else:
        assert "DISCONTINUITY-SEQUENCE" not in text
    parsed = parse_media_playlist(text).playlist
    assert len(parsed.segments) == min(count, window)
    assert parsed.segments[0].discontinuity is first_has_tag
    assert "#EXT-X-ENDLIST" not in text and "PLAYLIST-TYPE" not in text


def test_discontinuity_sequence_survives_trim() -> None:
    """Forgetting old segments keeps each segment's discontinuity sequence number."""
    full = playlist([2.0] * 12, disc_at=(1, 3, 8))
    trimmed = playlist([2.0] * 12, disc_at=(1, 3, 8))
    removed = trimmed.trim(keep=7)
    assert [s.sequence for s in removed] == [0, 1, 2, 3, 4]
    assert trimmed.discontinuity_sequence == 2
    for window in (1, 3, 6, 7):
        assert trimmed.render_live(window) == full.render_live(window)


def test_event_playlist_and_endlist() -> None:
    pl = playlist([2.0, 2.0, 0.52], disc_at=(1,))
    event = pl.render_event()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT\n" in event and "#EXT-X-MEDIA-SEQUENCE:0\n" in event
    assert event.count("#EXTINF") == 3 and "#EXT-X-ENDLIST" not in event
    pl.ended = True
    assert pl.render_event().endswith("seg_000002.ts\n#EXT-X-ENDLIST\n")
    assert pl.render_live(2).endswith("#EXT-X-ENDLIST\n")
    with pytest.raises(ValueError, match="playlist has ended"):
        pl.append(Segment("x.ts", 2.0, 3))


def test_vod_playlist_always_ends() -> None:
    text = playlist([2.0, 2.0]).render_vod()
    assert "#EXT-X-PLAYLIST-TYPE:VOD\n" in text and text.endswith("#EXT-X-ENDLIST\n")
    parsed = parse_media_playlist(text)
    assert parsed.playlist_type == "VOD" and parsed.playlist.ended


@pytest.mark.parametrize(
    ("durations", "target"),
    [
        ([2.0], 2), ([2.005, 2.04], 2), ([2.4994], 2), ([2.4996], 3), ([2.5], 3), ([1.9996], 2),
        ([0.4], 1), ([0.0], 1), ([2.0, 10.0], 10), ([2.0, 10.04], 10), ([2.0, 20.02], 20), ([6.2, 1.0], 6),
    ],
)
def test_target_duration_rounds_to_the_nearest_integer(durations: list[float], target: int) -> None:
    """RFC 8216 4.3.3.1: each EXTINF rounded to the nearest integer <= TARGETDURATION (not math.ceil)."""
    assert target_duration_for(*durations) == target
    pl = MediaPlaylist()
    pl.decide_target(*durations)
    for i, d in enumerate(durations):
        pl.append(Segment(f"s{i}.ts", d, i))
    assert f"#EXT-X-TARGETDURATION:{target}\n" in pl.render_live(10)
    assert pl.overlong_segments == 0


def test_target_duration_is_decided_once_and_never_changes() -> None:
    pl = MediaPlaylist()
    with pytest.raises(ValueError, match="not decided"):
        pl.render_live(3)
    pl.append(Segment("a.ts", 2.04, 0))  # the first segment decides when nobody did
    assert pl.target_duration == 2
    texts = [pl.render_live(3)]
    for i, d in enumerate([1.96, 2.3, 5.0, 2.0], start=1):
        pl.append(Segment(f"s{i}.ts", d, i))
        texts.append(pl.render_live(3))
        texts.append(pl.render_event())
    assert {t.split("\n")[2] for t in texts} == {"#EXT-X-TARGETDURATION:2"}
    assert pl.overlong_segments == 1  # 2.3 rounds to 2 and fits; 5.0 does not: counted, target kept
    assert pl.decide_target(9.0) == 2


def test_target_duration_from_segment_length_and_keyframe_interval() -> None:
    """Decided from the configured length and the measured GOP before the first segment is added."""
    pl = MediaPlaylist()
    assert pl.decide_target(2.0, 10.0, 10.008) == 10
    pl.append(Segment("a.ts", 10.008, 0))
    pl.append(Segment("b.ts", 9.96, 1))
    assert "#EXT-X-TARGETDURATION:10\n" in pl.render_event() and pl.overlong_segments == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=25_000).map(lambda ms: ms / 1000), min_size=1, max_size=30))
def test_rfc_rounding_rule_holds_for_any_durations(durations: list[float]) -> None:
    pl = MediaPlaylist(target_duration=target_duration_for(*durations))
    for i, d in enumerate(durations):
        pl.append(Segment(f"s{i}.ts", d, i))
    text = pl.render_vod()
    target = int(text.split("#EXT-X-TARGETDURATION:")[1].split("\n")[0])
    extinfs = [float(line[8:].rstrip(",")) for line in text.splitlines() if line.startswith("#EXTINF:")]
    assert all(math.floor(e + 0.5) <= target for e in extinfs)
    assert target == max(1, max(math.floor(e + 0.5) for e in extinfs))  # and no larger than needed


def test_sequences_must_be_contiguous() -> None:
    pl = playlist([2.0])
    with pytest.raises(ValueError, match="segment sequence 5 does not follow 0"):
        pl.append(Segment("x.ts", 2.0, 5))


def test_empty_playlist_renders_and_parses() -> None:
    text = MediaPlaylist(target_duration=2).render_live(6)
    assert parse_media_playlist(text).playlist.segments == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: missing #EXTM3U"),
        ("#EXTM3U\n#EXTINF:2.0,\n", "line 2: #EXTINF without URI"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\nseg.ts\n", "line 3: URI 'seg.ts' without #EXTINF"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "line 2: bad #EXT-X-TARGETDURATION 'x'"),
        ("#EXTM3U\n#EXTINF:abc,\na.ts\n", "line 2: bad EXTINF duration 'abc'"),
        ("#EXTM3U\n#EXTINF:2,\na.ts\n", "missing #EXT-X-TARGETDURATION"),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n",
            "line 3: bad EXT-X-PROGRAM-DATE-TIME 'yesterday'",
        ),
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-MEDIA-SEQUENCE:4\n",
            "line 5: #EXT-X-MEDIA-SEQUENCE after the first segment",
        ),
    ],
)
def test_parser_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PlaylistParseError) as info:
        parse_media_playlist(text)
    assert str(info.value) == message


def test_parser_ignores_unknown_tags_and_reads_foreign_pdt() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-ALLOW-CACHE:YES\n#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-03-04T10:15:00.5+01:00\n#EXTINF:5.5,title\nhttp://cdn/a.ts\n"
    )
    [segment] = parse_media_playlist(text).playlist.segments
    assert segment == Segment("http://cdn/a.ts", 5.5, 7, False, T0 + timedelta(seconds=0.25))


# -- round trip --------------------------------------------------------------

durations = st.integers(min_value=1, max_value=12_000).map(lambda ms: ms / 1000)
uris = st.from_regex(r"[a-z0-9_]{1,12}\.ts", fullmatch=True)


@st.composite
def media_playlists(draw: st.DrawFn) -> MediaPlaylist:
    start = draw(st.integers(min_value=0, max_value=10**6))
    base_disc = draw(st.integers(min_value=0, max_value=50))
    n = draw(st.integers(min_value=0, max_value=25))
    t = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)))
    t = t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=timezone.utc)
    pl = MediaPlaylist(target_duration=draw(st.integers(1, 4)), discontinuity_sequence=base_disc)
    session = 1 if draw(st.booleans()) else None  # fMP4 (a new init section at some discontinuities) or MPEG-TS
    for i in range(n):
        d = draw(durations)
        disc = draw(st.booleans())
        pdt = t if (i == 0 or disc) else None  # what the renderer writes
        if session is not None and disc and draw(st.booleans()):
            session += 1
        pl.append(Segment(draw(uris), d, start + i, disc, pdt, None if session is None else f"init_{session}.mp4"))
        t += timedelta(seconds=d)
    pl.ended = draw(st.booleans())
    return pl


@settings(max_examples=80, deadline=None)
@given(media_playlists())
def test_render_parse_round_trip(pl: MediaPlaylist) -> None:
    parsed = parse_media_playlist(pl.render_event())
    assert parsed.playlist == pl
    assert parsed.playlist_type == "EVENT"


@settings(max_examples=80, deadline=None)
@given(media_playlists(), st.integers(min_value=1, max_value=30))
def test_live_window_parses_to_the_tail(pl: MediaPlaylist, window: int) -> None:
    parsed = parse_media_playlist(pl.render_live(window)).playlist
    tail = pl.segments[-window:]
    assert [(s.uri, s.duration, s.sequence, s.discontinuity) for s in parsed.segments] == [
        (s.uri, s.duration, s.sequence, s.discontinuity) for s in tail
    ]
    # Discontinuity sequence numbers of the listed segments agree with the full playlist.
    skipped = pl.segments[: len(pl.segments) - len(tail)]
    assert parsed.discontinuity_sequence == pl.discontinuity_sequence + sum(
        s.discontinuity for s in skipped
    )


# -- master -------------------------------------------------------------------

def test_master_with_variants_audio_only_and_subtitles() -> None:
    text = render_master(
        [
            VariantStream("720p/live.m3u8", 3_220_000, 2_928_000, (1280, 720), "avc1.64001f,mp4a.40.2", 25.0),
            VariantStream("240p/live.m3u8", 510_000, None, (426, 240), "avc1.640015,mp4a.40.2"),
            VariantStream("audio/live.m3u8", 105_600, 96_000, None, "mp4a.40.2", 25.0),
        ],
        [
            SubtitleRendition("Deutsch", "de", "captions/de/live.m3u8", default=True),
            SubtitleRendition("English (auto)", "en", "captions/en/live.m3u8", autoselect=False),
        ],
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Deutsch",LANGUAGE="de",'
        'DEFAULT=YES,AUTOSELECT=YES,URI="captions/de/live.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English (auto)",LANGUAGE="en",'
        'DEFAULT=NO,AUTOSELECT=NO,URI="captions/en/live.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=3220000,AVERAGE-BANDWIDTH=2928000,CODECS="avc1.64001f,mp4a.40.2",'
        'RESOLUTION=1280x720,FRAME-RATE=25.000,SUBTITLES="subs"\n'
        "720p/live.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=510000,CODECS="avc1.640015,mp4a.40.2",RESOLUTION=426x240,'
        'SUBTITLES="subs"\n'
        "240p/live.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=105600,AVERAGE-BANDWIDTH=96000,CODECS="mp4a.40.2",'
        'SUBTITLES="subs"\n'
        "audio/live.m3u8\n"
    )


def test_a_caption_rendition_carries_its_characteristics() -> None:
    sdh = "public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound"
    text = render_master([VariantStream("a.m3u8", 1)],
                         [SubtitleRendition("한국어", "ko", "subtitles/ko/live.m3u8", characteristics=sdh)])
    assert ('#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="한국어",LANGUAGE="ko",DEFAULT=NO,AUTOSELECT=YES,'
            'CHARACTERISTICS="public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound",'
            'URI="subtitles/ko/live.m3u8"\n') in text


def test_master_without_subtitles_has_no_group() -> None:
    text = render_master([VariantStream("source/live.m3u8", 3_000_000)])
    assert text.endswith("#EXT-X-STREAM-INF:BANDWIDTH=3000000\nsource/live.m3u8\n")
    assert "SUBTITLES" not in text


def test_master_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        render_master([])
    with pytest.raises(ValueError, match="cannot contain quotes"):
        render_master([VariantStream("a.m3u8", 1)], [SubtitleRendition('x"y', "en", "s.m3u8")])


@pytest.mark.parametrize(
    ("text", "variants"),
    [
        (
            '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="fr",LANGUAGE="fr",URI="x"\n'
            '#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,CODECS="avc1.64001f,mp4a.40.2",'
            'RESOLUTION=1280x720,FRAME-RATE=30.000,SUBTITLES="subs"\nsource/live.m3u8\n'
            '#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="mp4a.40.2"\naudio/live.m3u8\n',
            [VariantStream("source/live.m3u8", 3_000_000, 2_500_000, (1280, 720), "avc1.64001f,mp4a.40.2", 30.0),
             VariantStream("audio/live.m3u8", 96_000, codecs="mp4a.40.2")],
        ),
        ("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n", []),
    ],
)
def test_master_parses_to_its_variants(text: str, variants: list[VariantStream]) -> None:
    assert parse_master(text) == variants


def test_master_round_trip() -> None:
    variants = [VariantStream("720p/live.m3u8", 2_000_000, 1_800_000, (1280, 720), "avc1.4d401f,mp4a.40.2", 25.0),
                VariantStream("audio/live.m3u8", 64_000, codecs="mp4a.40.2")]
    subtitles = [SubtitleRendition("Deutsch", "de", "subs/live.m3u8", default=True)]
    assert parse_master(render_master(variants, subtitles)) == variants


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: missing #EXTM3U"),
        ("#EXTM3U\nlive.m3u8\n", "line 2: URI 'live.m3u8' without #EXT-X-STREAM-INF"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "line 2: #EXT-X-STREAM-INF without URI"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb.m3u8\n",
         "line 3: #EXT-X-STREAM-INF without URI"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"avc1\"\na.m3u8\n", "line 2: #EXT-X-STREAM-INF without BANDWIDTH"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=lots\na.m3u8\n", "line 2: bad BANDWIDTH 'lots'"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=wide\na.m3u8\n", "line 2: bad RESOLUTION 'wide'"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=-1\na.m3u8\n", "line 2: bad FRAME-RATE '-1'"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1\na.m3u8\n", "line 2: bad attribute list at 'CODECS=\"avc1'"),
    ],
)
def test_master_parser_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PlaylistParseError) as info:
        parse_master(text)
    assert str(info.value) == message


# -- VOD playlists and journals (append-only EVENT playlists) ------------------------------


def _walled(durations: list[float], breaks: tuple[int, ...] = ()) -> list[Segment]:
    out, wall = [], T0
    for i, d in enumerate(durations):
        out.append(Segment(f"seg_{i:06d}.ts", d, i, discontinuity=i in breaks, program_date_time=wall))
        wall += timedelta(seconds=d)
    return out


def test_vod_playlist_exact_text() -> None:
    segments = _walled([2.04, 1.5], breaks=(0, 1))
    assert render_vod(segments) == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:00.250Z\n#EXTINF:2.040,\n"
        "seg_000000.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:02.290Z\n#EXTINF:1.500,\n"
        "seg_000001.ts\n#EXT-X-ENDLIST\n"
    )  # the first segment's discontinuity is dropped: nothing precedes it
    assert parse_media_playlist(render_vod(_walled([2.0, 10.01, 2.0]))).playlist.target_duration == 10
    with pytest.raises(ValueError, match="^a VOD playlist needs at least one segment$"):
        render_vod([])


def test_journal_exact_text_and_round_trip() -> None:
    segments = _walled([2.0, 2.0, 1.5], breaks=(2,))
    text = journal_header(2) + "".join(journal_entry(s) for s in segments)
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                           "#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:00.250Z\n"
                           "#EXTINF:2.000,\nseg_000000.ts\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:02.250Z\n")
    assert parse_journal(text) == segments  # every entry keeps its wall clock
    assert journal_header(0).count("#EXT-X-TARGETDURATION:1\n") == 1


@pytest.mark.parametrize("tail", [
    "#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:05.750Z\n#EXTINF:2.0",  # torn in the tags
    "#EXTI",
    "#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nseg_0000",  # torn in the URI: parses, so it is kept...
])
def test_journal_drops_a_torn_last_entry(tail: str) -> None:
    segments = _walled([2.0, 2.0, 1.5], breaks=(2,))
    text = journal_header(2) + "".join(journal_entry(s) for s in segments)
    found = parse_journal(text + tail)
    assert found[:3] == segments
    assert len(found) == (4 if tail.endswith("seg_0000") else 3)  # ...as a name the recorder then finds no file for
    assert parse_journal(journal_header(2)) == [] and parse_journal("") == []


def test_journal_with_a_broken_middle_is_refused() -> None:
    with pytest.raises(PlaylistParseError) as info:
        parse_journal(journal_header(2) + "#EXTINF:two,\nseg_000000.ts\n#EXTINF:2.0,\nseg_000001.ts\n")
    assert str(info.value) == "line 6: bad EXTINF duration 'two'"


# -- fMP4 segments (recordings of LL-HLS runs): EXT-X-MAP where the init section changes ------


def _sessions(*sessions: list[float]) -> list[Segment]:
    """fMP4 segments of several publish sessions, each read with its own init section."""
    out, wall, number = [], T0, 0
    for session, durations in enumerate(sessions, start=1):
        for i, d in enumerate(durations):
            out.append(Segment(f"seg_{number:06d}.m4s", d, number, discontinuity=session > 1 and i == 0,
                               program_date_time=wall, map_uri=f"init_{session}.mp4"))
            wall += timedelta(seconds=d)
            number += 1
        wall += timedelta(seconds=30)  # the publisher was away
    return out


def test_fmp4_vod_playlist_exact_text_and_round_trip() -> None:
    segments = _sessions([2.0, 1.5], [2.0])
    text = render_vod(segments)
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init_1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:00.250Z\n"
        "#EXTINF:2.000,\nseg_000000.m4s\n#EXTINF:1.500,\nseg_000001.m4s\n"
        "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init_2.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2024-03-04T09:15:33.750Z\n"
        "#EXTINF:2.000,\nseg_000002.m4s\n#EXT-X-ENDLIST\n"
    )  # version 6: what EXT-X-MAP needs without I-frames (RFC 8216 section 7); one MAP per init section
    assert parse_media_playlist(text).playlist.segments == [
        Segment(s.uri, s.duration, s.sequence, s.discontinuity, s.program_date_time if s.sequence != 1 else None,
                s.map_uri) for s in segments]
    # A view starting in the second session names its init section first; MPEG-TS stays version 3.
    tail = render_vod(segments[2:])
    assert tail.count("#EXT-X-MAP:") == 1 and '#EXT-X-MAP:URI="init_2.mp4"\n' in tail and "DISCONTINUITY" not in tail
    assert "#EXT-X-VERSION:3\n" in render_vod(_walled([2.0])) and "MAP" not in render_vod(_walled([2.0]))


def test_fmp4_journal_entries_each_carry_their_init_section() -> None:
    segments = _sessions([2.0, 2.0], [1.0])
    text = journal_header(2, with_map=True) + "".join(journal_entry(s) for s in segments)
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:6\n") and text.count("#EXT-X-MAP:") == 3
    assert parse_journal(text) == segments
    # A crash between an entry's MAP and its URI loses that entry only.
    assert parse_journal(text + '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init_3.mp4"\n') == segments


@pytest.mark.parametrize(("text", "message"), [
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:BYTERANGE=\"700@0\",URI=\"i.mp4\"\n",
     "line 3: #EXT-X-MAP with BYTERANGE is not supported"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"\"\n", "line 3: #EXT-X-MAP without URI"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=i.mp4 x\n", "line 3: bad attribute list at 'URI=i.mp4 x'"),
])
def test_map_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PlaylistParseError) as info:
        parse_media_playlist(text)
    assert str(info.value) == message


def test_hls_js_reads_each_segment_with_its_init_section(tmp_path: Path) -> None:
    from tests.formats.hls_js import hls_js_parse

    got = hls_js_parse(render_vod(_sessions([2.0, 1.5], [2.0, 2.0])), tmp_path)
    assert got["live"] is False and got["version"] == 6
    assert [(f[0], f[1], f[2], f[4]) for f in got["frags"]] == [
        (0, 2.0, "seg_000000.m4s", "init_1.mp4"), (1, 1.5, "seg_000001.m4s", "init_1.mp4"),
        (2, 2.0, "seg_000002.m4s", "init_2.mp4"), (3, 2.0, "seg_000003.m4s", "init_2.mp4")]
