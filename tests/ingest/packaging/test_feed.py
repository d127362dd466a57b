"""The bounded FLV queue in front of ffmpeg: drops, resume at keyframes, preamble."""

from __future__ import annotations

from formats.flv import flv_header, flv_tag, script_tag_from_metadata
from ingest.packaging.feed import TAG_OVERHEAD, FlvFeed, publisher_has_audio

from .support import split_flv

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x04abcd"
AAC_HEADER = b"\xaf\x00\x12\x10"
META = {"width": 160.0, "height": 120.0, "videocodecid": 7.0, "audiocodecid": 10.0}


def key(n: int = 0, size: int = 100) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([n]) * size


def inter(n: int = 0, size: int = 100) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes([n]) * size


def audio(n: int = 0, size: int = 20) -> bytes:
    return b"\xaf\x01" + bytes([n]) * size


def drain(feed: FlvFeed) -> bytes:
    out = b""
    while (chunk := feed.pop()) is not None:
        out += chunk
    return out


def tags_of(stream: bytes) -> list[tuple[str, int, bytes]]:
    return [(t.kind, t.timestamp_ms, t.payload) for t in split_flv(stream)]


def publish_start(feed: FlvFeed) -> None:
    feed.set_metadata(META)
    feed.push("video", 0, AVC_HEADER, 1.0)
    feed.push("audio", 0, AAC_HEADER, 1.0)


def test_first_process_gets_header_metadata_and_headers_once() -> None:
    feed = FlvFeed(1 << 20)
    feed.new_process(resync=False)
    publish_start(feed)
    feed.push("video", 0, key(1), 1.5)
    feed.push("audio", 10, audio(1), 1.6)
    stream = drain(feed)
    assert stream.startswith(flv_header(has_audio=True, has_video=True))
    assert stream[13:].startswith(script_tag_from_metadata(META))
    assert tags_of(stream) == [
        ("script", 0, tags_of(flv_header(True, True) + script_tag_from_metadata(META))[0][2]),
        ("video", 0, AVC_HEADER),
        ("audio", 0, AAC_HEADER),
        ("video", 0, key(1)),
        ("audio", 10, audio(1)),
    ]
    assert feed.first_media is not None and feed.first_media.received_at == 1.5
    assert feed.queued_bytes == 0 and feed.dropped_tags == 0


def test_header_flags_follow_metadata() -> None:
    feed = FlvFeed(1 << 20)
    feed.new_process(resync=False)
    feed.set_metadata({"audiocodecid": 10.0, "audiosamplerate": 44100.0})
    feed.push("audio", 0, AAC_HEADER, 1.0)
    feed.push("audio", 23, audio(), 1.0)
    assert drain(feed).startswith(flv_header(has_audio=True, has_video=False))


def test_full_queue_drops_video_until_next_keyframe() -> None:
    frame = len(inter(size=1000)) + TAG_OVERHEAD
    told: list[None] = []
    feed = FlvFeed(64 * 1024, lambda: told.append(None))  # the metric's increment, called at each drop
    publish_start(feed)
    feed.push("video", 0, key(size=1000), 1.0)
    n = 1
    while feed.push("video", 40 * n, inter(size=1000), 1.0):
        n += 1
    assert feed.dropped_tags == 1 and feed.queued_bytes + frame > feed.max_bytes
    drain(feed)  # ffmpeg catches up
    assert not feed.push("video", 40 * (n + 1), inter(size=10), 1.0)  # no reference: dropped
    assert feed.push("audio", 40 * (n + 1), audio(), 1.0)  # audio flows again at once
    assert feed.push("video", 40 * (n + 2), key(size=10), 1.0)
    assert feed.push("video", 40 * (n + 3), inter(size=10), 1.0)
    assert feed.dropped_tags == 2 == len(told)


def test_queue_never_exceeds_twice_the_bound_even_with_header_floods() -> None:
    feed = FlvFeed(64 * 1024)
    for i in range(10_000):
        feed.push("video", i, key(size=500) if i % 50 == 0 else inter(size=500), 1.0)
        feed.push("video", i, AVC_HEADER, 1.0)
        feed.set_metadata({"n": float(i)})
        assert feed.queued_bytes <= 2 * feed.max_bytes
    assert len(feed) < 2 * feed.max_bytes / 20


def test_restart_resumes_at_keyframe_with_cached_headers() -> None:
    feed = FlvFeed(1 << 20)
    feed.new_process(resync=False)
    publish_start(feed)
    feed.push("video", 0, key(1), 1.0)
    drain(feed)
    # ffmpeg dies; meanwhile the publisher goes on.
    feed.push("video", 40, inter(2), 2.0)
    feed.push("audio", 46, audio(2), 2.0)
    feed.push("video", 1000, key(3), 3.0)
    feed.push("audio", 1010, audio(3), 3.0)
    feed.new_process(resync=True)
    stream = drain(feed)
    assert stream.startswith(flv_header(True, True) + script_tag_from_metadata(META))
    assert tags_of(stream)[1:] == [
        ("video", 1000, AVC_HEADER),
        ("audio", 1000, AAC_HEADER),
        ("video", 1000, key(3)),
        ("audio", 1010, audio(3)),
    ]
    assert feed.dropped_tags == 2
    assert feed.first_media is not None and feed.first_media.timestamp_ms == 1000


def test_end_of_sequence_marker_is_not_a_resume_point() -> None:
    feed = FlvFeed(1 << 20)
    publish_start(feed)
    feed.push("video", 0, key(), 1.0)
    drain(feed)
    feed.new_process(resync=True)
    feed.push("video", 40, b"\x17\x02\x00\x00\x00", 1.0)  # AVC end of sequence
    feed.push("video", 80, inter(), 1.0)
    assert drain(feed) == b""
    assert feed.dropped_tags == 2


def test_audio_only_stream_needs_no_keyframe_after_restart() -> None:
    feed = FlvFeed(1 << 20)
    feed.set_metadata({"audiocodecid": 10.0})
    feed.push("audio", 0, AAC_HEADER, 1.0)
    feed.new_process(resync=True)
    feed.push("audio", 23, audio(), 1.0)
    assert [k for k, _, _ in tags_of(drain(feed))] == ["script", "audio", "audio"]


def test_changed_sequence_header_mid_stream_is_forwarded() -> None:
    feed = FlvFeed(1 << 20)
    feed.new_process(resync=False)
    publish_start(feed)
    feed.push("video", 0, key(), 1.0)
    drain(feed)
    new_header = AVC_HEADER[:-4] + b"wxyz"
    feed.push("video", 500, AVC_HEADER, 1.0)  # repeated, unchanged: not re-sent
    feed.push("video", 1000, new_header, 1.0)
    feed.push("video", 1000, key(), 1.0)
    assert tags_of(flv_header(True, True) + drain(feed)) == [
        ("video", 1000, new_header),
        ("video", 1000, key()),
    ]


def test_reset_forgets_the_old_publisher() -> None:
    feed = FlvFeed(1 << 20)
    publish_start(feed)
    feed.push("video", 0, key(), 1.0)
    feed.reset()
    assert len(feed) == 0 and feed.queued_bytes == 0
    assert feed.metadata is None and feed.sequence_headers == {}


def test_tag_framing_matches_flv_module() -> None:
    feed = FlvFeed(1 << 20)
    feed.new_process(resync=False)
    feed.push("audio", 5, audio(), 1.0)
    assert drain(feed).endswith(flv_tag(8, 5, audio()))


def test_a_publisher_without_audio_is_told_by_its_metadata_or_headers() -> None:
    """What decides whether the ladder encodes audio: onMetaData announcing only video says no; an AAC
    sequence header says yes whatever the metadata; nothing known yet counts as audio (as before)."""
    video_only = {"videocodecid": 7.0, "width": 320.0, "height": 180.0}
    assert publisher_has_audio(video_only, {}) is False
    assert publisher_has_audio(video_only, {"audio": b"\xaf\x00\x12\x10"}) is True
    assert publisher_has_audio({**video_only, "audiocodecid": 10.0}, {}) is True
    assert publisher_has_audio(None, {}) is True
    feed = FlvFeed(1 << 20)
    feed.set_metadata(video_only)
    assert feed.has_audio is False
