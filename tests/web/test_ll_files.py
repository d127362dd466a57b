"""LL-HLS playlists read from the media folder (``web.ll_files``), as a web-only node does: files replaced
the way the packager replaces them (``live_server.files.write_atomic``), real asyncio waits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from formats.m3u8 import LlPart, LlPlaylist, LlSegment, Reload, decide_reload, render_ll
from live_server.files import write_atomic
from web.ll_files import LlFileStreams

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)
PART = 0.334


def _playlist(parts_done: int) -> LlPlaylist:
    """Segments of six parts from msn 0; ``parts_done`` parts made so far (the last ones pending)."""
    segments = tuple(LlSegment(f"seg_{m:06d}.m4s", 6 * PART, tuple(LlPart(f"part_{m:06d}_{i}.m4s", PART, i == 0)
                                                                   for i in range(6)), T0)
                     for m in range(parts_done // 6))
    msn, index = divmod(parts_done, 6)
    return LlPlaylist(target_duration=2, part_target=PART, map_uri="init_1.mp4", segments=segments[-4:],
                      media_sequence=max(0, len(segments) - 4),
                      pending_parts=tuple(LlPart(f"part_{msn:06d}_{i}.m4s", PART, i == 0) for i in range(index)),
                      preload_hint=f"part_{msn:06d}_{index}.m4s", pending_program_date_time=T0)


def _publish(folder: Path, parts_done: int) -> LlPlaylist:
    playlist = _playlist(parts_done)
    write_atomic(folder / "live.m3u8", render_ll(playlist))
    write_atomic(folder / "dvr.m3u8", render_ll(replace(playlist, playlist_type="EVENT")))
    return playlist


async def test_a_waiting_request_wakes_on_the_next_version_and_the_watcher_then_stops(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "source"
    folder.mkdir(parents=True)
    streams = LlFileStreams(poll_seconds=0.01)
    assert streams.ll_playlists(1, tmp_path / "run", "source") is None  # no playlist yet: nothing followed
    assert streams.followed == 0
    _publish(folder, 25)
    ll = streams.ll_playlists(1, tmp_path / "run", "source")
    assert ll is not None and streams.ll_playlists(1, tmp_path / "run", "source") is ll
    first = ll.current("live.m3u8")
    assert first is not None and first.preload_hint == "part_000004_1.m4s"
    assert ll.text("live.m3u8") == (folder / "live.m3u8").read_text()
    assert ll.current("live.m3u8") is first and ll.parses == 1  # unchanged file: neither read nor parsed again
    assert decide_reload(first, "4", "1").outcome is Reload.WAIT
    assert streams.watching == 0  # nobody waits: no watcher

    async def blocked() -> str:
        playlist = ll.current("live.m3u8")
        while playlist is not None and decide_reload(playlist, "4", "1").outcome is Reload.WAIT:
            await ll.changed().wait()
            playlist = ll.current("live.m3u8")
        return ll.text("live.m3u8")

    waiters = [asyncio.ensure_future(blocked()) for _ in range(20)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters) and streams.watching == 1  # one watcher for all twenty
    parses = ll.parses
    expected = _publish(folder, 26)
    answers = await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert set(answers) == {render_ll(expected)}
    assert ll.parses == parses + 1  # the new version parsed once for everyone
    await asyncio.sleep(0.05)
    assert streams.watching == 0  # nobody waits any more: the watcher stopped
    # The delta is rendered from the file as the packager renders it from memory.
    assert ll.current("dvr.m3u8") is not None
    assert ll.text("dvr.m3u8", skip=True) == render_ll(replace(expected, playlist_type="EVENT"), skip=True)
    await streams.close()


async def test_a_waiter_that_gives_up_stops_the_watcher_too(tmp_path: Path) -> None:
    folder = tmp_path / "source"
    folder.mkdir()
    _publish(folder, 3)
    streams = LlFileStreams(poll_seconds=0.01)
    ll = streams.ll_playlists(1, tmp_path, "source")
    assert ll is not None
    try:
        async with asyncio.timeout(0.05):
            await ll.changed().wait()
    except TimeoutError:
        pass
    await asyncio.sleep(0.03)
    assert streams.watching == 0


async def test_followed_renditions_are_bounded_and_busy_ones_are_kept(tmp_path: Path) -> None:
    """Requests for many events' renditions cannot grow a web node: idle ones are forgotten (least
    recently asked first); when every one followed has waiters, a new one is served from files only."""
    folders = []
    for n in range(4):
        folder = tmp_path / f"run{n}" / "source"
        folder.mkdir(parents=True)
        _publish(folder, 10 + n)
        folders.append(folder)
    streams = LlFileStreams(poll_seconds=0.01, max_renditions=2)
    a = streams.ll_playlists(1, folders[0].parent, "source")
    b = streams.ll_playlists(2, folders[1].parent, "source")
    assert a is not None and b is not None and a.current("live.m3u8") is not None
    waiting = asyncio.ensure_future(a.changed().wait())
    await asyncio.sleep(0.02)
    c = streams.ll_playlists(3, folders[2].parent, "source")  # b was idle: forgotten for c
    assert c is not None and streams.followed == 2
    assert streams.ll_playlists(1, folders[0].parent, "source") is a  # a has a waiter: kept
    waiting_c = asyncio.ensure_future(c.changed().wait())
    await asyncio.sleep(0.02)
    assert streams.ll_playlists(4, folders[3].parent, "source") is None and streams.refused == 1
    _publish(folders[0], 30)
    _publish(folders[2], 30)
    await asyncio.wait_for(asyncio.gather(waiting, waiting_c), 2)
    d = streams.ll_playlists(4, folders[3].parent, "source")
    assert d is not None and streams.followed == 2
    # A byte bound too: a rendition's texts and parse count against it.
    tight = LlFileStreams(max_bytes=1)
    e = tight.ll_playlists(1, folders[0].parent, "source")
    assert e is not None and e.current("live.m3u8") is not None and e.cost > 1
    assert tight.ll_playlists(2, folders[1].parent, "source") is not None and tight.followed == 1
    await streams.close()
    await tight.close()


async def test_a_plain_hls_playlist_is_not_followed_as_ll(tmp_path: Path) -> None:
    folder = tmp_path / "source"
    folder.mkdir()
    write_atomic(folder / "live.m3u8", "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nseg_0.ts\n")
    streams = LlFileStreams()
    ll = streams.ll_playlists(1, tmp_path, "source")
    assert ll is not None and ll.current("live.m3u8") is None and ll.current("dvr.m3u8") is None
    assert streams.ll_playlists(1, tmp_path, "../elsewhere") is None
    await streams.close()
