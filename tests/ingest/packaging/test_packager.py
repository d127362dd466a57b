"""The packager against a real ffmpeg, fed FLV tags at real-time pace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from formats.m3u8 import SubtitleRendition, parse_media_playlist
from ingest.packaging import Packager, PackagerOptions, Rendition

from .support import (
    METADATA,
    RecordingListener,
    decode_frames,
    decode_ok,
    feed_realtime,
    ffmpeg_exe,
    make_source,
    pid_alive,
    read_playlist,
    video_frames,
)

pytestmark = pytest.mark.slow

FAST = PackagerOptions(segment_seconds=1.0, restart_backoff_seconds=0.05)


@pytest.fixture
async def packagers() -> AsyncIterator[list[Packager]]:
    """Packagers a test created; a failing test must not leave ffmpeg behind."""
    created: list[Packager] = []
    yield created
    for packager in created:
        if packager.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(packager.pid, signal.SIGCONT)
        await packager.close()


@pytest.fixture(autouse=True)
async def earlier_tasks() -> set[asyncio.Task[object]]:
    """Tasks already on the worker's shared event loop (the session's Chromium driver...): not this test's leaks."""
    EARLIER.clear()
    EARLIER.update(asyncio.all_tasks())
    return EARLIER


EARLIER: set[asyncio.Task[object]] = set()


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t not in EARLIER}


async def assert_no_leaks(packager: Packager, pids: list[int]) -> None:
    await asyncio.sleep(0)
    assert other_tasks() == set()
    assert packager.pid is None
    for pid in pids:
        assert not pid_alive(pid), f"ffmpeg {pid} still running"


def segment_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("seg_*.ts"))


async def test_passthrough_lists_decodable_segments_promptly(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=5.0)
    listener = RecordingListener(check_dir=tmp_path)
    packager = Packager(ffmpeg_exe(), tmp_path, FAST, listener)
    packagers.append(packager)
    await packager.start()
    assert (tmp_path / "master.m3u8").exists()
    assert not (tmp_path / "source" / "live.m3u8").exists()  # its first segment decides TARGETDURATION
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await asyncio.sleep(0.1)
    assert packager.pid is None  # no media yet, no ffmpeg
    keyframes: dict[int, float] = {}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    await feed_realtime(packager, tags, keyframe_times=keyframes)
    pids = [packager.pid]
    await packager.finish()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    await assert_no_leaks(packager, [p for p in pids if p])

    segments = listener.of("source")
    assert [s.sequence for s in segments] == list(range(5))
    assert [s.duration for s in segments] == pytest.approx([1.0] * 5, abs=0.2)
    assert not any(s.discontinuity for s in segments)
    assert listener.playlist_missing == [] and listener.failures == []
    # Each segment was listed ~immediately after the keyframe that closed it was pushed.
    delays = []
    for _, segment, listed_at in listener.segments[:-1]:
        end_ms = round((segment.sequence + 1) * 1000)
        delays.append(listed_at - keyframes[end_ms])
    print(f"\nlisting delay after closing keyframe: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms; ffmpeg CPU "
          f"{cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime:.3f} s "
          f"for 5 s")
    assert statistics.median(delays) < 0.25
    assert packager.last_listing_delay is not None and packager.last_listing_delay < 1.5

    live = parse_media_playlist((tmp_path / "source" / "live.m3u8").read_text())
    dvr = parse_media_playlist((tmp_path / "source" / "dvr.m3u8").read_text())
    assert live.playlist.ended and dvr.playlist.ended and dvr.playlist_type == "EVENT"
    assert [s.uri for s in dvr.playlist.segments] == [s.uri for s in segments]
    assert segments[0].program_date_time is not None
    assert "#EXT-X-PROGRAM-DATE-TIME" in (tmp_path / "source" / "live.m3u8").read_text()
    frames = sum(decode_frames(tmp_path / "source" / s.uri) for s in segments)
    assert frames == video_frames(tags)
    assert segment_files(tmp_path / "source") == sorted(s.uri for s in segments)
    master = (tmp_path / "master.m3u8").read_text()
    assert "source/live.m3u8" in master
    assert 'CODECS="avc1.' in master and "RESOLUTION=160x120" in master
    assert packager.segments == 5 and packager.restarts == 0 and packager.dropped_tags == 0
    packager.set_subtitles([SubtitleRendition("Deutsch", "de", "captions/de.m3u8", default=True)])
    await packager.flush()  # written by the packager's writer thread, off the event loop
    assert 'SUBTITLES="subs"' in (tmp_path / "master.m3u8").read_text()
    assert 'URI="captions/de.m3u8"' in (tmp_path / "master-dvr.m3u8").read_text()
    assert "source/dvr.m3u8" in (tmp_path / "master-dvr.m3u8").read_text()
    assert packager.bytes_in == sum(len(t.payload) for t in tags)


async def test_killed_ffmpeg_restarts_with_discontinuity(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=6.0)
    listener = RecordingListener(check_dir=tmp_path)
    packager = Packager(ffmpeg_exe(), tmp_path, FAST, listener)
    packagers.append(packager)
    await packager.start()
    await packager.begin_session()
    packager.on_metadata(METADATA)
    pids: list[int] = []

    def kill_midway(tag: object) -> None:
        if not pids and getattr(tag, "timestamp_ms") >= 2500:
            pid = packager.pid
            assert pid is not None
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)

    await feed_realtime(packager, tags, on_progress=kill_midway)
    pids.append(packager.pid or 0)
    await packager.finish()
    await assert_no_leaks(packager, [p for p in pids if p])

    assert packager.restarts == 1 and listener.failures == []
    segments = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert [s.sequence for s in segments] == list(range(len(segments)))
    disc = [i for i, s in enumerate(segments) if s.discontinuity]
    assert len(disc) == 1 and 1 <= disc[0] < len(segments) - 1
    assert segments[disc[0]].program_date_time is not None
    assert sum(s.duration for s in segments[disc[0]:]) >= 2.0  # the stream went on
    uris = [s.uri for s in segments]
    assert len(set(uris)) == len(uris)
    for s in segments:
        decode_ok(tmp_path / "source" / s.uri)
    # The restarted process's continuity counters follow on: one stream for ffmpeg's HLS reader.
    strict = subprocess.run([ffmpeg_exe(), "-v", "warning", "-xerror", "-fflags", "+discardcorrupt", "-i",
                             str(tmp_path / "source" / "dvr.m3u8"), "-f", "null", "-"], capture_output=True, text=True)
    assert strict.returncode == 0 and "corrupt" not in strict.stderr.lower(), strict.stderr
    # The half-written segment of the killed process was never listed and is gone.
    assert segment_files(tmp_path / "source") == sorted(uris)
    live_text = (tmp_path / "source" / "live.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY" in live_text and live_text.rstrip().endswith("#EXT-X-ENDLIST")


async def test_second_session_continues_numbering_after_discontinuity(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=3.0)
    listener = RecordingListener(check_dir=tmp_path)
    options = PackagerOptions(segment_seconds=1.0, live_window_seconds=3.0)
    packager = Packager(ffmpeg_exe(), tmp_path, options, listener)
    packagers.append(packager)
    await packager.start()
    pids = []
    for _ in range(2):
        await packager.begin_session()
        pids.append(packager.pid)
        packager.on_metadata(METADATA)
        await feed_realtime(packager, tags, speed=2.0)
        await packager.end_session()
        assert packager.pid is None
    segments = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert len(segments) == 6
    assert [s.discontinuity for s in segments] == [False] * 3 + [True] + [False] * 2
    assert [s.sequence for s in segments] == list(range(6))
    numbers = [int(s.uri[4:10]) for s in segments]
    assert numbers == sorted(numbers) and len(set(numbers)) == 6
    live = parse_media_playlist((tmp_path / "source" / "live.m3u8").read_text()).playlist
    assert [s.sequence for s in live.segments] == [3, 4, 5] and not live.ended
    assert live.discontinuity_sequence == 0 and live.segments[0].discontinuity

    # A new Packager on the same folder (server restart) continues the event.
    listener2 = RecordingListener()
    again = Packager(ffmpeg_exe(), tmp_path, options, listener2)
    packagers.append(again)
    await again.start()
    await again.begin_session()
    pids.append(again.pid)
    again.on_metadata(METADATA)
    await feed_realtime(again, tags[: len(tags) // 2], speed=2.0)
    await again.finish()
    after = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert after[:6] == segments
    assert after[6].discontinuity and after[6].sequence == 6
    assert int(after[6].uri[4:10]) > numbers[-1]
    await assert_no_leaks(again, [p for p in pids if p])


async def test_abr_ladder_lists_every_variant(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=3.0)
    ladder = (
        Rendition("120p", 120, video_kbps=120, audio_kbps=48, h264_level="2.0"),
        Rendition("60p", 60, video_kbps=60, audio_kbps=32, h264_level="1.1"),
        Rendition("audio", None, audio_kbps=32),
    )
    options = PackagerOptions(segment_seconds=1.0, ladder=ladder, x264_preset="ultrafast")
    listener = RecordingListener(check_dir=tmp_path)
    packager = Packager(ffmpeg_exe(), tmp_path, options, listener)
    packagers.append(packager)
    await packager.start()
    await packager.begin_session()
    pid = packager.pid
    packager.on_metadata(METADATA)
    await feed_realtime(packager, tags)
    await packager.finish()
    await assert_no_leaks(packager, [pid] if pid else [])

    master = (tmp_path / "master.m3u8").read_text()
    for name in ("120p", "60p", "audio"):
        assert f"{name}/live.m3u8" in master
    assert "RESOLUTION=160x120" in master and "RESOLUTION=80x60" in master
    assert 'CODECS="mp4a.40.2"' in master
    sequences = {}
    for name in ("120p", "60p", "audio"):
        segments = read_playlist(tmp_path / name / "live.m3u8")
        assert len(segments) >= 2, name
        sequences[name] = [s.sequence for s in segments]
        for s in segments:
            decode_ok(tmp_path / name / s.uri)
    assert sequences["120p"] == sequences["60p"] == sequences["audio"]
    frames = sum(decode_frames(tmp_path / "120p" / s.uri) for s in read_playlist(tmp_path / "120p" / "dvr.m3u8"))
    assert frames == video_frames(tags)
    assert listener.failures == [] and listener.playlist_missing == []


async def test_stalled_ffmpeg_drops_video_until_keyframe_without_blocking(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=6.0, size="320x180", video_kbps=900)
    options = PackagerOptions(segment_seconds=1.0, queue_max_bytes=64 * 1024)
    listener = RecordingListener()
    packager = Packager(ffmpeg_exe(), tmp_path, options, listener)
    packagers.append(packager)
    await packager.start()
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await feed_realtime(packager, tags[:40], speed=4.0)
    pid = packager.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    slowest = 0.0
    try:
        for tag in tags[40:]:
            t0 = time.perf_counter()
            packager.on_media(tag.kind, tag.timestamp_ms, tag.payload)
            slowest = max(slowest, time.perf_counter() - t0)
            await asyncio.sleep(0)
        assert packager.dropped_tags > 0
        assert packager._feed.queued_bytes <= 2 * options.queue_max_bytes
    finally:
        os.kill(pid, signal.SIGCONT)
    await packager.finish()
    await assert_no_leaks(packager, [pid])
    assert slowest < 0.02
    segments = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert segments and listener.failures == []
    for s in segments:
        decode_ok(tmp_path / "source" / s.uri)


async def test_repeated_crashes_give_up_and_report(tmp_path: Path, packagers: list[Packager]) -> None:
    options = PackagerOptions(segment_seconds=1.0, max_restarts_per_minute=2, restart_backoff_seconds=0.01)
    listener = RecordingListener()
    packager = Packager(ffmpeg_exe(), tmp_path, options, listener)
    packagers.append(packager)
    await packager.start()
    await packager.begin_session()
    first = next(t for t in make_source(seconds=2.0) if t.is_video_frame)
    packager.on_media(first.kind, first.timestamp_ms, first.payload)  # ffmpeg starts at the first frame
    pids = []
    for _ in range(3):
        for _ in range(200):
            if packager.pid is not None:
                break
            await asyncio.sleep(0.01)
        pid = packager.pid
        assert pid is not None
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if packager.pid != pid:
                break
            await asyncio.sleep(0.01)
    for _ in range(200):
        if listener.failures:
            break
        await asyncio.sleep(0.01)
    assert len(listener.failures) == 1 and "3 times within a minute" in listener.failures[0]
    assert packager.restarts == 2 and packager.failed_reason == listener.failures[0]
    await packager.finish()
    await assert_no_leaks(packager, pids)
    assert (tmp_path / "source" / "live.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")


async def test_missing_ffmpeg_is_reported_not_raised(tmp_path: Path, packagers: list[Packager]) -> None:
    listener = RecordingListener()
    packager = Packager(str(tmp_path / "no-ffmpeg"), tmp_path, FAST, listener)
    packagers.append(packager)
    await packager.begin_session()
    first = next(t for t in make_source(seconds=2.0) if t.is_video_frame)
    packager.on_media(first.kind, first.timestamp_ms, first.payload)
    for _ in range(100):
        if listener.failures:
            break
        await asyncio.sleep(0.01)
    assert listener.failures and listener.failures[0].startswith("cannot start ffmpeg")
    await packager.finish()
    await assert_no_leaks(packager, [])


async def test_grace_period_ends_the_event(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=2.0)
    options = PackagerOptions(segment_seconds=1.0, endlist_grace_seconds=0.2)
    packager = Packager(ffmpeg_exe(), tmp_path, options, RecordingListener())
    packagers.append(packager)
    await packager.begin_session()
    await feed_realtime(packager, tags, speed=4.0)
    await packager.end_session()
    assert not packager.finished
    await asyncio.sleep(0.5)
    assert packager.finished
    assert parse_media_playlist((tmp_path / "source" / "live.m3u8").read_text()).playlist.ended
    await assert_no_leaks(packager, [])


async def test_close_on_cancel_leaves_nothing_running(tmp_path: Path, packagers: list[Packager]) -> None:
    tags = make_source(seconds=2.0)
    packager = Packager(ffmpeg_exe(), tmp_path, FAST, RecordingListener())
    packagers.append(packager)
    await packager.begin_session()
    pid = packager.pid
    feeder = asyncio.create_task(feed_realtime(packager, tags))
    await asyncio.sleep(0.3)
    feeder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await feeder
    await packager.close()
    await assert_no_leaks(packager, [pid] if pid else [])


async def test_no_media_no_ffmpeg(tmp_path: Path, packagers: list[Packager]) -> None:
    """A publisher that sends metadata and codec headers but never a frame starts no ffmpeg."""
    tags = make_source(seconds=2.0)
    headers = [t for t in tags if not t.is_video_frame and t.kind == "video"][:1] + [
        t for t in tags if t.kind == "audio"][:1]  # the AVC sequence header and the AAC one
    listener = RecordingListener()
    packager = Packager(ffmpeg_exe(), tmp_path, FAST, listener)
    packagers.append(packager)
    await packager.begin_session()
    packager.on_metadata(METADATA)
    for tag in headers:
        packager.on_media(tag.kind, tag.timestamp_ms, tag.payload)
    await asyncio.sleep(1.0)
    assert packager.pid is None
    await packager.end_session()
    await packager.finish()
    await assert_no_leaks(packager, [])
    assert listener.segments == [] and listener.failures == []
    assert not list((tmp_path / "source").glob("seg_*"))
    assert read_playlist(tmp_path / "source" / "live.m3u8") == []  # ended, with the configured target
    assert "#EXT-X-TARGETDURATION:1\n" in (tmp_path / "source" / "live.m3u8").read_text()


LONG_GOP = PackagerOptions(segment_seconds=2.0, hung_after_seconds=1.5, restart_backoff_seconds=0.05)


async def test_a_long_keyframe_interval_is_waited_for_not_killed(tmp_path: Path, packagers: list[Packager]) -> None:
    """10 s GOP, 2 s segments, a 1.5 s watchdog: pushed at 4x, each GOP takes 2.5 s of wall clock
    with nothing to list. The old rule (no listing for hung_after) killed ffmpeg here; judged from
    the media, nothing is owed until the keyframe that closes a segment arrives."""
    tags = make_source(seconds=21.0, fps=10, gop_seconds=10.0)
    listener = RecordingListener(check_dir=tmp_path)
    packager = Packager(ffmpeg_exe(), tmp_path, LONG_GOP, listener)
    packagers.append(packager)
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await feed_realtime(packager, tags, speed=4.0)
    await listener.wait_for(2)
    assert packager.keyframe_interval_seconds == pytest.approx(10.0, abs=0.01)
    await packager.finish()
    assert packager.hung_kills == 0 and packager.restarts == 0 and listener.failures == []
    segments = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert [round(s.duration) for s in segments] == [10, 10, 1]
    for name in ("live.m3u8", "dvr.m3u8"):
        assert "#EXT-X-TARGETDURATION:10\n" in (tmp_path / "source" / name).read_text()
    assert sum(decode_frames(tmp_path / "source" / s.uri) for s in segments) == video_frames(tags)


async def test_a_frozen_ffmpeg_is_killed_once_a_segment_is_owed(tmp_path: Path, packagers: list[Packager]) -> None:
    """Same watchdog, 1 s GOP: ffmpeg stopped mid-stream owes the segment its next keyframe closes."""
    tags = make_source(seconds=10.0, fps=10, gop_seconds=1.0)
    listener = RecordingListener()
    packager = Packager(ffmpeg_exe(), tmp_path, LONG_GOP, listener)
    packagers.append(packager)
    await packager.begin_session()
    packager.on_metadata(METADATA)
    frozen: list[int] = []

    def freeze(tag: object) -> None:
        if not frozen and getattr(tag, "timestamp_ms") >= 2500 and packager.pid is not None:
            frozen.append(packager.pid)
            os.kill(packager.pid, signal.SIGSTOP)

    await feed_realtime(packager, tags, speed=1.5, on_progress=freeze)
    assert frozen and packager.hung_kills == 1 and packager.restarts == 1
    assert packager.segment_overdue_seconds < 1.5
    await packager.finish()
    segments = read_playlist(tmp_path / "source" / "dvr.m3u8")
    assert sum(1 for s in segments if s.discontinuity) == 1
    assert not pid_alive(frozen[0])


async def test_the_ladder_keeps_short_segments_whatever_the_source_gop(tmp_path: Path, packagers: list[Packager]) -> None:
    """Re-encoded renditions get a keyframe every segment: a 4 s source GOP does not stretch them."""
    tags = make_source(seconds=4.0, gop_seconds=4.0)
    ladder = (Rendition("60p", 60, video_kbps=60, audio_kbps=32, h264_level="1.1"),
              Rendition("audio", None, audio_kbps=32))
    options = PackagerOptions(segment_seconds=1.0, ladder=ladder, x264_preset="ultrafast")
    listener = RecordingListener()
    packager = Packager(ffmpeg_exe(), tmp_path, options, listener)
    packagers.append(packager)
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await feed_realtime(packager, tags, speed=2.0)
    await packager.finish()
    for name in ("60p", "audio"):
        text = (tmp_path / name / "dvr.m3u8").read_text()
        assert "#EXT-X-TARGETDURATION:1\n" in text, text
        durations = [s.duration for s in read_playlist(tmp_path / name / "dvr.m3u8")]
        assert len(durations) >= 3 and all(d < 1.5 for d in durations), durations
    assert packager.hung_kills == 0 and listener.failures == []
