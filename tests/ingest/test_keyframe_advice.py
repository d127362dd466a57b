"""When the lecturer is told to shorten the keyframe interval (pure)."""

from __future__ import annotations

import pytest

from ingest.live import keyframe_advice


@pytest.mark.parametrize(("measured", "segment", "advice"), [
    (None, 2.0, None),  # not measured yet (fewer than two keyframes)
    (2.0, 2.0, None),
    (2.08, 2.0, None),  # a late frame is not worth a word
    (1.0, 2.0, None),  # shorter than a segment: segments stay 2 s
    (2.5, 2.0, 2.0),
    (10.0, 2.0, 2.0),  # ffmpeg / x264enc defaults at 25 fps
    (20.0, 1.0, 1.0),
])
def test_advice_only_when_the_interval_is_longer_than_a_segment(measured: float | None, segment: float,
                                                                advice: float | None) -> None:
    assert keyframe_advice(measured, segment) == advice
