"""FLV framing and codec inspection, including Enhanced-RTMP ex-headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import flv
from formats import amf0
from tests.ingest.rtmp.rtmp_captures import AAC_SEQ, AVC_SEQ, enhanced_video_payloads


def test_header() -> None:
    assert flv.flv_header(True, True) == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv.flv_header(False, True)[4] == 0x01
    assert flv.flv_header(True, False)[4] == 0x04


def test_tag_with_extended_timestamp_and_previous_tag_size() -> None:
    tag = flv.flv_tag(9, 0x12345678, b"abc")
    assert tag == b"\x09\x00\x00\x03\x34\x56\x78\x12\x00\x00\x00" + b"abc" + (14).to_bytes(4, "big")


def test_tag_rejects_oversize_payload() -> None:
    with pytest.raises(ValueError, match=r"^FLV tag payload of 16777216 bytes exceeds 16 MiB$"):
        flv.flv_tag(9, 0, bytes(0x1000000))


def test_script_tag() -> None:
    tag = flv.script_tag_from_metadata({"width": 160.0, "encoder": "x"})
    assert tag[0] == 18 and tag[4:8] == b"\0\0\0\0"
    size = int.from_bytes(tag[1:4], "big")
    assert amf0.decode(tag[11 : 11 + size]) == ["onMetaData", {"width": 160.0, "encoder": "x"}]
    assert int.from_bytes(tag[-4:], "big") == 11 + size


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"", None),
        (AVC_SEQ, "h264"),
        (b"\x27\x01\x00\x00\x00", "h264"),
        (b"\x22", "flv1"),
        (b"\x14", "vp6f"),
        (b"\x1c\x00", "hevc"),  # legacy codec id 12 extension
        (b"\x1f", "unknown"),
        (b"\x90hvc1\x01", "hevc"),
        (b"\x90av01", "av1"),
        (b"\x91vp09\x00\x00\x00", "vp9"),
        (b"\x90avc", None),  # truncated FourCC
        (b"\x97", None),  # ModEx without its data
        (b"\x97\xff", None),  # ModEx 16-bit size escape, truncated
        (b"\x97\xff\x00\x01ab\x01av01", "av1"),  # 16-bit ModEx size (2 bytes)
        (b"\xd0\x00", None),  # command frame: no codec
        (b"\xd4hvc1\x02", "hevc"),  # Metadata packet sent as frame type 5 (ffmpeg does this)
        (b"\x96\x20hvc1\x00\x00\x00\x05", "hevc"),  # Multitrack, ManyTracksManyCodecs
        (b"\x96", None),
    ],
)
def test_video_codec(payload: bytes, codec: str | None) -> None:
    assert flv.video_codec(payload) == codec


def test_enhanced_payload_classification() -> None:
    payloads = enhanced_video_payloads()
    assert [flv.video_codec(p) for p in payloads] == ["h264"] * 5 + [None, "h264"]
    assert [flv.is_sequence_header("video", p) for p in payloads] == [
        True,
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert [flv.is_keyframe(p) for p in payloads] == [True, False, True, False, False, False, True]


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"", "unknown"),
        (AAC_SEQ, "aac"),
        (b"\x2f\xff", "mp3"),
        (b"\x72", "pcm_alaw"),
        (b"\x82", "pcm_mulaw"),
        (b"\xb2", "speex"),
        (b"\x90Opus", "opus"),
        (b"\x91fLaC", "flac"),
        (b"\x90mp4a", "aac"),
        (b"\x95\x00ac-3", "ac3"),  # Multitrack, OneTrack
        (b"\x97\x00\x00\x01.mp3", "mp3"),  # ModEx then CodedFrames
        (b"\x90abcd", "unknown"),
        (b"\x90", "unknown"),
    ],
)
def test_audio_codec(payload: bytes, codec: str) -> None:
    assert flv.audio_codec(payload) == codec


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        ("audio", AAC_SEQ, True),
        ("audio", b"\xaf\x01\x21", False),
        ("audio", b"\x90Opus", True),
        ("audio", b"\x91Opus", False),
        ("audio", b"\x95\x00Opus", True),
        ("video", AVC_SEQ, True),
        ("video", b"\x17\x01", False),
        ("video", b"\x1c\x00", True),
        ("video", b"\x95mp4", True),  # MPEG2TSSequenceStart
        ("audio", b"\xaf", False),
        ("data", AAC_SEQ, False),
    ],
)
def test_is_sequence_header(kind: str, payload: bytes, expected: bool) -> None:
    assert flv.is_sequence_header(kind, payload) is expected


@given(st.binary(max_size=40))
@settings(max_examples=1000, deadline=None)
def test_inspection_never_raises(payload: bytes) -> None:
    flv.video_codec(payload)
    flv.audio_codec(payload)
    flv.is_keyframe(payload)
    flv.is_sequence_header("video", payload)
    flv.is_sequence_header("audio", payload)


def test_read_tags_is_the_reverse_of_the_writers_and_stops_at_a_torn_tag() -> None:
    tags = [(9, 0, b"\x17\x00config"), (8, 21, b"\xaf\x01aac"), (9, 0x1_0000_0005, b"\x27\x01frame")]
    data = flv.flv_header(True, True) + b"".join(flv.flv_tag(*tag) for tag in tags)
    expected = [(kind, stamp & 0xFFFFFFFF, body) for kind, stamp, body in tags]
    assert list(flv.read_tags(data)) == expected
    assert list(flv.read_tags(data[:-6])) == expected[:2]  # the last tag cut short is left out


def test_read_tags_refuses_what_is_not_flv() -> None:
    with pytest.raises(ValueError, match="^not an FLV file: no FLV signature$"):
        list(flv.read_tags(b"RIFF\x00\x00\x00\x00WAVE"))


def test_tag_reader_takes_a_stream_in_chunks_of_any_size() -> None:
    data = flv.flv_header(True, True) + flv.flv_tag(9, 0, b"\x17\x00abc") \
        + flv.flv_tag(8, 23, b"\xaf\x01" + b"x" * 300) + flv.flv_tag(9, 0x01000005, b"\x27\x01z")
    whole = list(flv.read_tags(data))
    for size in (1, 7, 15, 4096):
        reader = flv.FlvTagReader()
        got = []
        for i in range(0, len(data), size):
            got += reader.feed(data[i : i + size])
        assert got == whole and reader.tags == 3
    assert whole[2][1] == 0x01000005  # the extended timestamp byte


def test_tag_reader_refuses_what_is_not_flv() -> None:
    with pytest.raises(ValueError, match="not an FLV stream"):
        flv.FlvTagReader().feed(b"RIFF....")
    with pytest.raises(ValueError, match="not an FLV stream"):
        flv.FlvTagReader().feed(b"FX")
