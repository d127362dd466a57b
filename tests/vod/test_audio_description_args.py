"""Audio description's pure core: golden command lines, speech placement, segment cuts, the length check, the
descriptions text with line-numbered errors, and the master playlist's audio group."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from formats.m3u8 import (
    DESCRIBES_VIDEO, AudioRendition, PlaylistParseError, SubtitleRendition, VariantStream, parse_master, render_master,
    carry_audio_group, with_audio_renditions,
)
from vod.audio_description import (
    DescriptionsError, Placement, adts_fragments, boundaries, duration_mismatch, espeak_voices, frame_counts, mix_args, package_args, parse_descriptions,
    place, speech_args, voice_for,
)
from vod.audio_descriptions import renditions

FOLDER = PurePosixPath("/srv/media/recordings/imported/7")
HEAD = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


def test_mix_args_duck_the_programme_under_the_voice_and_cut_at_the_video_segments() -> None:
    args = mix_args("ffmpeg", [Path(FOLDER / "seg_000000.ts"), Path(FOLDER / "seg_000001.ts")],
                    Path(FOLDER / ".ad-fr.work/speech.wav"), 0.977, 8.023, 1.576778, [2.023, 4.023, 6.023], 44100, 2,
                    Path(FOLDER / ".ad-fr.work/run0-%06d.ts"))
    assert args == [
        *HEAD, "-protocol_whitelist", "file,concat", "-f", "mpegts",
        "-i", "concat:/srv/media/recordings/imported/7/seg_000000.ts|/srv/media/recordings/imported/7/seg_000001.ts",
        "-ss", "0.977000", "-t", "8.023000", "-f", "wav", "-i", "/srv/media/recordings/imported/7/.ad-fr.work/speech.wav",
        "-filter_complex",
        "[0:a:0]aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=stereo,apad=whole_dur=8.023000[programme];"
        "[1:a:0]aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=stereo,asplit=2[key][voice];"
        "[programme][key]sidechaincompress=threshold=0.01:ratio=10:attack=10:release=400[ducked];"
        "[ducked][voice]amix=inputs=2:duration=first:normalize=0,atrim=duration=8.023000[out]",
        "-map", "[out]", "-c:a", "aac", "-b:a", "128k", "-output_ts_offset", "1.576778", "-muxdelay", "0",
        "-muxpreload", "0", "-f", "segment", "-segment_format", "mpegts", "-segment_times", "2.023000,4.023000,6.023000",
        "-segment_start_number", "0", "/srv/media/recordings/imported/7/.ad-fr.work/run0-%06d.ts",
    ]


def test_mix_args_for_fmp4_read_the_init_section_then_the_fragments_and_write_one_adts_stream() -> None:
    args = mix_args("ffmpeg", [Path(FOLDER / "init_1.mp4"), Path(FOLDER / "seg_000000.m4s"), Path(FOLDER / "seg_000001.m4s")],
                    Path(FOLDER / ".ad-fr.work/speech.wav"), 0.977, 4.023, 1.5, [2.023], 44100, 1,
                    Path(FOLDER / ".ad-fr.work/run0.aac"), fmp4=True)
    assert args == [
        *HEAD, "-protocol_whitelist", "file,concat", "-f", "mp4",
        "-i", "concat:/srv/media/recordings/imported/7/init_1.mp4|/srv/media/recordings/imported/7/seg_000000.m4s"
        "|/srv/media/recordings/imported/7/seg_000001.m4s",
        "-ss", "0.977000", "-t", "4.023000", "-f", "wav", "-i", "/srv/media/recordings/imported/7/.ad-fr.work/speech.wav",
        "-filter_complex",
        "[0:a:0]aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=mono,apad=whole_dur=4.023000[programme];"
        "[1:a:0]aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=mono,asplit=2[key][voice];"
        "[programme][key]sidechaincompress=threshold=0.01:ratio=10:attack=10:release=400[ducked];"
        "[ducked][voice]amix=inputs=2:duration=first:normalize=0,atrim=duration=4.023000[out]",
        "-map", "[out]", "-c:a", "aac", "-b:a", "128k", "-f", "adts", "/srv/media/recordings/imported/7/.ad-fr.work/run0.aac",
    ]


def test_aac_frames_go_in_the_segment_where_they_start() -> None:
    frame = 1024 / 44100
    # The priming frame starts a frame early and goes in the first segment; a frame starting on a cut, in the next.
    assert frame_counts(10, frame, -frame, [4 * frame, 6 * frame]) == [5, 2, 3]
    assert sum(frame_counts(200, frame, -frame, [2.0, 3.5])) == 200
    with pytest.raises(ValueError, match="empty"):
        frame_counts(3, frame, 0.0, [frame / 2, frame * 0.9])


def test_package_args_read_only_the_uploaded_file_with_its_demuxer_and_keep_the_programme_format() -> None:
    args = package_args("ffmpeg", Path("/srv/media/imports/ab.audio"), "mp3", 0.0, 4.5, 10.0, [], 48000, 1,
                        Path(FOLDER / ".ad-en.work/run1-%06d.ts"))
    assert args == [
        *HEAD, "-protocol_whitelist", "file",
        "-format_whitelist", "wav,mp3,ogg,flac,mov,matroska,aac,mpegts,asf,avi,w64,aiff",
        "-f", "mp3", "-ss", "0.000000", "-i", "/srv/media/imports/ab.audio",
        "-filter_complex",
        "[0:a:0]aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=mono,apad=whole_dur=4.500000,"
        "atrim=duration=4.500000[out]",
        "-map", "[out]", "-c:a", "aac", "-b:a", "128k", "-output_ts_offset", "10.000000", "-muxdelay", "0",
        "-muxpreload", "0", "-f", "segment", "-segment_format", "mpegts",  # one segment: no cut
        "-segment_start_number", "0", "/srv/media/recordings/imported/7/.ad-en.work/run1-%06d.ts",
    ]


def test_espeak_reads_the_text_on_stdin() -> None:
    assert speech_args("espeak-ng", "fr", Path("/tmp/w/cue-00001.wav")) == [
        "espeak-ng", "-v", "fr", "-s", "165", "-w", "/tmp/w/cue-00001.wav", "--stdin"]


def test_voices_by_language() -> None:
    listing = ("Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
               " 5  en-gb           --/M      English_(Great_Britain) gmw/en            (en 2)\n"
               " 5  fr-fr           --/M      French_(France)    roa/fr               (fr 5)\n")
    voices = espeak_voices(listing)
    assert voices == {"en-gb", "en", "fr-fr", "fr"}
    assert voice_for("fr", voices) == "fr" and voice_for("en-GB", voices) == "en-gb"
    assert voice_for("fr-ca", voices) == "fr" and voice_for("ko", voices) is None
    assert voice_for("-v", voices) is None and voice_for("fr;rm", voices) is None


def test_descriptions_are_placed_at_their_start_unless_the_previous_one_is_still_spoken() -> None:
    assert place([1.0, 5.0], [2.0, 1.0]) == [Placement(1.0, 2.0), Placement(5.0, 1.0)]
    assert place([1.0, 2.0, 2.5], [2.0, 1.0, 0.5]) == [Placement(1.0, 2.0), Placement(3.0, 1.0), Placement(4.0, 0.5)]


def test_segments_are_cut_at_the_video_boundaries() -> None:
    assert boundaries([2.0, 2.0, 2.0, 2.0], lead=0.023) == [2.023, 4.023, 6.023]
    assert boundaries([4.0]) == []


def test_an_uploaded_track_must_last_as_long_as_the_recording() -> None:
    assert duration_mismatch(61.9, 60.0) is None  # 2 s of tolerance
    assert duration_mismatch(3590.0, 3600.0) is None  # 2 % of an hour: 72 s
    assert duration_mismatch(57.5, 60.0) == ("the audio lasts 57.5 s and the recording 60.0 s: "
                                             "they may differ by 2.0 s at most")
    assert duration_mismatch(None, 60.0) == "the audio file does not say how long it is"


@pytest.mark.parametrize(("text", "error"), [
    ("", "line 1: a WebVTT file starts with WEBVTT"),
    ("WEBVTTX\n", "line 1: a WebVTT file starts with WEBVTT"),
    ("WEBVTT\n\nNOTE only a note\n", "line 4: the file has no cue"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\nintro\n00:00:0x.000 --> 00:00:04.000\nbroken\n",
     "line 7: bad timestamp '00:00:0x.000 '"),
    ("WEBVTT\n\n1\njust text\n", "line 4: a cue needs a timing line (00:00:01.000 --> 00:00:04.000)"),
    ("WEBVTT\n\n00:00:03.000 --> 00:00:02.000\nbackwards\n", "line 3: cue ends before it starts: '00:00:03.000 --> 00:00:02.000'"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n\n", "line 3: the cue has no text to speak"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:30.000 --> 00:00:32.000\ntoo late\n",
     "line 6: the cue starts at 30.000 s, after the end of the recording (20.000 s)"),
])
def test_descriptions_errors_name_their_line(text: str, error: str) -> None:
    with pytest.raises(DescriptionsError) as caught:
        parse_descriptions(text, recording_seconds=20.0)
    assert str(caught.value) == error


def test_descriptions_are_read_in_time_order_with_their_text() -> None:
    cues = parse_descriptions("\ufeffWEBVTT - described\r\n\r\nb\r\n00:00:05.000 --> 00:00:06.000\r\nThe board &amp; chalk.\r\n\r\n"
                              "a\r\n00:00:01.500 --> 00:00:03.000 align:start\r\nA red square\r\nappears.\r\n", 10.0)
    assert [(c.start, c.text) for c in cues] == [(1.5, "A red square\nappears."), (5.0, "The board & chalk.")]


MASTER = render_master([VariantStream("vod.m3u8", 900_000, codecs="avc1.64001e,mp4a.40.2", resolution=(320, 240))],
                       [SubtitleRendition("Français", "fr", "subs/fr.m3u8", default=True)])


def test_master_gets_the_original_audio_as_default_and_each_description_with_its_characteristics() -> None:
    described = with_audio_renditions(MASTER, renditions(["en", "fr"]))
    assert described == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Français",LANGUAGE="fr",DEFAULT=YES,AUTOSELECT=YES,URI="subs/fr.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Original audio",DEFAULT=YES,AUTOSELECT=YES\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English audio description",LANGUAGE="en",DEFAULT=NO,AUTOSELECT=YES,'
        'CHARACTERISTICS="public.accessibility.describes-video",URI="ad-en.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="French audio description",LANGUAGE="fr",DEFAULT=NO,AUTOSELECT=YES,'
        'CHARACTERISTICS="public.accessibility.describes-video",URI="ad-fr.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=320x240,SUBTITLES="subs",AUDIO="aud"\n'
        "vod.m3u8\n"
    )
    assert with_audio_renditions(described, renditions(["en", "fr"])) == described  # idempotent
    assert with_audio_renditions(described, []) == MASTER  # the last description removed: the master as it was
    assert [v.uri for v in parse_master(described)] == ["vod.m3u8"]


def test_a_master_rendered_again_with_subtitles_keeps_its_audio_group() -> None:
    """The replay serves the master with its text tracks added (``vod.subtitles``): a render from the
    variants alone would lose the descriptions, so the audio group is carried over as it was written."""
    described = with_audio_renditions(MASTER, renditions(["en"]))
    subtitles = [SubtitleRendition(name="Français", language="fr", uri="subtitles/2/index.m3u8")]
    served = carry_audio_group(described, render_master(parse_master(described), subtitles))
    lines = served.splitlines()
    assert [line for line in lines if "TYPE=AUDIO" in line] == [line for line in described.splitlines() if "TYPE=AUDIO" in line]
    assert any("TYPE=SUBTITLES" in line for line in lines)
    assert all('AUDIO="' in line and 'SUBTITLES="' in line for line in lines if line.startswith("#EXT-X-STREAM-INF:"))
    assert carry_audio_group(described, served) == served  # applying it again changes nothing
    assert carry_audio_group(MASTER, render_master(parse_master(MASTER), subtitles)) == render_master(parse_master(MASTER), subtitles)


def test_master_audio_group_refusals() -> None:
    with pytest.raises(ValueError, match="exactly one DEFAULT"):
        with_audio_renditions(MASTER, [AudioRendition("a", uri="a.m3u8", characteristics=DESCRIBES_VIDEO)])
    with pytest.raises(PlaylistParseError, match="line 1: missing #EXTM3U"):
        with_audio_renditions("#EXTINF:2,\n", renditions(["en"]))
    with pytest.raises(ValueError, match="quoted-string"):
        with_audio_renditions(MASTER, [AudioRendition('say "hi"', default=True)])


def _adts(frames: int, rate_index: int = 4, channels: int = 2) -> bytes:
    """``frames`` ADTS frames (AAC-LC, no CRC) of distinct 10-byte payloads: what ffmpeg's ``-f adts`` writes."""
    out = b""
    for i in range(frames):
        length = 7 + 10
        header = bytes([0xFF, 0xF1, (1 << 6) | (rate_index << 2) | (channels >> 2),
                        ((channels & 3) << 6) | (length >> 11), (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
        out += header + bytes([i % 256]) * 10
    return out


def test_adts_becomes_one_fmp4_fragment_per_video_segment_on_the_programmes_clock() -> None:
    from formats.cmaf import audio_format, track_starts

    frame = 1024 / 44100
    start = 44100 * 60  # the programme's audio starts a minute into the live run (its tfdt, in samples)
    init, fragments = adts_fragments(_adts(100), start, [20 * frame, 50 * frame], 44100)
    assert audio_format(init) is not None and audio_format(init).sample_rate == 44100  # type: ignore[union-attr]
    # The priming frame a frame before the programme's first sample; a frame goes where it starts.
    starts = [track_starts(init, f)[b"soun"] for f in fragments]
    assert starts == [(start - 1024, 44100), (start + 20 * 1024, 44100), (start + 50 * 1024, 44100)]
    from tests.formats.mp4_boxes import read_fragment
    read = [read_fragment(f) for f in fragments]
    assert [sequence for sequence, _, _ in read] == [1, 2, 3]
    assert [[len(run.samples) for run in runs] for _, runs, _ in read] == [[21], [30], [49]]  # every frame, once
    assert all(sample[:2] == (1024, 10) for _, runs, _ in read for sample in runs[0].samples)
    assert b"".join(f[at:] for f, (_, _, at) in zip(fragments, read)) == b"".join(bytes([i]) * 10 for i in range(100))


def test_adts_starting_at_zero_drops_the_priming_frame_and_refuses_another_rate() -> None:
    from formats.cmaf import track_starts

    init, fragments = adts_fragments(_adts(10), 0, [], 44100)
    assert len(fragments) == 1 and track_starts(init, fragments[0]) == {b"soun": (0, 44100)}
    with pytest.raises(ValueError, match="48000 Hz"):
        adts_fragments(_adts(10, rate_index=3), 0, [], 44100)
    with pytest.raises(ValueError, match="empty"):
        adts_fragments(_adts(3), 44100, [10.0], 44100)
