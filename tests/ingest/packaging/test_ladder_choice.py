"""When and for which picture an ABR ladder's rungs are chosen: at once from an RTMP publisher's first
picture; from the tallest a WHIP publisher sends in its first seconds (a browser's encoder starts smaller
while it probes the bandwidth); once, for the packager's life, whatever restarts ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from formats.m3u8 import parse_master
from ingest.packaging import PackagerOptions, Rendition
from ingest.packaging.feed import FlvFeed
from ingest.packaging.ll_packager import LlPackager
from ingest.packaging.options import DEFAULT_LADDER, chosen_for_source, ladder_wait_seconds
from ingest.packaging.packager import Packager
from ingest.packaging.transcoder import Transcoder

from .support import METADATA, RecordingListener, Tag, decode_frames, feed_realtime, ffmpeg_exe, make_source, \
    read_playlist, video_frames

STEP = 0.1  # seconds between two looks at the tallest picture (the supervisor looks at every frame)


def chosen_over_time(arrivals: list[tuple[float, int]], settle: float) -> tuple[float, list[str]]:
    """Picture heights as they arrive, (seconds after the first frame, height), the first at 0 → when the
    rungs of the default ladder are chosen and which they are, as the supervisor's hold decides it."""
    options = PackagerOptions(ladder=DEFAULT_LADDER, ladder_settle_seconds=settle)
    feed = FlvFeed(options.queue_max_bytes)
    pending = list(arrivals)
    for step in range(1000):
        now = round(step * STEP, 3)
        while pending and pending[0][0] <= now:
            feed.set_metadata({"height": pending.pop(0)[1]})
        if ladder_wait_seconds(options, feed.tallest_height, now) == 0:
            return now, list(chosen_for_source(options, feed.tallest_height, "test").rendition_names)
    raise AssertionError("never chosen")


def test_rtmp_rungs_are_chosen_from_the_first_picture_at_once() -> None:
    assert chosen_over_time([(0, 240), (1.0, 480)], settle=0) == (0, ["240p", "audio"])


def test_a_browser_ramping_up_gets_the_rungs_of_its_tallest_early_picture() -> None:
    # 240, then 360, then 480 lines within the window: chosen at its end, for 480.
    assert chosen_over_time([(0, 240), (0.8, 360), (1.6, 480)], settle=3) == (3.0, ["480p", "240p", "audio"])
    # A picture that keeps every rung ends the wait at once: nothing taller can add one.
    assert chosen_over_time([(0, 360), (1.2, 720)], settle=3) == (1.2, ["720p", "480p", "240p", "audio"])
    assert chosen_over_time([(0, 1080)], settle=3) == (0, ["720p", "480p", "240p", "audio"])
    # Going down again does not take a rung away: the tallest picture counts.
    assert chosen_over_time([(0, 480), (1.0, 240)], settle=3) == (3.0, ["480p", "240p", "audio"])


def test_a_picture_after_the_window_is_not_waited_for() -> None:
    assert chosen_over_time([(0, 240), (3.5, 480)], settle=3) == (3.0, ["240p", "audio"])


def test_passthrough_and_unknown_heights_never_wait() -> None:
    assert ladder_wait_seconds(PackagerOptions(ladder_settle_seconds=3), 240, 0) == 0
    assert ladder_wait_seconds(PackagerOptions(ladder=DEFAULT_LADDER, ladder_settle_seconds=3), None, 0) == 0
    with pytest.raises(ValueError):
        PackagerOptions(ladder_settle_seconds=-1)


def shifted(tags: tuple[Tag, ...], ms: int) -> list[Tag]:
    return [dataclasses.replace(tag, timestamp_ms=tag.timestamp_ms + ms) for tag in tags]


def growing_source(first_seconds: float, then_seconds: float) -> tuple[list[Tag], list[Tag]]:
    """A publisher whose encoder scales up: 160x120 for ``first_seconds``, then 320x240 (a new sequence
    header, then a keyframe), one timeline; returned as the two parts."""
    small = make_source(seconds=first_seconds, size="160x120", fps=10)
    tall = make_source(seconds=then_seconds, size="320x240", fps=10)
    return list(small), shifted(tall, int(first_seconds * 1000))


def test_the_feed_keeps_the_tallest_picture_and_skips_to_the_latest_keyframe() -> None:
    small, tall = growing_source(1.0, 2.0)
    feed = FlvFeed(8 * 1024 * 1024)
    for tag in small:
        feed.push(tag.kind, tag.timestamp_ms, tag.payload, 0.0)
    assert feed.tallest_height == feed.source_height == 120
    for tag in tall:
        feed.push(tag.kind, tag.timestamp_ms, tag.payload, 0.0)
    for tag in small[:3]:  # the same encoder scaled down again (its old sequence header)
        feed.push(tag.kind, 3000 + tag.timestamp_ms, tag.payload, 0.0)
    assert feed.source_height == 120 and feed.tallest_height == 240
    feed.reset()
    assert feed.tallest_height is None

    for tag in small + tall:
        feed.push(tag.kind, tag.timestamp_ms, tag.payload, 0.0)
    queued = len(feed)
    skipped = feed.skip_to_latest_keyframe()
    last_key = max(t.timestamp_ms for t in tall if t.is_keyframe)
    assert skipped > len(small) and len(feed) == queued - skipped and feed.dropped_tags == 0
    feed.new_process(resync=False)
    out = feed.pop()
    assert out is not None and feed.first_media is not None and feed.first_media.timestamp_ms == last_key


# -- with a real ffmpeg, for either packager --------------------------------------------------------------

#: Small rungs keep the encodes cheap: a 120-line picture keeps 120p + audio, a 240-line one every rung.
LADDER = (
    Rendition("240p", 240, video_kbps=200, audio_kbps=48, h264_level="2.1"),
    Rendition("120p", 120, video_kbps=80, audio_kbps=32, h264_level="1.1"),
    Rendition("audio", None, audio_kbps=32),
)
OPTIONS = PackagerOptions(segment_seconds=1.0, ladder=LADDER, x264_preset="ultrafast", restart_backoff_seconds=0.05)

Made = Callable[[Path, PackagerOptions, RecordingListener], "Packager | LlPackager"]
KINDS: dict[str, Made] = {
    "plain": lambda folder, options, listener: Packager(ffmpeg_exe(), folder, options, listener),
    "ll": lambda folder, options, listener: LlPackager(folder, options, listener, part_target=0.334,
                                                       ffmpeg=ffmpeg_exe()),
}


@pytest.fixture
async def made() -> AsyncIterator[list[Packager | LlPackager]]:
    created: list[Packager | LlPackager] = []
    yield created
    for packager in created:
        with contextlib.suppress(Exception):
            await packager.close()


def pid_of(packager: Packager | LlPackager) -> int | None:
    if isinstance(packager, LlPackager):
        assert packager.transcoder is not None
        return packager.transcoder.pid
    return packager.pid


def scalers(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        args = cmdline.read().split(b"\0")
    return re.findall(r"scale=-2:(\d+)", args[args.index(b"-filter_complex") + 1].decode())


def master_uris(folder: Path) -> list[str]:
    return [variant.uri for variant in parse_master((folder / "master.m3u8").read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
async def test_a_held_start_takes_the_taller_picture_and_starts_at_its_keyframe(
        tmp_path: Path, made: list[Packager | LlPackager], kind: str) -> None:
    """A WHIP-like publisher: 1 s at 120 lines, then 240. ffmpeg does not start on the first picture; the
    240-line one keeps every rung, so it starts at once then, from that picture's keyframe (the held
    second is not encoded: no backlog to catch up on), with every rung."""
    small, tall = growing_source(1.0, 3.0)
    listener = RecordingListener()
    packager = KINDS[kind](tmp_path, dataclasses.replace(OPTIONS, ladder_settle_seconds=5.0), listener)
    made.append(packager)
    await packager.start()
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await feed_realtime(packager, small)
    assert pid_of(packager) is None  # held: the first picture may not be the tallest
    pids: list[int] = []

    def started(tag: Tag) -> None:
        if not pids and (pid := pid_of(packager)) is not None:
            pids.append(pid)
    await feed_realtime(packager, tall, on_progress=started)
    assert pids and sorted(scalers(pids[0])) == ["120", "240"]
    await packager.finish()

    assert packager.options.rendition_names == ("240p", "120p", "audio") and packager.restarts == 0
    assert master_uris(tmp_path) == ["240p/live.m3u8", "120p/live.m3u8", "audio/live.m3u8"]
    assert listener.failures == []
    if isinstance(packager, Packager):  # MPEG-TS segments decode alone: every frame from the 240-line keyframe
        frames = sum(decode_frames(tmp_path / "240p" / s.uri) for s in read_playlist(tmp_path / "240p" / "dvr.m3u8"))
        assert frames == video_frames(tall)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
async def test_a_restart_keeps_the_rungs_chosen_at_the_first_start(
        tmp_path: Path, made: list[Packager | LlPackager], kind: str) -> None:
    """An RTMP-like publisher (no hold) starts 120 lines tall, then sends 240-line pictures: ffmpeg, killed
    then, comes back with the rungs of its first start (120p + audio), not the whole ladder, and the
    master never changes (viewers' players hold it)."""
    small, tall = growing_source(2.0, 3.0)
    listener = RecordingListener()
    packager = KINDS[kind](tmp_path, OPTIONS, listener)
    made.append(packager)
    await packager.start()
    await packager.begin_session()
    packager.on_metadata(METADATA)
    await feed_realtime(packager, small)
    first = pid_of(packager)
    assert first is not None and scalers(first) == ["120"]
    master = (tmp_path / "master.m3u8").read_text()
    killed: list[int] = []

    def kill_once_taller(tag: Tag) -> None:
        if not killed and tag.timestamp_ms >= 3000:
            assert first is not None
            killed.append(first)
            os.kill(first, signal.SIGKILL)
    await feed_realtime(packager, tall, on_progress=kill_once_taller)
    for _ in range(50):
        again = pid_of(packager)
        if again not in (None, first):
            break
        await asyncio.sleep(0.1)
    assert again not in (None, first) and scalers(again) == ["120"]
    await packager.finish()

    assert packager.restarts == 1 and listener.failures == []
    assert packager.options.rendition_names == ("120p", "audio")
    assert master_uris(tmp_path) == ["120p/live.m3u8", "audio/live.m3u8"]
    assert [line for line in (tmp_path / "master.m3u8").read_text().splitlines() if line.endswith(".m3u8")] == \
        [line for line in master.splitlines() if line.endswith(".m3u8")]


@pytest.mark.slow
async def test_the_transcoder_starts_at_the_first_frame_not_at_an_audio_header(tmp_path: Path) -> None:
    """A WHIP session sends its AAC configuration at its first audio frame, before the first video keyframe
    and its header: ffmpeg must not start (and choose the rungs, the picture's height unknown) on it."""
    small, _ = growing_source(1.0, 0.5)
    transcoder = Transcoder(ffmpeg_exe(), OPTIONS, tmp_path, on_tag=lambda *tag: None)
    transcoder.begin()
    try:
        header = next(t for t in small if t.kind == "audio" and t.payload[1] == 0)
        transcoder.on_media("audio", 0, header.payload)
        await asyncio.sleep(0.3)
        assert transcoder.pid is None and not transcoder.ladder_chosen
        for tag in small:
            transcoder.on_media(tag.kind, tag.timestamp_ms, tag.payload)
        for _ in range(50):
            if transcoder.pid is not None:
                break
            await asyncio.sleep(0.1)
        assert transcoder.pid is not None and transcoder.options.rendition_names == ("120p", "audio")
    finally:
        await transcoder.close()


@pytest.mark.slow
async def test_a_run_recovered_after_a_server_restart_keeps_its_rungs(
        tmp_path: Path, made: list[Packager | LlPackager]) -> None:
    """A server stopped mid-run (no end of run written) and started again makes a new packager on the run's
    folder: it keeps the rungs the recovered playlists have (120p + audio) before any media, and a publisher
    coming back taller (240 lines, which alone would keep every rung) gets those, with the same master."""
    small, tall = growing_source(2.0, 2.0)
    listener = RecordingListener()
    before = KINDS["plain"](tmp_path, OPTIONS, listener)
    made.append(before)
    await before.start()
    await before.begin_session()
    before.on_metadata(METADATA)
    await feed_realtime(before, small)
    await before.end_session()  # lets ffmpeg close its last segment: the playlists list segments
    await before.close()
    assert before.options.rendition_names == ("120p", "audio")
    master = master_uris(tmp_path)
    assert master == ["120p/live.m3u8", "audio/live.m3u8"]

    after = KINDS["plain"](tmp_path, OPTIONS, listener)
    made.append(after)
    await after.start()
    assert after.options.rendition_names == ("120p", "audio") and master_uris(tmp_path) == master
    await after.begin_session()
    after.on_metadata(METADATA)
    pids: list[int] = []

    def started(tag: Tag) -> None:
        if not pids and (pid := pid_of(after)) is not None:
            pids.append(pid)
    await feed_realtime(after, tall, on_progress=started)
    assert pids and scalers(pids[0]) == ["120"]
    await after.finish()
    assert after.options.rendition_names == ("120p", "audio") and master_uris(tmp_path) == master
    assert listener.failures == []
