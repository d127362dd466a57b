"""The one WebVTT writer: plain text in, escaped cue payloads out; the parser reads it back."""

from __future__ import annotations

import pytest

from formats.webvtt import Cue, TimestampMap, WebVttError, escape, format_timestamp, parse, parse_timestamp, render


@pytest.mark.parametrize(("text", "payload"), [
    ("plain words", "plain words"),
    ("<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"),
    ("&amp;", "&amp;amp;"),
    ("Q&A", "Q&amp;A"),
    ("Part --> two", "Part --&gt; two"),
    ("<script>&</script>", "&lt;script&gt;&amp;&lt;/script&gt;"),
    ("Intro\n\nlines", "Intro\nlines"),  # a blank line would end the cue
    ("  one \r\n two  ", "one\ntwo"),
    ("été 😀", "été 😀"),
])
def test_cue_text_is_escaped_and_never_breaks_the_cue(text: str, payload: str) -> None:
    out = render([Cue(1.0, 2.0, text)])
    assert out == f"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{payload}\n\n"
    body = out.split("\n", 3)[3]
    assert "-->" not in body and "\n\n" not in body.rstrip("\n") and "<" not in body
    assert parse(out)[1] == [Cue(1.0, 2.0, "\n".join(line.strip() for line in text.replace("\r", "").split("\n") if line.strip()))]


@pytest.mark.parametrize(("cue", "timing"), [
    (Cue(0, 0, "x"), "00:00:00.000 --> 00:00:00.001"),  # a cue must end after it starts
    (Cue(-2.0, 1.0, "x"), "00:00:00.000 --> 00:00:01.000"),  # before the track: starts at 0
    (Cue(3725.5, 3726.0, "x"), "01:02:05.500 --> 01:02:06.000"),
    (Cue(5.0, 4.0, "x"), "00:00:05.000 --> 00:00:05.001"),
])
def test_cue_timings(cue: Cue, timing: str) -> None:
    assert render([cue]).split("\n")[2] == timing


def test_identifiers_are_one_line_without_an_arrow_and_empty_cues_are_left_out() -> None:
    out = render([Cue(0, 1, "a", identifier="chapter-1"), Cue(1, 2, " \n ", identifier="gone"),
                  Cue(2, 3, "b", identifier="x --> y\nz")])
    assert out == "WEBVTT\n\nchapter-1\n00:00:00.000 --> 00:00:01.000\na\n\nx -> y z\n00:00:02.000 --> 00:00:03.000\nb\n\n"
    assert [c.identifier for c in parse(out)[1]] == ["chapter-1", "x -> y z"]


def test_timestamp_map_header_round_trips() -> None:
    out = render([Cue(12.0, 13.5, "a < b & c\n두 번째 줄")], TimestampMap(126000, 12.0))
    assert out.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:12.000\n\n")
    assert parse(out) == (TimestampMap(126000, 12.0), [Cue(12.0, 13.5, "a < b & c\n두 번째 줄")])
    assert render([]) == "WEBVTT\n\n"


def test_timestamps() -> None:
    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(3725.5) == "01:02:05.500"
    assert parse_timestamp("01:02:05.500") == 3725.5
    assert parse_timestamp("02:05.250") == 125.25
    with pytest.raises(ValueError):
        format_timestamp(-1)
    with pytest.raises(ValueError):
        format_timestamp(float("nan"))
    with pytest.raises(WebVttError, match="bad timestamp"):
        parse_timestamp("1:2:3")


@pytest.mark.parametrize(("text", "reason"), [
    ("hello\n", "missing WEBVTT"),
    ("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nx\n", "ends before it starts"),
    ("WEBVTT\n\nid only\n", "cue without timing"),
    ("WEBVTT\n\n00:00:01.000 -->\nx\n", "bad timestamp"),
    ("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:x,LOCAL:00:00:00.000\n\n", "X-TIMESTAMP-MAP"),
])
def test_invalid_webvtt_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(WebVttError, match=reason):
        parse(text)


def test_escape_is_idempotent_only_through_unescape() -> None:
    assert escape("&lt;") == "&amp;lt;"  # a typed reference stays what was typed
