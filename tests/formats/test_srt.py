"""The SubRip writer: exact text, and cue text that cannot end a cue early."""

from __future__ import annotations

import pytest

from formats import srt
from formats.webvtt import Cue


def test_exact_text() -> None:
    assert srt.render([Cue(1.5, 3.25, "Bonjour à tous"), Cue(3661.0, 3662.0005, "deux\nlignes")]) == (
        "1\n00:00:01,500 --> 00:00:03,250\nBonjour à tous\n\n"
        "2\n01:01:01,000 --> 01:01:02,000\ndeux\nlignes\n\n"
    )


@pytest.mark.parametrize(("text", "lines"), [
    ("a\n\nb", ["a", "b"]),  # a blank line would end the cue
    ("x --> y", ["x -> y"]),  # would read as a timing line
    ("  <b>gras</b>  ", ["<b>gras</b>"]),  # SubRip has no escaping: kept as typed
])
def test_cue_text_stays_in_its_cue(text: str, lines: list[str]) -> None:
    assert srt.render([Cue(0.0, 1.0, text)]).split("\n")[2:-2] == lines


def test_empty_cues_are_left_out_and_numbering_stays_dense() -> None:
    text = srt.render([Cue(0.0, 1.0, " \n "), Cue(-1.0, -2.0, "late"), Cue(5.0, 6.0, "on")])
    assert text == "1\n00:00:00,000 --> 00:00:00,001\nlate\n\n2\n00:00:05,000 --> 00:00:06,000\non\n\n"
    assert srt.render([]) == ""
    with pytest.raises(ValueError):
        srt.format_timestamp(float("nan"))
