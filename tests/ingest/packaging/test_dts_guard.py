"""The decode-time guard every publisher's tags pass through, fed FLV tag bodies."""

from __future__ import annotations

from formats.flv import flv_header, flv_tag, read_tags
from ingest.packaging.dts_guard import DtsGuard

AVC_HEADER = bytes((0x17, 0, 0, 0, 0)) + b"\x01\x64\x00\x1f\xff\xe1"
KEY = bytes((0x17, 1, 0, 0, 0)) + b"\x00\x00\x00\x01\x65"
INTER = bytes((0x27, 1, 0, 0, 0)) + b"\x00\x00\x00\x01\x41"
AAC_HEADER = bytes((0xAF, 0, 0x12, 0x10))
AAC = bytes((0xAF, 1)) + b"\x21\x00"
KINDS = {8: "audio", 9: "video"}


def guard_stream(tags: list[tuple[str, int, bytes]], guard: DtsGuard | None = None) -> list[tuple[str, int]]:
    """Write the tags as an FLV byte stream, read them back, and pass them through a guard."""
    data = flv_header(True, True) + b"".join(flv_tag(9 if k == "video" else 8, ms, body) for k, ms, body in tags)
    guard = guard or DtsGuard()
    out = []
    for tag_type, ms, body in read_tags(data):
        checked = guard.check(KINDS[tag_type], ms, body)
        if checked is not None:
            out.append((KINDS[tag_type], checked))
    return out


def test_a_repeated_time_moves_on_by_a_millisecond_per_track() -> None:
    guard = DtsGuard()
    out = guard_stream([("video", 0, AVC_HEADER), ("video", 0, KEY), ("audio", 0, AAC_HEADER), ("audio", 0, AAC),
                        ("video", 23, INTER), ("video", 23, INTER), ("audio", 23, AAC), ("video", 56, INTER)], guard)
    assert out == [("video", 0), ("video", 0), ("audio", 0), ("audio", 0),
                   ("video", 23), ("video", 24), ("audio", 23), ("video", 56)]
    assert (guard.adjusted, guard.dropped, guard.rebased) == (1, 0, 0)


def test_a_small_step_back_is_adjusted_and_times_stay_increasing() -> None:
    guard = DtsGuard()
    out = guard_stream([("video", 100, KEY), ("video", 133, INTER), ("video", 120, INTER), ("video", 130, INTER),
                        ("video", 166, INTER)], guard)
    assert [ms for _, ms in out] == [100, 133, 134, 135, 166]
    assert guard.adjusted == 2


def test_a_stray_far_behind_frame_is_dropped() -> None:
    guard = DtsGuard()
    out = guard_stream([("audio", 5000, AAC), ("audio", 5023, AAC), ("audio", 10, AAC), ("audio", 5046, AAC)], guard)
    assert out == [("audio", 5000), ("audio", 5023), ("audio", 5046)]
    assert guard.dropped == 1 and guard.touched == 1


def test_a_restarted_clock_is_rebased_at_a_keyframe_after_the_wait() -> None:
    guard = DtsGuard(rebase_after_ms=100)
    tags = [("video", 9000, KEY), ("video", 9033, INTER)]
    tags += [("video", ms, INTER) for ms in (0, 33, 66, 99, 132)]  # the publisher's clock restarted
    tags += [("video", 165, KEY), ("video", 198, INTER)]
    out = guard_stream(tags, guard)
    assert [ms for _, ms in out] == [9000, 9033, 9034, 9067]  # dropped until a keyframe past the wait
    assert guard.dropped == 5 and guard.rebased == 1


def test_sequence_headers_and_end_of_sequence_pass_and_do_not_move_the_clock() -> None:
    guard = DtsGuard()
    end = bytes((0x17, 2, 0, 0, 0))  # what ffmpeg sends last, at the last frame's time
    out = guard_stream([("video", 40, KEY), ("video", 80, INTER), ("video", 0, AVC_HEADER), ("video", 120, KEY),
                        ("video", 120, end)], guard)
    assert out == [("video", 40), ("video", 80), ("video", 0), ("video", 120), ("video", 120)]
    assert guard.touched == 0
