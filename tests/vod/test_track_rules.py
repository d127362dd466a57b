"""The rules of text tracks, pure: language tags, what an upload becomes, which rendition is DEFAULT,
AUTOSELECT or FORCED and what each is called, and how a subtitle segment is tied to the video's clock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from formats import webvtt
from formats.m3u8 import Segment, parse_master, parse_media_tags, render_master, VariantStream
from formats.webvtt import SubtitleFileError
from vod import tracks as tr
from formats.mpegts import first_pts
from tests.media import FFMPEG
from vod.subtitles import RunStarts, segment_vtt, subtitle_playlist, windows, with_subtitles


@pytest.mark.parametrize(("raw", "tag"), [
    ("fr", "fr"), ("EN", "en"), ("pt_br", "pt-BR"), ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419"),
    (" de-CH-1996 ", "de-CH-1996"), ("sr-Latn", "sr-Latn"),
])
def test_language_tags_are_normalised(raw: str, tag: str) -> None:
    assert tr.language_tag(raw) == tag


@pytest.mark.parametrize("raw", ["", "f", "français", "fr-", "fr--FR", "x-private", "en-US-u-ca-gregory", "fr;drop", "12"])
def test_other_language_tags_are_refused(raw: str) -> None:
    with pytest.raises(tr.TrackError) as caught:
        tr.language_tag(raw)
    assert caught.value.field == "language"


def test_kinds_and_labels() -> None:
    assert tr.kind_of("") == "subtitles" and tr.kind_of("Captions") == "captions"
    with pytest.raises(tr.TrackError):
        tr.kind_of("chapters")
    assert tr.label_of("  Français   (Québec) ") == "Français (Québec)"
    for bad in ('say "hi"', "x" * 101):
        with pytest.raises(tr.TrackError):
            tr.label_of(bad)


def test_an_upload_is_read_by_its_signature_and_refused_whole() -> None:
    assert tr.read_subtitles("cours.txt", b"WEBVTT\n\n00:01.000 --> 00:02.000\nun\n")[0].text == "un"
    assert tr.read_subtitles("cours.srt", "1\n00:00:01,000 --> 00:00:02,000\né\n".encode())[0].text == "é"
    for data, line, code in [("1\n00:00:01,000 --> 00:00:02,000\nun\n\n2\n".encode() + b"\xe9t\xe9", 6, "not_utf8"),
                             (b"WEBVTT\n\nNOTE nothing\n", 1, "no_cues"), (b"1\n00:00:01,000 --> 00:00:02,000\na\x00b\n", 3, "nul")]:
        with pytest.raises(SubtitleFileError) as caught:
            tr.read_subtitles("x.srt", data)
        assert [(p.line, p.code) for p in caught.value.problems] == [(line, code)]


def facts(*specs: tuple[int, str, str, bool]) -> list[tr.TrackFacts]:
    return [tr.TrackFacts(i, language, kind, "", automatic) for i, language, kind, automatic in specs]


def names(code: str) -> str:
    return {"fr": "Français", "en": "English"}.get(code, code)


def test_at_most_one_default_the_automatic_captions_first() -> None:
    plan = tr.renditions(facts((5, "fr", "subtitles", False), (3, "en", "captions", False), (9, "en", "captions", True),
                               (7, "en", "descriptions", False)), names)
    assert [(r.track_id, r.name, r.default, r.autoselect) for r in plan] == [
        (9, "English", True, True), (3, "English (2)", False, True), (5, "Français", False, True),
        (7, "English (AD)", False, False)]
    assert [r.characteristics for r in plan][:1] == [tr.CHARACTERISTICS["captions"]]
    assert plan[2].characteristics is None and plan[3].characteristics == "public.accessibility.describes-video"


def test_no_default_without_captions_and_forced_only_on_subtitles() -> None:
    plan = tr.renditions([tr.TrackFacts(1, "fr", "subtitles", "", False, forced=True),
                          tr.TrackFacts(2, "de", "descriptions", "Beschreibung", False, forced=True)], names)
    assert [(r.name, r.default, r.forced, r.autoselect) for r in plan] == [
        ("Français", False, True, True), ("Beschreibung", False, False, False)]
    assert tr.renditions([tr.TrackFacts(1, "fr", "captions", "", False, forced=True)], names)[0].default is False


def test_the_master_gets_one_rendition_per_track_and_the_variant_their_group() -> None:
    master = render_master([VariantStream("vod.m3u8", 800_000, codecs="avc1.64001f,mp4a.40.2", resolution=(640, 360))])
    plan = tr.renditions(facts((1, "en", "captions", True), (2, "fr", "subtitles", False)), names)
    out = with_subtitles(master, plan)
    assert [(m["NAME"], m["DEFAULT"], m["URI"]) for m in parse_media_tags(out)] == [
        ("English", "YES", "subtitles/1/index.m3u8"), ("Français", "NO", "subtitles/2/index.m3u8")]
    assert parse_master(out) == parse_master(master)
    assert 'SUBTITLES="subs"' in out
    assert with_subtitles(master, []) == master


def test_subtitle_segments_follow_the_view_and_its_runs() -> None:
    view = [Segment("seg_000010.ts", 2.0, 10), Segment("seg_000011.ts", 2.0, 11),
            Segment("seg_000020.ts", 1.5, 20, discontinuity=True), Segment("seg_000021.ts", 2.0, 21)]
    playlist = subtitle_playlist(view)
    assert "#EXT-X-DISCONTINUITY\n#EXTINF:1.500,\n2.vtt" in playlist and "seg_" not in playlist
    spans = windows(view)
    assert [(w.start, w.end, w.run_first, w.run_start) for w in spans] == [
        (0.0, 2.0, 0, 0.0), (2.0, 4.0, 0, 0.0), (4.0, 5.5, 2, 4.0), (5.5, 7.5, 2, 4.0)]
    cues = [webvtt.Cue(1.5, 2.5, "à cheval"), webvtt.Cue(4.5, 5.0, "après la coupure")]
    tsmap, shown = webvtt.parse(segment_vtt(cues, spans[1], run_pts=900_000))
    assert [(c.identifier, c.text) for c in shown] == [("cue-1", "à cheval")]  # in segments 0 and 1, one id
    assert tsmap == webvtt.TimestampMap(900_000 + 3 * 90_000, 3.0)  # LOCAL = start + 1 s, on the run's clock
    tsmap, shown = webvtt.parse(segment_vtt(cues, spans[3], run_pts=(1 << 33) - 90_000))
    assert shown == [] and tsmap == webvtt.TimestampMap((2.5 * 90_000 - 90_000), 6.5)  # wraps like PTS
    assert webvtt.parse(segment_vtt(cues, spans[2], run_pts=None))[0] is None


async def test_a_runs_first_pts_is_read_once_per_recording_and_view(tmp_path: Path) -> None:
    """Players fetch a track's WebVTT segments one after the other: the run's first video segment is read
    once, and again only when the recording's view changed (a trim, an import, a move to object storage)."""
    segment = tmp_path / "seg_000000.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1",
                    "-output_ts_offset", "7", "-c:v", "libx264", "-f", "mpegts", str(segment)], check=True)
    reads: list[str] = []

    async def read(name: str) -> bytes | None:
        reads.append(name)
        return (tmp_path / name).read_bytes() if (tmp_path / name).exists() else None

    expected = first_pts(segment.read_bytes())
    assert expected is not None
    starts = RunStarts()
    view = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg_000000.ts\n#EXT-X-ENDLIST\n"
    first = Segment(uri="seg_000000.ts", duration=1.0, sequence=0)
    assert [await starts.pts(1, view, first, read) for _ in range(3)] == [expected] * 3
    assert reads == ["seg_000000.ts"]
    assert await starts.pts(2, view, first, read) == expected  # another recording: its own entry
    assert reads == ["seg_000000.ts"] * 2
    assert await starts.pts(1, view.replace(b"1.0", b"0.9"), first, read) == expected  # its view changed
    assert reads == ["seg_000000.ts"] * 3
    missing = Segment(uri="seg_000001.ts", duration=1.0, sequence=1)
    assert [await starts.pts(1, view, missing, read) for _ in range(2)] == [None, None]  # unreadable: None, once
    assert reads[3:] == ["seg_000001.ts"]
