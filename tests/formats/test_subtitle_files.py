"""Reading uploaded subtitle files (SubRip and WebVTT): plain text out, and every problem with its line number."""

from __future__ import annotations

import pytest

from formats import srt, webvtt
from formats.webvtt import Cue, SubtitleFileError


def problems(parse: object, text: str) -> list[str]:
    with pytest.raises(SubtitleFileError) as caught:
        parse(text)  # type: ignore[operator]
    return [str(p) for p in caught.value.problems]


def test_srt_reads_cues_as_plain_text_in_start_order() -> None:
    text = ("\ufeff2\r\n00:00:03,000 --> 00:00:04,500  X1:10 X2:20\r\n{\\an8}<font color=\"red\">En haut</font>\r\n\r\n"
            "1\n00:00:01.000 --> 00:00:02,000\n<i>Bonjour</i> &amp; bienvenue\ndeux lignes\n\n\n"
            "3\n100:00:00,000 --> 100:00:01,000\nlong\n")
    with pytest.raises(SubtitleFileError):  # past a day: a typo, refused
        srt.parse(text)
    assert srt.parse(text.rsplit("3\n", 1)[0]) == [
        Cue(1.0, 2.0, "Bonjour & bienvenue\ndeux lignes"), Cue(3.0, 4.5, "En haut")]


def test_srt_round_trips_what_the_writer_writes() -> None:
    cues = [Cue(0.5, 1.25, "un"), Cue(61.0, 62.5, "deux\ntrois")]
    assert srt.parse(srt.render(cues)) == cues


@pytest.mark.parametrize(("text", "expected"), [
    ("1\n00:00:01,000 --> 00:00:0x,000\nmot\n", ["line 2: bad end time '00:00:0x,000' (expected hh:mm:ss,mmm)"]),
    ("1\n0:0:01,000 --> 00:00:02,000\nmot\n", ["line 2: bad start time '0:0:01,000' (expected hh:mm:ss,mmm)"]),
    ("1\n00:00:03,000 --> 00:00:02,000\nmot\n", ["line 2: the cue ends (00:00:02,000) before it starts (00:00:03,000)"]),
    ("un\n00:00:01,000 --> 00:00:02,000\nmot\n", ["line 1: expected a cue number, found 'un'"]),
    ("00:00:01,000 --> 00:00:02,000\nmot\n", ["line 1: a cue number is missing before the timing line"]),
    ("1\n00:00:01,000 --> 00:00:02,000\n", ["line 2: the cue has no text"]),
    ("1\n", ["line 1: a cue number without a timing line after it"]),
    ("1\n00:00:01,000 00:00:02,000\nmot\n", ["line 2: expected a timing line 'start --> end', found '00:00:01,000 00:00:02,000'"]),
    ("1\n00:00:01,000 --> 00:00:02,000\nmot\n2\n00:00:03,000 --> 00:00:04,000\nautre\n",
     ["line 5: a blank line is missing before this timing line"]),
])
def test_srt_problems_say_the_line(text: str, expected: list[str]) -> None:
    assert problems(srt.parse, text) == expected


def test_srt_reports_every_problem_at_once() -> None:
    text = ("1\n00:00:01,000 --> 00:00:02,000\nbien\n\n"
            "2\n00:00:0x,000 --> 00:00:04,000\nmal\n\n"
            "trois\n00:00:05,000 --> 00:00:06,000\nmal\n")
    assert [p.split(":")[0] for p in problems(srt.parse, text)] == ["line 6", "line 9"]


def test_webvtt_upload_reads_any_webvtt_as_plain_text() -> None:
    text = ("WEBVTT - Cours 3\nKind: captions\n\nNOTE written by hand\nover two lines\n\nSTYLE\n::cue { color: red }\n\n"
            "intro\n00:01.000 --> 00:02.500 align:start line:0\n<v Prof>Bonjour</v> &lt;tous&gt;&nbsp;!\n\n"
            "01:00:00.000 --> 01:00:01.000\n<c.loud>fin</c>\n")
    assert webvtt.read_file(text) == [Cue(1.0, 2.5, "Bonjour <tous> !", "intro"), Cue(3600.0, 3601.0, "fin")]


@pytest.mark.parametrize(("text", "expected"), [
    ("WEBVT\n\n00:01.000 --> 00:02.000\nx\n", ["line 1: a WebVTT file starts with the line WEBVTT"]),
    ("WEBVTT\n00:01.000 --> 00:02.000\nx\n", ["line 2: a blank line must separate the WEBVTT line from the first cue"]),
    ("WEBVTT\n\n00:01.000 --> 00:00.500\nx\n\nid\n00:02,000 --> 00:03.000\ny\n",
     ["line 3: the cue ends (00:00.500) before it starts (00:01.000)",
      "line 7: bad start time '00:02,000' (expected hh:mm:ss.ttt / mm:ss.ttt)"]),
    ("WEBVTT\n\njust text\n", ["line 3: expected a timing line 'start --> end', found 'just text'"]),
])
def test_webvtt_upload_problems_say_the_line(text: str, expected: list[str]) -> None:
    assert problems(webvtt.read_file, text) == expected


def test_webvtt_upload_reads_what_the_writer_writes() -> None:
    cues = [Cue(0.0, 1.0, "a < b & c", "one"), Cue(2.0, 3.5, "deux\nlignes")]
    assert webvtt.read_file(webvtt.render(cues)) == cues
