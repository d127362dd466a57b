"""The LL-HLS rendition state fed FLV tags from a real encoder: files, segments and playlists, no I/O."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from formats.m3u8 import Reload, decide_reload
from formats.m3u8 import render_ll as render
from ingest.packaging.ll_stream import HOLD_MS, LlRendition, LlUnsupported, LlUpdate, part_name, segment_name
from formats.flv import read_tags
from tests.media import FFMPEG

KINDS = {8: "audio", 9: "video"}


def flv_tags(data: bytes) -> Iterator[tuple[str, int, bytes]]:
    """(kind, timestamp ms, body) of the audio and video tags of an FLV file."""
    return ((KINDS[kind], stamp, body) for kind, stamp, body in read_tags(data) if kind in KINDS)


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """5 s of 30 fps H.264 (2 s GOP, B-frames) and AAC, as an encoder publishes it."""
    path = tmp_path_factory.mktemp("ll") / "in.flv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-f", "lavfi",
                    "-i", "sine=sample_rate=44100", "-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
                    "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-f", "flv", str(path)], check=True, timeout=60)
    return path.read_bytes()


def feed_all(stream: LlRendition, flv: bytes, wall: float = 1_000_000.0) -> list[LlUpdate]:
    return [stream.feed(kind, stamp, body, wall + stamp / 1000) for kind, stamp, body in flv_tags(flv)]


def rendition(**kwargs: object) -> LlRendition:
    return LlRendition(**{"part_target": 0.334, "segment_seconds": 2.0, "window_segments": 3, **kwargs})  # type: ignore[arg-type]


def test_tags_become_an_init_segment_parts_and_segments_made_of_them(flv: bytes) -> None:
    stream = rendition()
    stream.begin_session()
    updates = feed_all(stream, flv)
    files = [f for u in updates for f in u.files]
    assert files[0].name == "init_1.mp4" and files[0].data[4:8] == b"ftyp"
    parts = {f.name: f.data for f in files if f.name.startswith("part_")}
    segments = [s for u in updates for s in u.segments]
    assert [s.uri for s in segments] == [segment_name(0), segment_name(1)]  # the third is still in progress
    assert [s.sequence for s in segments] == [0, 1] and all(s.duration == pytest.approx(2.0) for s in segments)
    for number in (0, 1):
        data = next(f.data for f in files if f.name == segment_name(number))
        own = [parts[part_name(number, i)] for i in range(6)]
        assert data == b"".join(own) and part_name(number, 6) not in parts  # 2 s = 6 parts of 10 frames
    # Wall clock of each segment's first frame, from the arrival of the session's first tag.
    assert segments[1].program_date_time.timestamp() - segments[0].program_date_time.timestamp() == pytest.approx(2.0)

    playlist = stream.playlist(3)
    assert playlist is not None and playlist.media_sequence == 0 and playlist.pending_msn == 2
    assert len(playlist.pending_parts) == 2 and playlist.preload_hint == part_name(2, len(playlist.pending_parts))
    assert playlist.target_duration == 2 and playlist.map_uri == "init_1.mp4"
    text = render(playlist)
    assert "#EXT-X-PART:DURATION=0.33" in text and f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{playlist.preload_hint}"' in text
    assert text.count("#EXT-X-PROGRAM-DATE-TIME") == 3  # two segments and the one in progress


def test_no_playlist_before_the_first_segment_decides_the_target_duration(flv: bytes) -> None:
    stream = rendition()
    stream.begin_session()
    for kind, stamp, body in flv_tags(flv):
        update = stream.feed(kind, stamp, body, 0.0)
        if update.segments:
            break
        assert stream.playlist(3) is None
    assert stream.playlist(3) is not None


def test_blocking_reload_decisions_follow_the_parts(flv: bytes) -> None:
    """What a viewer asking for the next part gets: wait until the part that makes it exists."""
    stream = rendition()
    stream.begin_session()
    tags = list(flv_tags(flv))
    waiting: str | None = None
    for kind, stamp, body in tags:
        update = stream.feed(kind, stamp, body, 0.0)
        playlist = stream.playlist(3)
        if playlist is None or not update.changed:
            continue
        if waiting is not None:
            msn, part = waiting.split(".")
            assert decide_reload(playlist, msn, part).outcome is Reload.READY
            return
        nxt = len(playlist.pending_parts)
        assert decide_reload(playlist, str(playlist.pending_msn), str(nxt)).outcome is Reload.WAIT
        assert decide_reload(playlist, None, "0").outcome is Reload.BAD_REQUEST
        waiting = f"{playlist.pending_msn}.{nxt}"
    pytest.fail("no part after the first playlist")


def test_the_dvr_view_follows_every_part_as_the_live_view_does(flv: bytes) -> None:
    """A DVR viewer at the live edge is a low-latency viewer too: after each input that changed the
    playlists (the packager renders and publishes both views then, ll_packager.LlPackager._apply), the DVR
    view ends with the live view's parts and preload hint, and a blocking reload for the next part is
    decided the same on both, while the DVR view keeps every segment the live window dropped."""
    stream = rendition(window_segments=1)
    stream.begin_session()
    checked = 0
    for kind, stamp, body in flv_tags(flv):
        update = stream.feed(kind, stamp, body, 1_000_000.0 + stamp / 1000)
        live, dvr = stream.playlist(1), stream.playlist(None)
        if live is None or dvr is None or not update.changed:
            continue
        assert dvr.pending_parts == live.pending_parts and dvr.preload_hint == live.preload_hint
        assert dvr.segments[-1:] == live.segments[-1:] and len(dvr.segments) == len(stream.segments)
        assert dvr.pending_msn == live.pending_msn
        text_live, text_dvr = render(live), render(dvr)
        tail = text_live[text_live.index(f"{live.segments[-1].uri}\n"):]
        assert text_dvr.endswith(tail)  # the same last segment, parts in progress and hint, byte for byte
        following = str(len(live.pending_parts) + 1)
        for msn, part in ((str(live.pending_msn), str(len(live.pending_parts))), (str(live.pending_msn), following)):
            assert decide_reload(dvr, msn, part).outcome is decide_reload(live, msn, part).outcome
        checked += 1
    assert checked >= 6 and len(stream.segments) == 2  # every part after the first segment (2 s of 5)


def test_a_new_session_continues_numbers_after_a_discontinuity(flv: bytes) -> None:
    stream = rendition()
    stream.begin_session()
    feed_all(stream, flv)
    ended = stream.end_session()
    assert [s.sequence for s in ended.segments] == [2]  # the segment in progress completed
    stream.begin_session()
    assert stream.playlist(3).preload_hint is None  # type: ignore[union-attr]  # its first part opens a new session
    updates = feed_all(stream, flv, wall=2_000_000.0)
    assert updates[0].files == [] or updates[0].files[0].name != "init_1.mp4"
    assert any(f.name == "init_2.mp4" for u in updates for f in u.files)
    segments = stream.segments
    assert [s.sequence for s in segments] == [0, 1, 2, 3, 4]
    assert [s.discontinuity for s in segments] == [False, False, False, True, False]
    playlist = stream.playlist(3)
    assert playlist is not None and playlist.media_sequence == 2 and playlist.discontinuity_sequence == 0
    assert "#EXT-X-DISCONTINUITY" in render(playlist)
    # Each segment is read with its own session's init section, in the DVR view and for the recorder.
    assert [s.map_uri for s in segments] == ["init_1.mp4"] * 3 + ["init_2.mp4"] * 2
    dvr = render(stream.playlist(None))  # type: ignore[arg-type]
    assert dvr.count("#EXT-X-MAP:") == 2 and dvr.index('#EXT-X-MAP:URI="init_1.mp4"') < dvr.index("seg_000000.m4s")
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init_2.mp4"\n' in dvr
    assert render(playlist).count("#EXT-X-MAP:") == 2  # the live window still reaches into the first session
    final = stream.end()
    assert final.changed and stream.playlist(None) is not None and stream.playlist(None).ended  # type: ignore[union-attr]
    assert render(stream.playlist(3)).endswith("#EXT-X-ENDLIST\n")  # type: ignore[arg-type]


def test_parts_go_with_the_window_and_segments_without_dvr(flv: bytes) -> None:
    stream = rendition(window_segments=1, keep_history=False)
    stream.begin_session()
    removed = [name for u in feed_all(stream, flv) for name in u.removed]
    assert set(removed) == {part_name(0, i) for i in range(6)}  # segment 0 left the one-segment window
    removed = stream.end_session().removed  # segment 2 completes: 0 leaves twice the window
    assert segment_name(0) in removed and segment_name(1) not in removed
    assert [s.sequence for s in stream.segments] == [1, 2]


def test_the_dvr_view_is_an_event_playlist_until_the_disk_cuts_it(flv: bytes) -> None:
    """As the plain-HLS DVR: EXT-X-PLAYLIST-TYPE:EVENT promises segments are never removed; a low disk
    shrinking the DVR to the live window breaks that promise for the rest of the run."""
    stream = rendition(window_segments=1)
    stream.begin_session()
    feed_all(stream, flv)
    dvr, window = stream.playlist(None), stream.playlist(1)
    assert dvr is not None and window is not None
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in render(dvr) and "PLAYLIST-TYPE" not in render(window)
    assert stream.pause_history(True)  # segment 0 is deleted
    stream.pause_history(False)
    assert "PLAYLIST-TYPE" not in render(stream.playlist(None))  # type: ignore[arg-type]
    no_dvr = rendition(window_segments=1, keep_history=False)
    no_dvr.begin_session()
    feed_all(no_dvr, flv)
    assert "PLAYLIST-TYPE" not in render(no_dvr.playlist(None))  # type: ignore[arg-type]  # it drops segments


def _init_data(updates: list[LlUpdate]) -> bytes:
    return next(f.data for u in updates for f in u.files if f.name.startswith("init_"))


def test_a_late_audio_header_is_waited_for_and_the_video_before_it_kept(flv: bytes) -> None:
    """A WHIP publisher: its AAC (transcoded from Opus) starts 0.5 s after the first video frames."""
    tags = list(flv_tags(flv))
    header = next(t for t in tags if t[0] == "audio" and t[2][1] == 0)
    late = [t for t in tags if t is not header and not (t[0] == "audio" and t[1] < 500)]
    late.insert(next(i for i, t in enumerate(late) if t[1] >= 500), header)
    stream = rendition()
    stream.begin_session()
    updates = [stream.feed(kind, stamp, body, 1_000_000.0 + stamp / 1000) for kind, stamp, body in late]
    updates.append(stream.end_session())
    assert b"mp4a" in _init_data(updates) and b"avc1" in _init_data(updates)
    assert stream.dropped_tags == 0
    assert sum(s.duration for s in stream.segments) == pytest.approx(5.0, abs=0.1)  # the held video is all there


def test_a_stream_never_announced_is_not_waited_for_and_a_missing_one_only_so_long(flv: bytes) -> None:
    video_only = [t for t in flv_tags(flv) if t[0] == "video"]
    announced = rendition()
    announced.expect_streams(audio=False, video=True)
    announced.begin_session()
    first = announced.feed(*video_only[0], 1_000_000.0)
    first = announced.feed(*video_only[1], 1_000_000.0)
    assert any(f.name.startswith("init_") for f in first.files)  # the muxer started at the first frame
    audio_frame = next(t for t in flv_tags(flv) if t[0] == "audio" and t[2][1] == 1)
    dropped = announced.feed(*audio_frame, 1_000_000.0)  # no AAC track to carry it
    assert dropped.dropped == 1 == announced.dropped_tags  # the update says so (the packager counts drops by it)
    silent = rendition()  # no metadata: audio is expected, but not for ever
    silent.begin_session()
    updates = [silent.feed(kind, stamp, body, 1_000_000.0 + stamp / 1000) for kind, stamp, body in video_only]
    started = next(i for i, u in enumerate(updates) if any(f.name.startswith("init_") for f in u.files))
    assert video_only[started][1] >= HOLD_MS and b"mp4a" not in _init_data(updates)
    updates.append(silent.end_session())
    assert sum(s.duration for s in silent.segments) == pytest.approx(5.0, abs=0.1)


def test_other_codecs_are_refused() -> None:
    stream = rendition()
    stream.begin_session()
    with pytest.raises(LlUnsupported, match="H.264"):
        stream.feed("video", 0, bytes([0x12, 0x00, 0, 0, 0]), 0.0)  # Sorenson H.263 (ffmpeg's FLV default)
    with pytest.raises(LlUnsupported, match="AAC"):
        stream.feed("audio", 0, bytes([0x2F, 0x00]), 0.0)  # MP3


async def test_published_playlists_wake_every_waiter_once_per_version(flv: bytes) -> None:
    """The shell's shared playlists: one event per version, one render shared by all requests."""
    from ingest.packaging.ll_packager import LlPlaylists

    stream = rendition()
    stream.begin_session()
    feed_all(stream, flv)
    playlist = stream.playlist(3)
    assert playlist is not None
    shared = LlPlaylists()
    assert shared.current("live.m3u8") is None
    first = shared.changed()
    waiters = [asyncio.ensure_future(first.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    shared.publish({"live.m3u8": playlist}, {"live.m3u8": render(playlist)})
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert shared.changed() is not first and not shared.changed().is_set() and shared.version == 1
    assert shared.text("live.m3u8") is shared.text("live.m3u8") == render(playlist)
    assert shared.text("live.m3u8", skip=True) is shared.text("live.m3u8", skip=True)  # rendered once, on demand


class _Listener:
    def on_segment(self, rendition: str, segment: object) -> None:
        pass

    def on_packager_failed(self, reason: str) -> None:
        raise AssertionError(reason)


async def test_the_packager_publishes_the_dvr_view_with_every_part(flv: bytes, tmp_path: Path) -> None:
    """The shell around LlRendition: each published version carries a DVR view as new as the live one
    (rendered once per part), so blocking reloads of ``dvr.m3u8`` are answered at each part too; the files
    on disk are that same version once it is published (web-only nodes answer blocking reloads from them)."""
    from ingest.packaging.ll_packager import LlPackager
    from ingest.packaging.options import PackagerOptions

    packager = LlPackager(tmp_path, PackagerOptions(segment_seconds=2.0, live_window_seconds=6.0, dvr=True),
                          _Listener(), part_target=0.334)
    await packager.begin_session()
    playlists = packager.ll_playlists("source")
    assert playlists is not None
    published, parts_seen = 0, set()
    for kind, stamp, body in flv_tags(flv):
        version = playlists.version
        packager.on_media(kind, stamp, body)
        await packager.flush()
        await asyncio.sleep(0)  # the done callback that publishes
        if playlists.version == version:
            continue
        live, dvr = playlists.current("live.m3u8"), playlists.current("dvr.m3u8")
        assert live is not None and dvr is not None
        assert dvr.pending_parts == live.pending_parts and dvr.preload_hint == live.preload_hint
        live_text = playlists.text("live.m3u8")
        assert playlists.text("dvr.m3u8").endswith(live_text[live_text.rindex("#EXTINF:"):])
        assert (tmp_path / "source" / "live.m3u8").read_text() == live_text
        assert (tmp_path / "source" / "dvr.m3u8").read_text() == playlists.text("dvr.m3u8")
        parts_seen.add((live.pending_msn, len(live.pending_parts)))
        published += 1
    await packager.finish()
    assert published >= 6 and len(parts_seen) == published  # one version per part


async def test_without_web_peers_the_playlist_files_change_at_segments_only(flv: bytes, tmp_path: Path) -> None:
    """``playlist_files_every_part=False`` (a node that serves its own viewers, no web-only peers): viewers
    still get a version per part from memory, rendered only when asked for; the files on disk are written at
    each new segment (the version that lists it) and at the end, not three times a second."""
    from ingest.packaging.ll_packager import LlPackager
    from ingest.packaging.options import PackagerOptions

    packager = LlPackager(tmp_path, PackagerOptions(segment_seconds=2.0, live_window_seconds=6.0, dvr=True),
                          _Listener(), part_target=0.334, playlist_files_every_part=False)
    await packager.begin_session()
    playlists = packager.ll_playlists("source")
    assert playlists is not None
    live_file = tmp_path / "source" / "live.m3u8"
    published = writes = 0
    segments = 0
    last_file: str | None = None
    for kind, stamp, body in flv_tags(flv):
        version = playlists.version
        packager.on_media(kind, stamp, body)
        await packager.flush()
        await asyncio.sleep(0)
        if playlists.version == version:
            continue
        published += 1
        live = playlists.current("live.m3u8")
        assert live is not None and playlists.text("live.m3u8") == render(live)  # rendered on demand, the same
        on_disk = live_file.read_text() if live_file.exists() else None
        if len(live.segments) != segments:  # a new segment: the files are this version
            segments = len(live.segments)
            assert on_disk == playlists.text("live.m3u8")
            assert (tmp_path / "source" / "dvr.m3u8").read_text() == playlists.text("dvr.m3u8")
        else:
            assert on_disk == last_file  # a mere part: untouched
        writes += on_disk != last_file
        last_file = on_disk
    await packager.finish()
    assert published >= 6 and 1 <= writes == segments < published
    assert live_file.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert (tmp_path / "source" / "dvr.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
