"""The recording's files as plain data: trim views, the VOD master, WebVTT (the journal: tests/formats)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from formats.webvtt import render
from formats.m3u8 import Segment, parse_media_playlist, render_vod
from recorder.storage import RecordingFiles, TrimError, trimmed, vod_master
from vod.replay import anchors, chapter_cues, timeline_of_wall

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


def _segments(durations: list[float], breaks: tuple[int, ...] = (), gap: float = 30.0) -> list[Segment]:
    out, wall = [], T0.timestamp()
    for i, d in enumerate(durations):
        if i in breaks:
            wall += gap
        out.append(Segment(f"seg_{i:06d}.ts", d, i, discontinuity=i in breaks,
                           program_date_time=datetime.fromtimestamp(wall, timezone.utc)))
        wall += d
    return out


def test_trim_keeps_whole_segments_and_says_where_the_view_starts() -> None:
    segments = _segments([2.0] * 5)
    kept, offset = trimmed(segments, 3.0, 7.0)
    assert [s.uri for s in kept] == ["seg_000001.ts", "seg_000002.ts", "seg_000003.ts"] and offset == 2.0
    assert trimmed(segments)[0] == segments
    with pytest.raises(TrimError):
        trimmed(segments, 10.0)
    vod = parse_media_playlist(render_vod(kept))
    assert vod.playlist_type == "VOD" and vod.playlist.ended and not vod.playlist.segments[0].discontinuity
    assert vod.playlist.target_duration == 2  # RFC 8216 rounding: 2.04 s segments do not make it 3
    assert parse_media_playlist(render_vod(_segments([2.04, 2.005, 1.96]))).playlist.target_duration == 2
    assert parse_media_playlist(render_vod(_segments([2.0, 10.01, 2.0]))).playlist.target_duration == 10


def test_vod_master_keeps_what_the_live_master_advertised() -> None:
    live = ('#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="fr",LANGUAGE="fr",URI="x"\n'
            '#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000,SUBTITLES="subs"\n'
            'source/live.m3u8\n')
    master = vod_master(live, "source", 2_500_000)
    assert 'CODECS="avc1.64001f,mp4a.40.2"' in master and "RESOLUTION=1280x720" in master
    assert "SUBTITLES" not in master and master.rstrip().endswith("vod.m3u8")
    assert "BANDWIDTH=1" in vod_master(None, None, 0)


def test_wall_clock_maps_to_the_timeline_across_a_reconnect_gap() -> None:
    found = anchors(_segments([2.0, 2.0, 2.0], breaks=(2,), gap=30.0))
    t0 = T0.timestamp()
    assert timeline_of_wall(found, t0 + 1.0) == 1.0
    assert timeline_of_wall(found, t0 + 10.0) == 4.0  # during the gap: the end of the first session
    assert timeline_of_wall(found, t0 + 34.5) == 4.5  # after the reconnect: no 30 s shift


def test_chapters_track() -> None:
    vtt = render(chapter_cues([(65.0, "Part --> two"), (0.0, "Intro\n\nlines")], 120.0))
    assert vtt.startswith("WEBVTT\n\nchapter-1\n00:00:00.000 --> 00:01:05.000\nIntro\nlines\n")
    assert "00:01:05.000 --> 00:02:00.000\nPart --&gt; two\n" in vtt


def test_files_link_journal_and_finalize(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    files = RecordingFiles(tmp_path / "rec")
    files.create()
    assert not (files.folder / "index.m3u8").exists()  # the header waits for the live target duration
    for segment in _segments([2.0, 1.0]):
        (live / segment.uri).write_bytes(b"\x47" * 1880)
        assert files.link(live / segment.uri) == 1880
        files.append(segment, 2)
    assert (files.folder / "index.m3u8").read_text().count("#EXT-X-TARGETDURATION:2\n") == 1
    (live / "seg_000000.ts").unlink()  # the live folder may be cleaned: the link keeps the data
    segments = files.journal_segments()
    summary = files.finalize(segments, None, None)
    assert (summary.segments, summary.duration_seconds, summary.size_bytes) == (2, 3.0, 3760)
    assert files.write_view(2.5) == (2.0, 1.0)
    assert [s.uri for s in files.view_segments()] == ["seg_000001.ts"]
