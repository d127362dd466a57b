"""The recording folder module: the one owner of a recording's files, driven through its methods only.

A hand-written stand-in for object storage (a dict of files, with a switch that makes it fail) plays
the archived copy; everything else is real files in a temporary media folder.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from formats.m3u8 import Segment, VariantStream, parse_media_playlist, render_master
from live_server.layout import imported_recording, recording_folder
from recorder.storage import RecordingFiles, TrimError, listed_names, read_live_master, remux_groups, served_as_is
from tests.recorder.recordings import T0, DictCopy, record_fmp4


def recorded(media: Path, durations: list[float]) -> tuple[RecordingFiles, str]:
    """A finished recording of a live run (its segments linked from the run, journaled, finalized)."""
    run = recording_folder(media, 7, T0)
    media_path = run.relative_to(media).as_posix()
    files = RecordingFiles.of(media, media_path)
    assert files.live_run is not None
    files.live_run.mkdir(parents=True)
    (files.live_run / "master.m3u8").write_text(render_master(
        [VariantStream("source/live.m3u8", 900_000, codecs="avc1.42c00d,mp4a.40.2", resolution=(320, 240))]))
    files.create()
    wall = T0
    for i, duration in enumerate(durations):
        source = files.live_run / f"seg_{i:06d}.ts"
        source.write_bytes(b"\x47" * 188 * (i + 1))
        files.link(source)
        files.append(Segment(source.name, duration, i, program_date_time=wall), 2)
        wall += timedelta(seconds=duration)
    files.finalize_recovered(files.journal_segments())
    return files, media_path


def test_a_finished_recording_lists_what_players_get(tmp_path: Path) -> None:
    files, _ = recorded(tmp_path, [2.0, 2.0, 1.0])
    master = files.folder.joinpath("master.m3u8").read_text()
    assert 'CODECS="avc1.42c00d,mp4a.40.2"' in master and "RESOLUTION=320x240" in master  # from the live run
    view = files.view.read_bytes()
    assert listed_names(view) == {"seg_000000.ts", "seg_000001.ts", "seg_000002.ts"}
    assert listed_names(b"\xff") == frozenset() and listed_names(b"not a playlist") == frozenset()
    assert [served_as_is(n) for n in ("master.m3u8", "vod.m3u8", "thumbnail.jpg", "index.m3u8", "seg_000000.ts")] == [
        True, True, True, False, False]
    assert files.first_segment() == files.folder / "seg_000000.ts"
    assert read_live_master(tmp_path / "nowhere") is None


def test_trim_of_an_archived_recording_is_undone_here_when_the_store_refuses_it(tmp_path: Path) -> None:
    files, _ = recorded(tmp_path, [2.0, 2.0, 1.0])
    remote = DictCopy()
    assert files.upload(remote) == (len(remote.files), sum(len(d) for d in remote.files.values()))
    assert remote.batches[-1] == ["index.m3u8", "vod.m3u8", "master.m3u8"]  # playlists last
    assert not any(n.endswith(".m3u8") for n in remote.batches[0])
    files.drop_media()
    assert sorted(p.name for p in files.folder.iterdir()) == ["index.m3u8", "master.m3u8", "vod.m3u8"]

    remote.files["download.mp4"] = b"old mp4"
    assert files.trim(2.5, None, remote) == (2.0, 3.0)  # whole segments: from the second one on
    assert [s.uri for s in parse_media_playlist(remote.files["vod.m3u8"].decode()).playlist.segments] == [
        "seg_000001.ts", "seg_000002.ts"]
    assert "download.mp4" not in remote.files  # the download follows the view

    before = files.view.read_text()
    remote.failing = True
    with pytest.raises(OSError, match="^the store is away$"):
        files.trim(0.0, None, remote)
    assert files.view.read_text() == before  # the cached copy keeps the trim the row keeps
    with pytest.raises(TrimError, match="^the trim leaves nothing to play$"):
        files.trim(10.0, None, remote)


def test_an_archived_recording_comes_back_on_a_host_without_its_playlists(tmp_path: Path) -> None:
    files, media_path = recorded(tmp_path, [2.0, 1.0])
    remote = DictCopy()
    files.upload(remote)
    files.delete()
    again = RecordingFiles.of(tmp_path, media_path)
    assert [s.uri for s in again.remote_journal(remote)] == ["seg_000000.ts", "seg_000001.ts"]
    assert not again.remote_download(remote) and again.remote_download_url(remote, "talk.mp4") is None
    segments, output = again.fetch_view(remote, tmp_path / "scratch")
    assert [p.read_bytes() for p in segments] == [remote.files["seg_000000.ts"], remote.files["seg_000001.ts"]]
    output.write_bytes(b"mp4")  # what the remux would write
    again.store_download(remote, tmp_path / "scratch")
    assert again.remote_download(remote)
    assert again.remote_download_url(remote, "talk.mp4") == "https://store/download.mp4?as=talk.mp4"


def test_delete_sets_aside_then_removes_the_folder_and_its_live_run(tmp_path: Path) -> None:
    files, media_path = recorded(tmp_path, [2.0])
    assert files.live_run is not None
    moved = files.set_aside()
    assert [p.name for p in moved] == [f".deleted-{files.folder.name}", f".deleted-{files.live_run.name}"]
    assert not files.folder.exists() and not files.live_run.exists()
    RecordingFiles.put_back(moved)  # the transaction failed
    assert files.view.exists() and (files.live_run / "seg_000000.ts").exists()
    moved = files.set_aside()
    RecordingFiles.remove_aside(moved)
    assert not any(p.exists() for p in moved) and not (tmp_path / "recordings" / "7").exists()
    assert RecordingFiles.of(tmp_path, media_path).set_aside() == []  # nothing left to move


def test_an_import_becomes_a_recording(tmp_path: Path) -> None:
    files = RecordingFiles.of(tmp_path, imported_recording(3))
    files.create()
    pattern, playlist = files.import_outputs()
    assert pattern == tmp_path / "recordings/imported/3/seg_%06d.ts"
    with pytest.raises(FileNotFoundError):
        files.finish_import()
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-ENDLIST\n")
    with pytest.raises(ValueError, match="^ffmpeg produced no segment$"):
        files.finish_import()
    (files.folder / "seg_000000.ts").write_bytes(b"\x47" * 188)
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg_000000.ts\n#EXT-X-ENDLIST\n")
    summary = files.finish_import()
    assert (summary.segments, summary.duration_seconds, summary.size_bytes) == (1, 4.0, 188)
    assert not playlist.exists() and listed_names(files.view.read_bytes()) == {"seg_000000.ts"}


def recorded_fmp4(media: Path, sessions: list[list[float]]) -> tuple[RecordingFiles, str]:
    """A finished recording of an LL-HLS run: fMP4 segments, each session's init section linked once."""
    run = recording_folder(media, 8, T0)
    media_path = run.relative_to(media).as_posix()
    files = RecordingFiles.of(media, media_path)
    assert files.live_run is not None
    files.live_run.mkdir(parents=True)
    files.create()
    numbers = iter(range(sum(map(len, sessions))))
    record_fmp4(files, [(b"\0\0\0\x10ftypiso5" + bytes([session]) * 4,
                         [(b"\0\0\0\x08moof" * (next(numbers) + 1), duration) for duration in durations])
                        for session, durations in enumerate(sessions, start=1)])
    return files, media_path


def test_an_fmp4_recording_lists_its_init_sections_and_keeps_them_through_trim_and_archive(tmp_path: Path) -> None:
    files, media_path = recorded_fmp4(tmp_path, [[2.0, 2.0], [2.0, 1.0]])
    journal = files.folder.joinpath("index.m3u8").read_text()
    assert journal.startswith("#EXTM3U\n#EXT-X-VERSION:6\n") and '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init_2.mp4"' in journal
    view = files.view.read_bytes()
    assert listed_names(view) == {"init_1.mp4", "init_2.mp4", *(f"seg_{i:06d}.m4s" for i in range(4))}
    assert [files.init_of(s) for s in files.view_segments()] == [files.folder / "init_1.mp4"] * 2 + [
        files.folder / "init_2.mp4"] * 2
    # A segment whose init section is not on disk is not recoverable (it could not be played).
    files.folder.joinpath("init_2.mp4").rename(files.folder / ".aside")
    assert [s.uri for s in files.journal_segments()] == ["seg_000000.m4s", "seg_000001.m4s"]
    files.folder.joinpath(".aside").rename(files.folder / "init_2.mp4")
    # A trim into the second session: its view names init_2 only.
    assert files.trim(4.5, None) == (4.0, 3.0)
    assert listed_names(files.view.read_bytes()) == {"init_2.mp4", "seg_000002.m4s", "seg_000003.m4s"}
    # Archived, then remuxed on another host: the init sections are fetched with the segments.
    remote = DictCopy()
    files.upload(remote)
    assert "init_1.mp4" in remote.batches[0] and "init_2.mp4" in remote.batches[0]
    files.delete()
    again = RecordingFiles.of(tmp_path, media_path)
    inputs, _ = again.fetch_view(remote, tmp_path / "scratch")
    assert [p.name for p in inputs] == [".remux-0.m3u8"]
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == [
        ".remux-0.m3u8", "init_2.mp4", "seg_000002.m4s", "seg_000003.m4s"]
    assert (tmp_path / "scratch" / "init_2.mp4").read_bytes() == remote.files["init_2.mp4"]


def test_remux_groups_cut_where_the_timeline_restarts() -> None:
    def seg(n: int, disc: bool = False, init: str | None = "init_1.mp4") -> Segment:
        return Segment(f"seg_{n:06d}.m4s", 2.0, n, disc, map_uri=init)

    a, b, c, d, e = seg(0), seg(1), seg(2, disc=True), seg(3, init="init_2.mp4"), seg(4)
    assert remux_groups([a, b, c, d]) == [[a, b], [c], [d]]  # a gap, then a new init section
    assert remux_groups([a]) == [[a]] and remux_groups([]) == []
    assert remux_groups([d, e]) == [[d], [e]]  # init_2 then init_1 again: two pieces
