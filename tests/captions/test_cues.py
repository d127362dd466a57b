"""Cue shaping: pure code, checked on examples and on generated word streams."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from captions.cues import Cue, CueRules, Word, shape_cues, to_webvtt, words_from_result, wrap_lines
from captions.track import SubtitleTrack
from formats import webvtt

RULES = CueRules()


def test_vosk_result_loses_non_speech_tokens_and_maps_times() -> None:
    result = {"result": [
        {"word": "[unk]", "start": 0.1, "end": 0.3, "conf": 1.0},
        {"word": "안녕", "start": 0.5, "end": 0.9, "conf": 0.8},
        {"word": "-", "start": 0.9, "end": 1.0, "conf": 1.0},
        {"word": "[0]", "start": 1.0, "end": 1.1, "conf": 1.0},
        {"word": "하세요", "start": 1.1, "end": 1.6, "conf": 0.9},
    ], "text": "..."}
    words = words_from_result(result, lambda t: t + 10.0)
    assert words == [Word("안녕", 10.5, 10.9), Word("하세요", 11.1, 11.6)]
    assert words_from_result({"partial": ""}) == []


def test_pause_splits_and_short_cue_is_stretched_to_one_second() -> None:
    words = [Word("hello", 0.0, 0.3), Word("world", 0.35, 0.6), Word("again", 2.0, 2.4)]
    cues = shape_cues(words)
    assert [c.text for c in cues] == ["hello world", "again"]
    assert cues[0].start == 0.0 and cues[0].end == pytest.approx(1.0)
    assert cues[1].end == pytest.approx(3.0)


def test_long_speech_is_cut_into_two_line_cues_of_at_most_seven_seconds() -> None:
    words = [Word(f"word{i:02d}", i * 0.3, i * 0.3 + 0.25) for i in range(60)]
    cues = shape_cues(words)
    assert len(cues) > 3
    assert all(len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    assert all(c.end - c.start <= 7.0 for c in cues)
    assert " ".join(" ".join(c.lines) for c in cues) == " ".join(w.text for w in words)


def test_a_word_longer_than_a_line_is_cut_not_lost() -> None:
    assert wrap_lines(["a" * 50, "b"], 42) == ["a" * 42, "a" * 8 + " b"]


words_strategy = st.lists(
    st.tuples(
        st.text(alphabet="abcdefghij가나다라마", min_size=1, max_size=15),
        st.floats(min_value=0.0, max_value=2.0),  # gap before the word
        st.floats(min_value=0.05, max_value=1.5),  # word duration
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(words_strategy)
def test_shaped_cues_follow_the_rules(spec: list[tuple[str, float, float]]) -> None:
    words, t = [], 0.0
    for text, gap, duration in spec:
        t += gap
        words.append(Word(text, round(t, 3), round(t + duration, 3)))
        t += duration
    cues = shape_cues(words, RULES)
    # Nothing lost, nothing reordered.
    assert " ".join(" ".join(c.lines) for c in cues) == " ".join(w.text for w in words)
    for index, cue in enumerate(cues):
        assert 1 <= len(cue.lines) <= RULES.max_lines
        assert all(len(line) <= RULES.max_line_chars for line in cue.lines)
        assert cue.end - cue.start <= RULES.max_seconds + 1e-6
        following = cues[index + 1].start if index + 1 < len(cues) else None
        if following is not None:
            assert cue.end <= following + 1e-6  # no overlap
        if following is None or following >= cue.start + RULES.min_seconds:
            assert cue.end - cue.start >= RULES.min_seconds - 1e-6


def test_caption_cues_become_escaped_webvtt_that_reads_back_as_the_same_lines() -> None:
    cues = [Cue(1.0, 2.5, ("a < b & c", "두 번째 줄")), Cue(3.0, 4.0, ("-->",))]
    _, parsed = webvtt.parse(webvtt.render(to_webvtt(cues)))
    assert [(c.start, c.end, tuple(c.text.split("\n"))) for c in parsed] == [(c.start, c.end, c.lines) for c in cues]


def test_a_cue_spanning_segments_has_one_identifier_in_each(tmp_path: Path) -> None:
    """hls.js keeps one cue per identifier; without one it hashes the cue's times after its own offset
    arithmetic, which can differ in the last bit from one segment's X-TIMESTAMP-MAP to the next (a full run
    once showed the same caption twice)."""
    track = SubtitleTrack(tmp_path, window_segments=6, dvr=True, target_duration=2, max_lag_seconds=5.0)
    track.start()
    track.add_cue(Cue(0.9, 4.897, ("한 문장",)))
    track.add_cue(Cue(5.2, 6.0, ("다음",)))
    for sequence, start in enumerate([0.0, 2.0, 4.0]):
        track.video_segment(sequence, f"seg_{sequence:06d}.vtt", start, start + 2.0, False, None,
                            pts=900_000 + round(start * 90_000), target_duration=2)
    assert track.advance(None, force=True) == 3
    segments = [webvtt.parse((tmp_path / f"seg_{n:06d}.vtt").read_text())[1] for n in range(3)]
    assert [[(c.identifier, c.start, c.end) for c in cues] for cues in segments] == [
        [("c900-4897", 0.9, 4.897)], [("c900-4897", 0.9, 4.897)],
        [("c900-4897", 0.9, 4.897), ("c5200-6000", 5.2, 6.0)]]
