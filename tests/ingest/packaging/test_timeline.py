"""Numbering, discontinuities, rendition alignment and retention across ffmpeg processes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ingest.packaging.ffmpeg_args import SegmentListEntry, segment_filename
from ingest.packaging.options import PackagerOptions, Rendition
from formats.m3u8 import MediaPlaylist, Segment
from ingest.packaging.timeline import AlignmentLost, EventTimeline
from ingest.packaging.variants import build_variants, codecs_from_sequence_headers

LADDER = (Rendition("360p", 360, 800), Rendition("audio", None, audio_kbps=64))
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def entry(rendition: str, number: int, start: float, end: float) -> SegmentListEntry:
    return SegmentListEntry(rendition, segment_filename(number), start, end)


def run_segments(tl: EventTimeline, count: int, renditions: tuple[str, ...] = ("source",)) -> list[str]:
    first = tl.start_run()
    listed = []
    for i in range(count):
        for r in renditions:
            listed += tl.add(entry(r, first + i, 2.0 * i, 2.0 * i + 2.0))
    return [item.segment.uri for item in listed]


def test_first_run_numbers_and_clock() -> None:
    tl = EventTimeline(PackagerOptions())
    assert tl.start_run() == 0
    tl.set_run_clock(T0)
    a = tl.add(entry("source", 0, 0.0, 2.02))
    b = tl.add(entry("source", 1, 2.02, 4.0))
    assert [x.segment for x in a + b] == [
        Segment("seg_000000.ts", pytest.approx(2.02), 0, False, T0),  # type: ignore[arg-type]
        Segment("seg_000001.ts", pytest.approx(1.98), 1, False, T0 + timedelta(seconds=2.02)),  # type: ignore[arg-type]
    ]
    assert tl.next_number == 2


def test_restart_marks_discontinuity_and_never_reuses_names() -> None:
    tl = EventTimeline(PackagerOptions())
    run_segments(tl, 3)
    # Process died while writing segment 3 (on disk, never reported).
    orphans = tl.end_run({"source": [segment_filename(n) for n in range(4)] + ["live.m3u8"]})
    assert orphans == [("source", "seg_000003.ts")]
    tl.mark_discontinuity()
    assert tl.start_run() == 4
    [item] = tl.add(entry("source", 4, 0.0, 2.0))
    assert item.segment.sequence == 3 and item.segment.discontinuity
    [item] = tl.add(entry("source", 5, 2.0, 4.0))
    assert not item.segment.discontinuity


def test_orphans_are_only_files_of_this_run_above_the_last_listed() -> None:
    options = PackagerOptions(segment_seconds=1.0, live_window_seconds=3.0, dvr=False)
    tl = EventTimeline(options)
    run_segments(tl, 20)  # most of them trimmed from memory by now
    tl.trim()
    on_disk = [segment_filename(n) for n in range(21)]
    assert tl.end_run({"source": on_disk}) == [("source", "seg_000020.ts")]


def test_groups_are_listed_only_when_every_rendition_reported() -> None:
    tl = EventTimeline(PackagerOptions(ladder=LADDER))
    tl.start_run()
    assert tl.add(entry("audio", 0, 0.0, 1.99)) == []
    assert tl.add(entry("audio", 1, 1.99, 4.0)) == []
    listed = tl.add(entry("360p", 0, 0.0, 2.0))
    assert [(x.rendition, x.segment.sequence) for x in listed] == [("360p", 0), ("audio", 0)]
    listed = tl.add(entry("360p", 1, 2.0, 4.0))
    assert [(x.rendition, x.number) for x in listed] == [("360p", 1), ("audio", 1)]


def test_incomplete_group_at_exit_is_dropped_everywhere() -> None:
    tl = EventTimeline(PackagerOptions(ladder=LADDER))
    tl.start_run()
    tl.add(entry("360p", 0, 0.0, 2.0))
    tl.add(entry("audio", 0, 0.0, 2.0))
    tl.add(entry("audio", 1, 2.0, 4.0))  # video's segment 1 never came
    orphans = tl.end_run({"360p": ["seg_000000.ts", "seg_000001.ts"], "audio": ["seg_000000.ts", "seg_000001.ts"]})
    assert orphans == [("360p", "seg_000001.ts"), ("audio", "seg_000001.ts")]
    tl.mark_discontinuity()
    assert tl.start_run() == 2
    tl.add(entry("360p", 2, 0.0, 2.0))
    listed = tl.add(entry("audio", 2, 0.0, 2.0))
    assert [(x.segment.sequence, x.segment.discontinuity) for x in listed] == [(1, True), (1, True)]


def test_drifting_renditions_raise_alignment_lost() -> None:
    tl = EventTimeline(PackagerOptions(ladder=LADDER))
    tl.start_run()
    with pytest.raises(AlignmentLost, match=r"segments \[0, 1, 2, 3, 4\] incomplete"):
        for n in range(5):
            tl.add(entry("audio", n, 2.0 * n, 2.0 * n + 2))


def test_unexpected_entries_are_refused() -> None:
    tl = EventTimeline(PackagerOptions())
    tl.start_run()
    with pytest.raises(ValueError, match="unknown rendition '720p'"):
        tl.add(entry("720p", 0, 0, 2))
    with pytest.raises(ValueError, match="unexpected segment file 'other.ts'"):
        tl.add(SegmentListEntry("source", "other.ts", 0, 2))


def test_session_discontinuity_only_after_existing_segments() -> None:
    tl = EventTimeline(PackagerOptions())
    tl.mark_discontinuity()  # first session of the event: nothing to be discontinuous with
    tl.start_run()
    [item] = tl.add(entry("source", 0, 0.0, 2.0))
    assert not item.segment.discontinuity


def test_restore_continues_sequence_and_numbers() -> None:
    old = MediaPlaylist(target_duration=2, discontinuity_sequence=1)
    for i in range(3):
        old.append(Segment(segment_filename(10 + i), 2.0, 5 + i))
    old.ended = True
    tl = EventTimeline(PackagerOptions())
    tl.restore("source", old)
    tl.note_existing_files(["seg_000013.ts", "live.m3u8"])  # half-written before the crash
    assert not tl.ended
    assert tl.start_run() == 14
    [item] = tl.add(entry("source", 14, 0.0, 2.0))
    assert item.segment.sequence == 8 and item.segment.discontinuity


@pytest.mark.parametrize(
    ("dvr", "keep", "remembered", "deleted"),
    [(True, True, 20, 0), (True, False, 20, 0), (False, True, 6, 0), (False, False, 6, 14)],
)
def test_retention(dvr: bool, keep: bool, remembered: int, deleted: int) -> None:
    options = PackagerOptions(segment_seconds=2.0, live_window_seconds=6.0, dvr=dvr, keep_segments=keep)
    tl = EventTimeline(options)
    run_segments(tl, 20)
    doomed = tl.trim()
    assert len(tl.segments("source")) == remembered
    assert len(doomed) == deleted
    if doomed:
        assert doomed[0] == ("source", "seg_000000.ts")


@pytest.mark.parametrize("dvr,keep", [(True, True), (False, True), (False, False)])
def test_low_disk_keeps_only_the_live_window_and_the_dvr_grows_again_after(dvr: bool, keep: bool) -> None:
    """Issue 17 (8): below the disk floor every event deletes what leaves twice the live window
    (DVR and keep_segments notwithstanding); the DVR then lists the live window, and grows again
    from the live window of the moment space returned."""
    options = PackagerOptions(segment_seconds=2.0, live_window_seconds=6.0, dvr=dvr, keep_segments=keep)
    tl = EventTimeline(options)
    run_segments(tl, 10)
    assert tl.dvr_start("source") is None  # an EVENT playlist of every segment
    tl.pause_history(True)
    doomed = tl.trim()
    assert [s.sequence for s in tl.segments("source")] == list(range(4, 10))  # 2 x 3-segment window
    assert doomed == [("source", segment_filename(n)) for n in range(4)]  # keep_segments too: the disk comes first
    assert tl.dvr_start("source") == 7  # the live window only
    tl.pause_history(False)
    assert tl.dvr_start("source") == 7  # frozen: never goes back before what was listed
    first = tl.start_run()
    for i in range(3):
        tl.add(entry("source", first + i, 2.0 * i, 2.0 * i + 2.0))
    tl.trim()
    assert tl.dvr_start("source") == 7 and len(tl.segments("source")) == (9 if dvr else 6)


def test_end_and_reopen() -> None:
    tl = EventTimeline(PackagerOptions())
    run_segments(tl, 2)
    tl.end()
    assert tl.ended and tl.playlists["source"].render_live(6).endswith("#EXT-X-ENDLIST\n")
    tl.reopen()
    assert not tl.ended
    [item] = tl.add(entry("source", 2, 4.0, 6.0))
    assert item.segment.discontinuity


# -- master playlist content ------------------------------------------------------

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x4d\x40\x1f\xff\xe1"
AAC_HEADER = b"\xaf\x00\x12\x10"


def test_codecs_from_sequence_headers() -> None:
    assert codecs_from_sequence_headers({"video": AVC_HEADER, "audio": AAC_HEADER}) == "avc1.4d401f,mp4a.40.2"
    assert codecs_from_sequence_headers({"audio": b"\xaf\x00\x2b\x92"}) == "mp4a.40.5"
    assert codecs_from_sequence_headers({"video": b"\x1c\x00\x00"}) is None  # HEVC legacy id
    assert codecs_from_sequence_headers({}) is None


def test_passthrough_variant_from_metadata_and_measurements() -> None:
    meta = {"width": 1280.0, "height": 720.0, "framerate": 30.0, "videodatarate": 2500.0, "audiodatarate": 128.0}
    [variant] = build_variants(PackagerOptions(), meta, {"video": AVC_HEADER, "audio": AAC_HEADER})
    assert variant.uri == "source/live.m3u8"
    assert variant.bandwidth == int(2628 * 1000 * 1.1)
    assert variant.resolution == (1280, 720) and variant.frame_rate == 30.0
    assert variant.codecs == "avc1.4d401f,mp4a.40.2"
    [measured] = build_variants(PackagerOptions(), meta, {}, measured_peak_bps=5_000_000)
    assert measured.bandwidth == 5_000_000 and measured.codecs is None
    [unknown] = build_variants(PackagerOptions(passthrough_bandwidth=1_234_000), None, {})
    assert unknown.bandwidth == 1_234_000 and unknown.resolution is None


def test_ladder_variants_follow_source_aspect() -> None:
    options = PackagerOptions(ladder=LADDER)
    variants = build_variants(options, {"width": 1440.0, "height": 1080.0, "framerate": 25.0}, {})
    assert [(v.uri, v.resolution, v.codecs, v.frame_rate) for v in variants] == [
        ("360p/live.m3u8", (480, 360), "avc1.64001f,mp4a.40.2", 25.0),
        ("audio/live.m3u8", None, "mp4a.40.2", None),
    ]
    assert variants[0].average_bandwidth == 928_000 and variants[0].bandwidth == int(928_000 * 1.1)
    assert build_variants(options, None, {})[0].resolution == (640, 360)


def test_ladder_variants_without_audio() -> None:
    """A publisher without audio: no audio-only variant, no AAC in CODECS, no audio in the bandwidth."""
    variants = build_variants(PackagerOptions(ladder=LADDER), None, {}, has_audio=False)
    assert [(v.uri, v.codecs) for v in variants] == [("360p/live.m3u8", "avc1.64001f")]
    assert variants[0].average_bandwidth == 800_000


def test_a_run_without_the_audio_rendition_lists_its_video_segments() -> None:
    """ffmpeg makes the video renditions only: a group is complete without the audio-only one."""
    tl = EventTimeline(PackagerOptions(ladder=LADDER))
    first = tl.start_run(["360p"])
    listed = [item for i in range(3) for item in tl.add(entry("360p", first + i, 2.0 * i, 2.0 * i + 2.0))]
    assert [(item.rendition, item.number) for item in listed] == [("360p", first + i) for i in range(3)]
    assert list(tl.segments("audio")) == []
    with pytest.raises(ValueError, match="unknown rendition"):
        tl.add(entry("audio", first + 3, 6.0, 8.0))
    with pytest.raises(ValueError, match="a run makes some of"):
        tl.start_run(["1080p"])


@pytest.mark.parametrize(
    ("segment_seconds", "keyframe_interval", "first", "target"),
    [
        (2.0, 2.0, 2.04, 2),  # the recommended setup: RFC rounding, not ceil (3)
        (2.0, 1.0, 2.0, 2),  # GOP shorter than the segment: the segment length decides
        (2.0, 10.0, 10.0, 10),  # ffmpeg/x264 defaults at 25 fps
        (2.0, 20.0, 20.02, 20),
        (2.0, None, 4.48, 4),  # no measurement yet: the first segment decides
        (1.5, None, 1.5, 2),
    ],
)
def test_target_duration_decided_at_the_first_segment(
    segment_seconds: float, keyframe_interval: float | None, first: float, target: int
) -> None:
    tl = EventTimeline(PackagerOptions(segment_seconds=segment_seconds, ladder=LADDER))
    assert tl.target_duration("360p") is None  # nothing listed: nothing rendered yet
    tl.keyframe_interval = keyframe_interval
    tl.start_run()
    for r in ("360p", "audio"):
        tl.add(entry(r, 0, 0.0, first))
    assert tl.target_duration("360p") == tl.target_duration("audio") == target
    tl.keyframe_interval = 30.0  # the GOP grows later: the target does not move (RFC 8216)
    for r in ("360p", "audio"):
        tl.add(entry(r, 1, first, first + 30.0))
    assert tl.target_duration("360p") == target and tl.overlong_segments == 1
    assert f"#EXT-X-TARGETDURATION:{target}\n" in tl.playlists["audio"].render_event()


def test_an_event_that_never_listed_still_ends_with_the_configured_target() -> None:
    tl = EventTimeline(PackagerOptions(segment_seconds=2.0))
    tl.end()
    assert "#EXT-X-TARGETDURATION:2\n" in tl.playlists["source"].render_live(3)


def test_restore_keeps_the_target_the_playlist_was_written_with() -> None:
    old = MediaPlaylist(target_duration=10)
    old.append(Segment(segment_filename(0), 10.0, 0))
    tl = EventTimeline(PackagerOptions(segment_seconds=2.0))
    tl.restore("source", old)
    tl.keyframe_interval = 2.0
    tl.start_run()
    tl.add(entry("source", 1, 0.0, 2.0))
    assert tl.target_duration("source") == 10
