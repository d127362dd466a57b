"""Chunk stream muxer/demuxer: hand-built headers, limits, and writer->reader round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.rtmp.chunk import ChunkLimits, ChunkReader, ChunkWriter, Message, ProtocolError
from tests.ingest.rtmp.rtmp_captures import basic_header, raw_chunks


SMALL_CHUNKS_ALLOWED = ChunkLimits(min_chunk_size=1)


def feed_in_pieces(reader: ChunkReader, data: bytes, sizes: list[int]) -> list[Message]:
    out: list[Message] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        out += reader.feed(data[pos : pos + size])
        pos += size
        i += 1
    return out


def test_two_and_three_byte_chunk_stream_ids() -> None:
    data = (
        raw_chunks(0, 64, b"a", type_id=8, ts=1)
        + raw_chunks(0, 319, b"b", type_id=8, ts=2)
        + raw_chunks(0, 320, b"c", type_id=8, ts=3)
        + raw_chunks(0, 65599, b"d", type_id=8, ts=4)
    )
    assert data[:2] == b"\x00\x00" and basic_header(0, 65599) == b"\x01\xff\xff"
    messages = ChunkReader().feed(data)
    assert [(m.chunk_stream_id, m.payload, m.timestamp) for m in messages] == [
        (64, b"a", 1),
        (319, b"b", 2),
        (320, b"c", 3),
        (65599, b"d", 4),
    ]


def test_byte_by_byte_equals_whole() -> None:
    data = raw_chunks(0, 4, bytes(range(200)) * 3, type_id=9, ts=5) + raw_chunks(
        1, 4, b"x" * 130, type_id=8, ts=7
    )
    whole = ChunkReader().feed(data)
    reader = ChunkReader()
    single = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert whole == single
    assert [len(m.payload) for m in whole] == [600, 130]
    assert reader.buffered == 0


def test_zero_length_message() -> None:
    [message] = ChunkReader().feed(raw_chunks(0, 5, b"", type_id=18, ts=9))
    assert message.payload == b"" and message.timestamp == 9


def test_first_chunk_must_have_a_full_header() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        ChunkReader().feed(raw_chunks(2, 6, b"x", ts=3))
    assert str(excinfo.value) == (
        "chunk stream 6 starts with a type-2 header (its first chunk must carry a full message header)"
    )


def test_new_header_in_the_middle_of_a_message() -> None:
    first = raw_chunks(0, 6, b"x" * 300, type_id=9)
    with pytest.raises(ProtocolError) as excinfo:
        ChunkReader().feed(first[: 12 + 128] + raw_chunks(0, 6, b"y", type_id=9))
    assert str(excinfo.value) == (
        "type-0 header on chunk stream 6 while a message of 300 bytes was incomplete (128 received)"
    )


def test_chunk_stream_count_is_bounded() -> None:
    reader = ChunkReader(ChunkLimits(max_chunk_streams=4))
    data = b"".join(raw_chunks(0, csid, b"x", type_id=8) for csid in range(3, 8))
    with pytest.raises(ProtocolError, match=r"^too many chunk streams \(limit 4\)$"):
        reader.feed(data)


def test_buffered_memory_is_bounded() -> None:
    reader = ChunkReader(ChunkLimits(max_buffered_bytes=4000))
    data = b"".join(raw_chunks(0, csid, b"x" * 3000, type_id=9)[: 12 + 128] for csid in range(3, 40))
    with pytest.raises(ProtocolError, match=r"^peer made the connection buffer \d+ bytes, above the limit of 4000$"):
        reader.feed(data)


def test_memory_counts_allocations_not_payload() -> None:
    """17 chunk streams each holding 128 payload bytes cost far more than 17 * 128 bytes."""
    reader = ChunkReader()
    data = b"".join(raw_chunks(0, csid, b"x" * 3000, type_id=9)[: 12 + 128] for csid in range(3, 20))
    assert reader.feed(data) == []
    assert reader.memory > 17 * (128 + 100)
    assert reader.buffered == 0


def test_a_message_grows_in_one_buffer_and_is_released() -> None:
    reader = ChunkReader()
    message = raw_chunks(0, 6, bytes(range(256)) * 400, type_id=9, chunk_size=128)
    before = reader.memory
    assert reader.feed(message[: len(message) // 2]) == []
    held = reader.memory - before
    assert 50_000 < held < 2 * 51_200  # about half of 102,400 payload bytes, in one allocation
    [done] = reader.feed(message[len(message) // 2 :])
    assert done.payload == bytes(range(256)) * 400
    assert reader.memory - before < 1024  # released with the message


def test_input_waiting_for_a_big_chunk_counts() -> None:
    reader = ChunkReader(ChunkLimits(max_buffered_bytes=100_000))
    reader.feed(raw_chunks(0, 2, (1 << 20).to_bytes(4, "big"), type_id=1, msid=0))
    big = raw_chunks(0, 6, bytes(500_000), type_id=9, chunk_size=1 << 20)
    with pytest.raises(ProtocolError, match="above the limit of 100000"):
        for i in range(0, len(big), 10_000):
            reader.feed(big[i : i + 10_000])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ((0).to_bytes(4, "big"), "peer set chunk size 0, below the minimum of 128"),
        ((1).to_bytes(4, "big"), "peer set chunk size 1, below the minimum of 128"),
        ((127).to_bytes(4, "big"), "peer set chunk size 127, below the minimum of 128"),
        (b"\x00\x01", "Set Chunk Size message with 2 bytes (needs 4)"),
        ((1 << 24).to_bytes(4, "big"), "peer set chunk size 16777216, above the limit of 65536"),
    ],
)
def test_set_chunk_size_errors(payload: bytes, message: str) -> None:
    reader = ChunkReader(ChunkLimits(max_chunk_size=65536))
    with pytest.raises(ProtocolError) as excinfo:
        reader.feed(raw_chunks(0, 2, payload, type_id=1, msid=0))
    assert str(excinfo.value) == message


def test_message_size_limit_is_configurable() -> None:
    header = raw_chunks(0, 6, b"", type_id=9, length=2000)
    with pytest.raises(ProtocolError) as excinfo:
        ChunkReader(ChunkLimits(max_message_size=1024)).feed(header)
    assert str(excinfo.value) == "message of 2000 bytes on chunk stream 6 exceeds the limit of 1024 bytes"


def test_abort_drops_partial_message() -> None:
    reader = ChunkReader()
    partial = raw_chunks(0, 6, b"a" * 500, type_id=9, ts=1)[: 12 + 128]
    abort = raw_chunks(0, 2, (6).to_bytes(4, "big"), type_id=2, msid=0)
    fresh = raw_chunks(0, 6, b"b" * 10, type_id=9, ts=2)
    messages = reader.feed(partial + abort + fresh)
    assert [(m.type_id, m.payload) for m in messages] == [(2, (6).to_bytes(4, "big")), (9, b"b" * 10)]


def test_writer_picks_compact_headers_like_ffmpeg() -> None:
    writer = ChunkWriter()
    first = writer.write(Message(8, b"a" * 10, 0, 1, 4))
    second = writer.write(Message(8, b"b" * 10, 23, 1, 4))  # same size, new delta -> type 2
    third = writer.write(Message(8, b"c" * 10, 46, 1, 4))  # same delta -> bare type 3
    fourth = writer.write(Message(8, b"d" * 12, 69, 1, 4))  # new size -> type 1
    back = writer.write(Message(8, b"e" * 12, 10, 1, 4))  # backwards -> type 0
    assert [first[0] >> 6, second[0] >> 6, third[0] >> 6, fourth[0] >> 6, back[0] >> 6] == [0, 2, 3, 1, 0]
    assert third == b"\xc4" + b"c" * 10
    messages = ChunkReader().feed(first + second + third + fourth + back)
    assert [m.timestamp for m in messages] == [0, 23, 46, 69, 10]


def test_writer_applies_its_own_set_chunk_size() -> None:
    writer = ChunkWriter()
    data = writer.write(Message(1, (4096).to_bytes(4, "big"), 0, 0, 2))
    data += writer.write(Message(9, b"v" * 5000, 0, 1, 6))
    assert writer.chunk_size == 4096
    assert data.count(b"\xc6") == 1  # one continuation chunk header for 5000 bytes at 4096
    messages = ChunkReader().feed(data)
    assert messages[1].payload == b"v" * 5000


# --------------------------------------------------------------------------- properties

_message = st.builds(
    Message,
    type_id=st.sampled_from([8, 9, 18, 20, 4, 22]),
    payload=st.binary(max_size=700),
    timestamp=st.one_of(st.integers(0, 5000), st.integers(0xFFFFF0, 0x1000010), st.integers(0, 2**32 - 1)),
    stream_id=st.sampled_from([0, 1, 2, 0xFFFFFFFF]),
    chunk_stream_id=st.sampled_from([3, 4, 5, 6, 63, 64, 319, 320, 65599]),
)
_set_chunk_size = st.integers(1, 3000).map(lambda n: Message(1, n.to_bytes(4, "big"), 0, 0, 2))


@given(
    initial_chunk_size=st.integers(1, 4096),
    messages=st.lists(st.one_of(_message, _message, _message, _set_chunk_size), max_size=30),
    splits=st.lists(st.integers(1, 2000), max_size=10),
)
@settings(max_examples=300, deadline=None)
def test_writer_reader_round_trip(
    initial_chunk_size: int, messages: list[Message], splits: list[int]
) -> None:
    writer = ChunkWriter()
    data = b""
    if initial_chunk_size != 128:
        messages = [Message(1, initial_chunk_size.to_bytes(4, "big"), 0, 0, 2), *messages]
    for message in messages:
        data += writer.write(message)
    reader = ChunkReader(SMALL_CHUNKS_ALLOWED)  # the parser's small-chunk paths, below the server's floor
    received = feed_in_pieces(reader, data, splits)
    assert received == messages
    assert reader.buffered == 0


@given(
    chunk_size=st.integers(1, 300),
    timestamps=st.lists(st.integers(0xFFFFFF - 3, 0xFFFFFF + 1000), min_size=1, max_size=10).map(sorted),
    size=st.integers(1, 900),
)
@settings(max_examples=150, deadline=None)
def test_extended_timestamps_without_repetition(chunk_size: int, timestamps: list[int], size: int) -> None:
    # Payloads start with 0x27 (an H.264 inter frame), never the repeated value's first byte.
    # A trailing audio message lets the reader see past the last chunk, as in a live stream.
    writer = ChunkWriter(repeat_extended_timestamp=False)
    data = writer.write(Message(1, chunk_size.to_bytes(4, "big"), 0, 0, 2))
    messages = [Message(9, b"\x27" * size, ts, 1, 6) for ts in timestamps]
    messages.append(Message(8, b"\xaf\x01\x21\x10", 0, 1, 4))
    for message in messages:
        data += writer.write(message)
    assert ChunkReader(SMALL_CHUNKS_ALLOWED).feed(data)[1:] == messages


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    reader = ChunkReader(ChunkLimits(max_message_size=100_000))
    try:
        reader.feed(data)
    except ProtocolError:
        pass


def test_extended_timestamp_repetition_is_learnt_once() -> None:
    # Once the reader has seen that this client does not repeat extended timestamps, a
    # continuation chunk whose payload happens to start with the same four bytes is payload.
    writer = ChunkWriter(repeat_extended_timestamp=False)
    delta = 0x01000000
    tricky = b"\x27" * 128 + delta.to_bytes(4, "big") + b"y" * 100
    messages = [
        Message(9, b"\x27" * 300, delta, 1, 6),
        Message(9, tricky, 2 * delta, 1, 6),  # type 1 header with the same extended delta
        Message(8, b"\xaf\x01", 0, 1, 4),
    ]
    data = b"".join(writer.write(m) for m in messages)
    assert ChunkReader().feed(data) == messages
