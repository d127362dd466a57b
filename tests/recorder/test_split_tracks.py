"""An fMP4 recording's tracks split apart for audio description, driven through ``RecordingFiles`` on real muxed
bytes (``formats.cmaf.CmafMuxer`` fed synthetic samples): the files, their views through trim, the master's
variant and audio group, what players may fetch, and removal. No ffmpeg here (the e2e test decodes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.cmaf import AacConfig, AvcConfig, CmafError, CmafMuxer, single_track_fragment, track_starts
from formats.m3u8 import AudioRendition, Segment, VariantStream, parse_master, parse_media_playlist, render_master
from live_server.layout import recording_folder
from recorder.storage import (
    AUDIO_VIEW, VIDEO_VIEW, RecordingFiles, listed_names, listing_playlist, served_as_is, split_name, split_view,
    with_variant_uri,
)
from tests.recorder.recordings import T0, record_fmp4
from vod.audio_descriptions import renditions

VIDEO = AvcConfig(b"\x01\x64\x00\x1f\xff\xe0\x00", 320, 240, 0x64, 0, 0x1F)
AUDIO = AacConfig(b"\x12\x10", 2, 44100, 2)


def muxed(seconds: float, audio: bool = True) -> tuple[bytes, list[tuple[bytes, float]]]:
    """An init section and (segment bytes, duration) of a run: 10 fps video with a keyframe each second,
    AAC frames every 1024 samples, cut into 2 s segments by the live muxer."""
    muxer = CmafMuxer(VIDEO, AUDIO if audio else None, segment_target=2.0)
    events = [(i * 100, 0, i) for i in range(int(seconds * 10))]
    if audio:
        events += [(i * 1024 * 1000 // 44100, 1, i) for i in range(int(seconds * 44100 / 1024))]
    parts = []
    for t, kind, i in sorted(events):
        parts += muxer.add_video(bytes([i % 256]) * 50, t, 0, keyframe=i % 10 == 0) if kind == 0 else \
            muxer.add_audio(bytes([i % 256]) * 20, t)
    parts += muxer.flush()
    segments: dict[int, list[bytes]] = {}
    durations: dict[int, float] = {}
    for part in parts:
        segments.setdefault(part.msn, []).append(part.data)
        durations[part.msn] = durations.get(part.msn, 0.0) + part.duration
    return muxer.init_segment(), [(b"".join(segments[m]), round(durations[m], 3)) for m in sorted(segments)]


def recorded(media: Path, sessions: list[tuple[bytes, list[tuple[bytes, float]]]]) -> RecordingFiles:
    """A finished fMP4 recording of these publish sessions (one init section each)."""
    files = RecordingFiles.of(media, recording_folder(media, 9, T0).relative_to(media).as_posix())
    assert files.live_run is not None
    files.live_run.mkdir(parents=True)
    (files.live_run / "master.m3u8").write_text(render_master(
        [VariantStream("source/live.m3u8", 900_000, codecs="avc1.64001f,mp4a.40.2", resolution=(320, 240))]))
    files.create()
    record_fmp4(files, sessions)
    return files


def _segments(path: Path) -> list[Segment]:
    return parse_media_playlist(path.read_text()).playlist.segments


def test_split_tracks_hold_each_segments_samples_one_track_each_and_follow_the_view(tmp_path: Path) -> None:
    first, second = muxed(6.0), muxed(4.0)
    files = recorded(tmp_path, [first, second])
    view = files.view_segments()
    assert len(view) == 5 and not files.has_split_tracks and files.programme_audio_playlist() is None

    assert files.split_tracks() is True
    assert files.has_split_tracks and files.programme_audio_playlist() == AUDIO_VIEW
    for kind, handler, playlist in (("video", b"vide", VIDEO_VIEW), ("audio", b"soun", AUDIO_VIEW)):
        listed = _segments(files.folder / playlist)
        # Segment for segment the view: same durations, discontinuity and init section changes.
        assert [(s.duration, s.discontinuity) for s in listed] == [(s.duration, s.discontinuity) for s in view]
        assert [s.uri for s in listed] == [f"{kind}-{s.uri}" for s in view]
        assert [s.map_uri for s in listed] == [f"{kind}-{s.map_uri}" for s in view]
        for original, split in zip(view, listed):
            init = (files.folder / original.map_uri).read_bytes()  # type: ignore[operator]
            data = files.path_of(original).read_bytes()
            split_init = (files.folder / split.map_uri).read_bytes()  # type: ignore[operator]
            made = (files.folder / split.uri).read_bytes()
            assert made == single_track_fragment(init, data, handler)
            # One track, where the muxed segment had it on the same clock.
            assert track_starts(split_init, made) == {handler: track_starts(init, data)[handler]}
        assert listed_names((files.folder / playlist).read_bytes()) == {s.uri for s in listed} | {
            f"{kind}-init_1.mp4", f"{kind}-init_2.mp4"}

    # Made once: a second call keeps the files as they are.
    stamp = (files.folder / "video-seg_000000.m4s").stat().st_mtime_ns
    assert files.split_tracks() is True
    assert (files.folder / "video-seg_000000.m4s").stat().st_mtime_ns == stamp

    # A trim into the second session: both split views follow it, naming only the second init section.
    assert files.trim(6.5, None) == (6.0, 4.0)
    for kind, playlist in (("video", VIDEO_VIEW), ("audio", AUDIO_VIEW)):
        assert listed_names((files.folder / playlist).read_bytes()) == {
            f"{kind}-init_2.mp4", f"{kind}-seg_000003.m4s", f"{kind}-seg_000004.m4s"}
    assert files.trim(0.0, None) == (0.0, 10.0)
    assert len(_segments(files.folder / VIDEO_VIEW)) == 5

    # The master: the video-only variant with the programme as the default audio rendition; back to the muxed
    # view when the group goes.
    files.set_audio_renditions(renditions(["en"], files.programme_audio_playlist()))
    master = (files.folder / "master.m3u8").read_text()
    assert [v.uri for v in parse_master(master)] == [VIDEO_VIEW]
    assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Original audio",DEFAULT=YES,AUTOSELECT=YES,URI="audio.m3u8"' in master
    assert 'URI="ad-en.m3u8"' in master and 'CODECS="avc1.64001f,mp4a.40.2"' in master
    files.set_audio_renditions([])
    master = (files.folder / "master.m3u8").read_text()
    assert [v.uri for v in parse_master(master)] == ["vod.m3u8"] and "TYPE=AUDIO" not in master

    # Removal takes the split files and views, nothing of the recording's own.
    own = sorted(p.name for p in files.folder.iterdir() if not p.name.startswith(("video", "audio")))
    files.remove_split_tracks()
    assert sorted(p.name for p in files.folder.iterdir()) == own and not files.has_split_tracks
    files.write_view()  # a trim without split tracks writes none
    assert not (files.folder / VIDEO_VIEW).exists()


def test_mpeg_ts_recordings_are_not_split_and_a_segment_without_sound_is_refused(tmp_path: Path) -> None:
    ts = RecordingFiles(tmp_path / "ts")
    ts.create()
    (ts.folder / "seg_000000.ts").write_bytes(b"\x47" * 188)
    ts.append(Segment("seg_000000.ts", 2.0, 0, program_date_time=T0), 2)
    assert ts.split_tracks() is False and sorted(p.name for p in ts.folder.iterdir()) == ["index.m3u8", "seg_000000.ts"]

    silent = recorded(tmp_path / "silent", [muxed(4.0, audio=False)])
    with pytest.raises(CmafError, match="the recording has no audio in its publish session init_1.mp4"):
        silent.split_tracks()
    assert not silent.has_split_tracks  # no view names a half-made split (the failed job removes its files)
    silent.remove_split_tracks()
    assert not [p for p in silent.folder.iterdir() if p.name.startswith(("video", "audio"))]


def test_players_may_fetch_split_files_only_through_the_view_that_lists_them() -> None:
    assert served_as_is(VIDEO_VIEW) and served_as_is(AUDIO_VIEW) and served_as_is("ad-en.m3u8")
    assert not served_as_is("video-seg_000001.m4s") and not served_as_is("index.m3u8")
    assert listing_playlist("video-seg_000001.m4s") == VIDEO_VIEW and listing_playlist("video-init_1.mp4") == VIDEO_VIEW
    assert listing_playlist("audio-seg_000001.m4s") == AUDIO_VIEW and listing_playlist("audio-init_2.mp4") == AUDIO_VIEW
    assert listing_playlist("ad-fr_12_seg_000001.m4s") == "ad-fr.m3u8" and listing_playlist("ad-fr_12_init_1.mp4") == "ad-fr.m3u8"
    assert listing_playlist("ad-fr_12_seg_000001.ts") == "ad-fr.m3u8"
    # Anything else must be listed in the view itself (where a split name never is).
    for name in ("video-.m4s", "videos-seg_1.m4s", "video-seg_1.ts", "audio-x.m3u8", "seg_000001.m4s", "init_1.mp4"):
        assert listing_playlist(name) == "vod.m3u8", name
    with pytest.raises(ValueError):
        split_name("subtitles", "seg_000001.m4s")


def test_split_view_and_variant_uri_are_pure_rewrites() -> None:
    view = [Segment("seg_000004.m4s", 2.0, 4, map_uri="init_1.mp4", program_date_time=T0),
            Segment("seg_000005.m4s", 1.5, 5, discontinuity=True, map_uri="init_2.mp4")]
    assert split_view(view, "audio") == [
        Segment("audio-seg_000004.m4s", 2.0, 4, map_uri="audio-init_1.mp4", program_date_time=T0),
        Segment("audio-seg_000005.m4s", 1.5, 5, discontinuity=True, map_uri="audio-init_2.mp4")]
    with pytest.raises(ValueError, match="fMP4"):
        split_view([Segment("seg_000000.ts", 2.0, 0)], "video")
    master = render_master([VariantStream("vod.m3u8", 900_000, codecs="avc1.64001f,mp4a.40.2")])
    assert with_variant_uri(master, VIDEO_VIEW) == master.replace("\nvod.m3u8\n", "\nvideo.m3u8\n")
    assert with_variant_uri(with_variant_uri(master, VIDEO_VIEW), "vod.m3u8") == master
    other = render_master([VariantStream("elsewhere/index.m3u8", 1)])
    assert with_variant_uri(other, VIDEO_VIEW) == other  # only our own names are rewritten


def test_an_fmp4_description_installs_with_its_init_sections_and_follows_the_view(tmp_path: Path) -> None:
    files = recorded(tmp_path, [muxed(4.0), muxed(2.0)])
    view = files.view_segments()
    work = files.audio_description_work("en")
    produced, inits = [], []
    for segment in view:
        produced.append((work / f"made-{segment.sequence}.m4s", segment))
        produced[-1][0].write_bytes(b"fragment %d" % segment.sequence)
    for name in ("init_1.mp4", "init_2.mp4"):
        inits.append((work / f"made-{name}", name))
        inits[-1][0].write_bytes(name.encode())
    files.install_audio_description("en", 7, produced, inits)
    listed = _segments(files.folder / "ad-en.m3u8")
    assert [(s.uri, s.map_uri, s.duration) for s in listed] == [
        (f"ad-en_7_{s.uri}", f"ad-en_7_{s.map_uri}", s.duration) for s in view]
    assert (files.folder / "ad-en_7_init_2.mp4").read_bytes() == b"init_2.mp4"
    assert files.audio_description_languages() == ["en"]
    groups = files.audio_description_groups()
    assert [[s.uri for _, s in group] for group in groups] == [[s.uri for s in view[:2]], [view[2].uri]]
    files.trim(4.5, None)
    assert listed_names((files.folder / "ad-en.m3u8").read_bytes()) == {"ad-en_7_init_2.mp4", f"ad-en_7_{view[2].uri}"}
    files.remove_audio_description("en")
    assert not [p for p in files.folder.iterdir() if p.name.startswith("ad-")]


def test_renditions_name_the_programmes_own_playlist_when_it_has_one() -> None:
    assert renditions([], AUDIO_VIEW) == []
    assert renditions(["fr"], AUDIO_VIEW)[0] == AudioRendition("Original audio", uri=AUDIO_VIEW, default=True)
    assert renditions(["fr"])[0].uri is None


def test_an_archived_recordings_split_tracks_and_descriptions_follow_a_trim_in_its_objects(tmp_path: Path) -> None:
    from tests.recorder.recordings import DictCopy

    files = recorded(tmp_path, [muxed(6.0)])
    view = files.view_segments()
    work = files.audio_description_work("en")
    produced = [(work / f"{s.sequence}.m4s", s) for s in view]
    for made, _ in produced:
        made.write_bytes(b"audio")
    (work / "init.mp4").write_bytes(b"init")
    files.install_audio_description("en", 3, produced, [(work / "init.mp4", "init_1.mp4")])
    files.split_tracks()
    files.set_audio_renditions(renditions(["en"], files.programme_audio_playlist()))
    remote = DictCopy()
    files.upload(remote)
    files.drop_media()
    assert not (files.folder / VIDEO_VIEW).exists() and "video.m3u8" in remote.files  # served from the objects

    files.trim(2.5, None, remote)
    kept = [s.uri for s in files.view_segments()]
    assert len(kept) == len(view) - 1
    for name, names in ((VIDEO_VIEW, [f"video-{u}" for u in kept]), (AUDIO_VIEW, [f"audio-{u}" for u in kept]),
                        ("ad-en.m3u8", [f"ad-en_3_{u}" for u in kept])):
        listed = parse_media_playlist(remote.files[name].decode()).playlist.segments
        assert [s.uri for s in listed] == names, name
        assert [s.duration for s in listed] == [s.duration for s in files.view_segments()]
