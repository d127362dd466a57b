"""RtmpServerConnection replayed against recorded and crafted captures."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from formats import flv
from formats import amf0
from ingest.rtmp.chunk import ChunkReader, Message
from ingest.rtmp.protocol import (
    ConnectionFailed,
    MediaReceived,
    MetadataReceived,
    PublishFinished,
    PublishRequested,
    RtmpServerConnection,
    UnsupportedCodec,
)
from tests.ingest.rtmp.rtmp_captures import (
    AAC_SEQ,
    AVC_SEQ,
    CAPTURES,
    CRAFTED,
    aac_frame,
    avc_frame,
    basic_header,
    command,
    control,
    enhanced_video_payloads,
    metadata_message,
    plain_handshake,
    publish_preamble,
    raw_chunks,
    replay,
)


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


def server_messages(sent: bytes) -> list[Message]:
    """Parse what the server sent, after S0/S1/S2."""
    return ChunkReader().feed(sent[1 + 2 * 1536 :])


def commands(sent: bytes) -> list[tuple[int, int, list[Any]]]:
    return [
        (m.chunk_stream_id, m.stream_id, amf0.decode(m.payload))
        for m in server_messages(sent)
        if m.type_id == 20
    ]


def media(events: list[Any], kind: str) -> list[MediaReceived]:
    return [e for e in events if isinstance(e, MediaReceived) and e.kind == kind]


def test_crafted_captures_are_up_to_date() -> None:
    for name, build in CRAFTED.items():
        assert capture(name) == build(), f"{name} is stale: run tests/ingest/rtmp/rtmp_captures.py"


def test_captures_are_small() -> None:
    assert all(path.stat().st_size < 100_000 for path in CAPTURES.glob("*.bin"))


# --------------------------------------------------------------------------- real ffmpeg


@pytest.mark.parametrize("split", [1, 7, 1000, 65536, 10**9])
def test_ffmpeg_publish(split: int) -> None:
    r = replay(capture("ffmpeg_h264_aac.bin"), split=split)
    [request] = r.of(PublishRequested)
    assert (request.app, request.stream_key, request.query, request.stream_id) == (
        "live",
        "testkey",
        {"x": "1"},
        1,
    )
    assert request.tc_url.startswith("rtmp://127.0.0.1:")
    [metadata] = r.of(MetadataReceived)
    assert {
        "width",
        "height",
        "framerate",
        "videocodecid",
        "audiocodecid",
        "encoder",
    } <= metadata.metadata.keys()
    assert metadata.metadata["width"] == 160.0

    video = media(r.events, "video")
    audio = media(r.events, "audio")
    # 1 s at 10 fps: sequence header, 10 frames, end of sequence
    assert len(video) == 12
    assert [v.timestamp for v in video] == [0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 900]
    assert flv.is_sequence_header("video", video[0].payload) and flv.is_keyframe(video[1].payload)
    assert len(audio) == 46 and flv.is_sequence_header("audio", audio[0].payload)
    assert all(flv.audio_codec(a.payload) == "aac" for a in audio)
    assert [a.timestamp for a in audio[:4]] == [0, 177, 200, 223]  # what ffmpeg's own FLV file has too
    assert r.of(PublishFinished) == [PublishFinished("FCUnpublish")]
    assert r.events[-1] == PublishFinished("FCUnpublish")


def test_server_replies_as_clients_expect() -> None:
    r = replay(capture("ffmpeg_h264_aac.bin"))
    messages = server_messages(r.sent)
    control_messages = [(m.type_id, m.payload) for m in messages if m.chunk_stream_id == 2]
    assert control_messages[:3] == [
        (5, (2_500_000).to_bytes(4, "big")),  # Window Acknowledgement Size
        (6, (2_500_000).to_bytes(4, "big") + b"\x02"),  # Set Peer Bandwidth, dynamic
        (1, (4096).to_bytes(4, "big")),  # Set Chunk Size
    ]
    assert (4, b"\x00\x00\x00\x00\x00\x01") in control_messages  # StreamBegin 1
    replies = commands(r.sent)
    assert replies[0][2][:2] == ["_result", 1.0]
    assert replies[0][2][3]["code"] == "NetConnection.Connect.Success"
    assert [c[2][:2] for c in replies[1:3]] == [
        ["_result", 2.0],
        ["_result", 3.0],
    ]  # releaseStream, FCPublish
    assert replies[3][2] == ["_result", 4.0, None, 1.0]  # createStream -> stream 1
    # onStatus must travel on the publishing stream id (GStreamer's rtmp2sink waits for it there)
    status = [c for c in replies if c[2][0] == "onStatus"]
    assert [(csid, sid, values[3]["code"]) for csid, sid, values in status] == [
        (5, 1, "NetStream.Publish.Start")
    ]
    assert any(c[2][0] == "onFCPublish" for c in replies)


def test_ffmpeg_type3_audio_headers_keep_timestamps() -> None:
    # Silent AAC frames have equal sizes, so ffmpeg starts most audio messages with a bare
    # type-3 header: each must add the previous delta (pyrtmp got this wrong).
    r = replay(capture("ffmpeg_silence_type3.bin"), split=333)
    audio = [a.timestamp for a in media(r.events, "audio")]
    assert len(audio) == 46
    steps = [b - a for a, b in zip(audio[1:], audio[2:])]
    assert set(steps) == {23, 24}
    assert abs(audio[-1] - audio[1] - 44 * 1024 / 44.1) <= 1


def test_ffmpeg_hevc_is_enhanced_rtmp_and_rejected_by_default() -> None:
    data = capture("ffmpeg_hevc_enhanced.bin")
    r = replay(data)
    assert r.of(UnsupportedCodec) == [
        UnsupportedCodec("video", "hevc", "unsupported video codec HEVC (H.265); this server accepts H.264 video with AAC audio")
    ]
    assert r.conn.closed and not media(r.events, "video")
    status = [c for c in commands(r.sent) if c[2][0] == "onStatus"]
    assert [s[2][3]["code"] for s in status] == ["NetStream.Publish.Start", "NetStream.Publish.Rejected"]
    assert status[1][1] == 1
    assert status[1][2][3]["description"] == "unsupported video codec HEVC (H.265); this server accepts H.264 video with AAC audio"

    accepting = replay(data, accepted_video_codecs=("h264", "hevc"))
    video = media(accepting.events, "video")
    assert video[0].payload[:5] == b"\x90hvc1" and flv.is_sequence_header("video", video[0].payload)
    assert {flv.video_codec(v.payload) for v in video} == {"hevc"}
    assert accepting.events[-1] == PublishFinished("FCUnpublish")


# --------------------------------------------------------------------------- crafted quirks


def test_type3_chunks_starting_new_messages() -> None:
    r = replay(capture("type3_new_messages.bin"), split=50)
    audio = media(r.events, "audio")
    assert [a.timestamp for a in audio] == [0, 23, 46, 69, 93, 117, 140, 163, 40, 80]
    assert [a.payload for a in audio] == [
        AAC_SEQ,
        *(aac_frame(i) for i in range(1, 6)),
        aac_frame(6, 300),
        aac_frame(7, 300),
        aac_frame(8),
        aac_frame(9),
    ]
    assert [v.payload for v in media(r.events, "video")] == [AVC_SEQ]


@pytest.mark.parametrize("name", ["extended_ts_repeated.bin", "extended_ts_not_repeated.bin"])
def test_extended_timestamps(name: str) -> None:
    big = 0x01000000
    r = replay(capture(name), split=97)
    video = media(r.events, "video")
    assert [v.timestamp for v in video] == [big, 2 * big, 2 * big + 100, 3 * big + 101, 4 * big + 102]
    assert [v.payload for v in video] == [AVC_SEQ, avc_frame(1, 300, key=True)] + [
        avc_frame(i, 290) for i in (2, 3, 4)
    ]
    assert [(a.timestamp, a.payload) for a in media(r.events, "audio")] == [
        (0xFFFFFF, AAC_SEQ),
        (0xFFFFFF + 23, aac_frame(1, 200)),
    ]


def test_chunk_size_changes_mid_stream() -> None:
    r = replay(capture("chunk_size_changes.bin"), split=1000)
    video = media(r.events, "video")
    assert [(v.timestamp, len(v.payload)) for v in video] == [
        (0, len(AVC_SEQ)),
        (0, 5000),
        (100, 700),
        (200, 700),
    ]
    assert video[3].payload == avc_frame(3, 700)


def test_abort_drops_the_partial_message() -> None:
    r = replay(capture("abort.bin"))
    assert [(v.timestamp, v.payload) for v in media(r.events, "video")] == [
        (0, AVC_SEQ),
        (200, avc_frame(2, 50, key=True)),
    ]


def test_enhanced_rtmp_fourcc_h264_is_accepted() -> None:
    r = replay(capture("enhanced_fourcc.bin"))
    assert not r.of(UnsupportedCodec) and not r.of(ConnectionFailed)
    assert [v.payload for v in media(r.events, "video")] == enhanced_video_payloads()


INVALID = {
    "invalid_bad_version.bin": "unsupported RTMP version byte 0x05 (expected 0x03)",
    "invalid_truncated_amf.bin": (
        "malformed AMF0 in command message: truncated AMF0 data: "
        "string length needs 2 bytes at offset 40, only 0 left"
    ),
    "invalid_absurd_chunk_size.bin": "peer set chunk size 2147483647, above the limit of 16777216",
    "invalid_tiny_chunk_size.bin": "peer set chunk size 1, below the minimum of 128",
    "invalid_oversize_message.bin": "message of 16777215 bytes on chunk stream 6 exceeds the limit of 8388608 bytes",
    "invalid_garbage.bin": "message of 14962087 bytes on chunk stream 56 exceeds the limit of 8388608 bytes",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_captures(name: str) -> None:
    r = replay(capture(name), split=100)
    assert r.events[-1] == ConnectionFailed(INVALID[name])
    assert r.conn.closed
    assert r.conn.receive_data(b"more") == []


# --------------------------------------------------------------------------- behaviour


def test_rejected_publish_gets_error_status_and_no_media() -> None:
    r = replay(capture("ffmpeg_h264_aac.bin"), accept=False)
    assert not media(r.events, "video") and not r.of(MetadataReceived)
    status = [c for c in commands(r.sent) if c[2][0] == "onStatus"]
    assert [(s[1], s[2][3]["level"], s[2][3]["code"]) for s in status] == [
        (1, "error", "NetStream.Publish.BadName")
    ]
    assert r.conn.closed


def test_messages_are_held_until_the_publish_is_answered() -> None:
    # Everything arrives in one read; media after "publish" waits for accept_publish().
    conn = RtmpServerConnection()
    events = conn.receive_data(capture("ffmpeg_h264_aac.bin"))
    assert [type(e) for e in events] == [PublishRequested]
    held = conn.accept_publish()
    assert len(media(held, "video")) == 12 and held[-1] == PublishFinished("FCUnpublish")
    assert conn.accept_publish() == []


def test_media_before_publish_is_dropped() -> None:
    data = (
        plain_handshake()
        + command("connect", 1.0, {"app": "live"})
        + command("createStream", 2.0, None)
        + raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=0)
        + metadata_message()
    )
    r = replay(data)
    assert r.events == []


def test_metadata_may_be_resent() -> None:
    data = publish_preamble() + metadata_message() + metadata_message() + metadata_message()
    assert len(replay(data).of(MetadataReceived)) == 3


def test_app_query_and_key_query_are_merged() -> None:
    r = replay(publish_preamble(key="abc?token=1&x=2", app="live?org=u1"))
    [request] = r.of(PublishRequested)
    assert (request.app, request.stream_key, request.query) == (
        "live",
        "abc",
        {"org": "u1", "token": "1", "x": "2"},
    )


def test_publish_request_repr_hides_the_key() -> None:
    [request] = replay(publish_preamble(key="supersecret?token=t0k")).of(PublishRequested)
    assert "supersecret" not in repr(request) and "t0k" not in repr(request)


@pytest.mark.parametrize(
    ("video", "audio", "expected"),
    [
        (
            b"\x12\x00\x00",
            None,
            UnsupportedCodec("video", "flv1", "unsupported video codec Sorenson H.263 (flv1); this server accepts H.264 video with AAC audio"),
        ),
        (
            None,
            b"\x2f\xff\xfb",
            UnsupportedCodec("audio", "mp3", "unsupported audio codec MP3; this server accepts H.264 video with AAC audio"),
        ),
        (
            b"\x94Opus",
            None,
            UnsupportedCodec("video", "unknown", "unsupported video codec 'unknown'; this server accepts H.264 video with AAC audio"),
        ),
    ],
)
def test_codec_check_on_first_media(
    video: bytes | None, audio: bytes | None, expected: UnsupportedCodec
) -> None:
    data = publish_preamble()
    if video is not None:
        data += raw_chunks(0, 6, video, type_id=9)
    if audio is not None:
        data += raw_chunks(0, 4, audio, type_id=8)
    r = replay(data + raw_chunks(0, 7, AVC_SEQ, type_id=9))
    assert r.of(UnsupportedCodec) == [expected] and not r.of(MediaReceived)
    assert r.conn.closed


def test_command_frames_do_not_decide_the_codec() -> None:
    data = (
        publish_preamble()
        + raw_chunks(0, 6, b"\xd1\x00", type_id=9)
        + raw_chunks(1, 6, AVC_SEQ, type_id=9, ts=1)
    )
    r = replay(data)
    assert len(media(r.events, "video")) == 2 and not r.of(UnsupportedCodec)


def test_ping_request_gets_pong() -> None:
    r = replay(publish_preamble() + control(4, b"\x00\x06\x00\x00\x12\x34"))
    assert (4, b"\x00\x07\x00\x00\x12\x34") in [(m.type_id, m.payload) for m in server_messages(r.sent)]


def test_acknowledgements_follow_the_client_window() -> None:
    data = publish_preamble() + control(5, (1000).to_bytes(4, "big"))
    data += b"".join(
        raw_chunks(1 if i else 0, 6, b"\x27\x01" + bytes(498), type_id=9, ts=i * 10) for i in range(10)
    )
    r = replay(data, split=700)
    acks = [int.from_bytes(m.payload, "big") for m in server_messages(r.sent) if m.type_id == 3]
    assert acks and all(b - a >= 1000 for a, b in zip([0, *acks], acks))
    assert acks[-1] <= len(data)


def test_acknowledgements_without_a_client_window_use_ours() -> None:
    # ffmpeg never sends Window Acknowledgement Size; we still ack per the window we announced.
    data = publish_preamble() + b"".join(
        raw_chunks(1 if i else 0, 6, b"\x27\x01" + bytes(998), type_id=9, ts=i * 10) for i in range(30)
    )
    r = replay(data, split=4096, window_ack_size=10_000)
    acks = [int.from_bytes(m.payload, "big") for m in server_messages(r.sent) if m.type_id == 3]
    assert acks and all(b - a >= 10_000 for a, b in zip([0, *acks], acks))
    assert len(data) - acks[-1] < 10_000 + 4096  # no ack missed (reads are 4096 bytes here)


def test_unknown_commands_get_an_error_only_when_they_expect_an_answer() -> None:
    r = replay(
        publish_preamble() + command("getStreamLength", 9.0, None, "x") + command("noAnswer", 0.0, None)
    )
    errors = [c[2] for c in commands(r.sent) if c[2][0] == "_error"]
    assert errors == [
        [
            "_error",
            9.0,
            None,
            {
                "level": "error",
                "code": "NetConnection.Call.Failed",
                "description": "Unknown command getStreamLength.",
            },
        ]
    ]
    assert not r.conn.closed


def test_play_is_refused() -> None:
    data = plain_handshake() + command("connect", 1.0, {"app": "live"}) + command("createStream", 2.0, None)
    r = replay(data + command("play", 3.0, None, "stream", msid=1, csid=8))
    assert r.events == [ConnectionFailed("client asked to play; this server only accepts publishing")]
    assert [c[2][3]["code"] for c in commands(r.sent) if c[2][0] == "onStatus"] == ["NetStream.Play.Failed"]


@pytest.mark.parametrize("name", ["FCUnpublish", "deleteStream", "closeStream"])
def test_publish_finished(name: str) -> None:
    args: tuple[Any, ...] = (None, 1.0) if name == "deleteStream" else (None, "testkey")
    data = (
        publish_preamble() + raw_chunks(0, 6, AVC_SEQ, type_id=9) + command(name, 0.0, *args, msid=1, csid=8)
    )
    data += raw_chunks(1, 6, avc_frame(1, 20, key=True), type_id=9, ts=40)  # after the end: dropped
    r = replay(data)
    assert r.events[-1] == PublishFinished(name) and len(media(r.events, "video")) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (plain_handshake() + command("createStream", 1.0, None), "command 'createStream' before connect"),
        (plain_handshake() + command("connect", 1.0, "live"), "connect without a command object"),
        (
            publish_preamble() + command("publish", 6.0, None, "again", msid=1, csid=8),
            "publish while a publish is already active on this connection",
        ),
        (
            plain_handshake() + command("connect", 1.0, {}) + command("publish", 2.0, None, "", msid=1),
            "publish without a stream key",
        ),
        (
            plain_handshake() + raw_chunks(0, 3, amf0.encode(1.0, "connect"), type_id=20, msid=0),
            "command message without a name and transaction id",
        ),
    ],
)
def test_refused_command_sequences(data: bytes, reason: str) -> None:
    assert replay(data).events[-1] == ConnectionFailed(reason)


def test_a_flood_of_tiny_messages_before_publishing_is_refused() -> None:
    """Zero-length messages cost one header byte each: 1,001 of them before a publish are refused;
    after an accepted publish they are media keep-alives and not counted."""
    flood = raw_chunks(0, 9, b"", type_id=4, msid=0) + basic_header(3, 9) * 1000
    r = replay(plain_handshake() + command("connect", 1.0, {"app": "live"}) + flood)
    assert r.events == [ConnectionFailed("client sent more than 1000 messages before publishing")]
    preamble = publish_preamble()
    r = replay(preamble + flood, split=[len(preamble), 4096])
    assert not r.of(ConnectionFailed) and r.of(PublishRequested)


@pytest.mark.parametrize(
    ("app", "description"),
    [
        ("lvie", "unknown application 'lvie'; publish to rtmp://<server>/live/<stream key>"),
        ("live/supersecretkey0123456789", "unknown application (not shown); publish to rtmp://<server>/live/<stream key>"),
    ],
)
def test_unknown_application_is_refused_at_connect(app: str, description: str) -> None:
    r = replay(publish_preamble(key="supersecretkey0123456789", app=app), accepted_apps=("live",))
    assert r.events == [ConnectionFailed(f"connect refused: {description}")]
    [reply] = [c for c in commands(r.sent) if c[2][0] == "_error"]
    assert reply[2][1] == 1.0 and reply[2][3] == {
        "level": "error",
        "code": "NetConnection.Connect.Rejected",
        "description": description,
    }
    assert b"supersecret" not in r.sent
    assert replay(publish_preamble(app="live?token=1"), accepted_apps=("live",)).of(PublishRequested)


def test_aggregate_messages_are_split() -> None:
    def tag(type_id: int, ts: int, body: bytes) -> bytes:
        return flv.flv_tag(type_id, ts, body)

    aggregate = tag(9, 1000, AVC_SEQ) + tag(8, 1000, AAC_SEQ) + tag(9, 1040, avc_frame(1, 30, key=True))
    r = replay(publish_preamble() + raw_chunks(0, 6, aggregate, type_id=22, ts=5000))
    assert [(m.kind, m.timestamp) for m in r.of(MediaReceived)] == [
        ("video", 5000),
        ("audio", 5000),
        ("video", 5040),
    ]


def test_amf3_command_and_data_messages() -> None:
    data = plain_handshake() + raw_chunks(
        0, 3, b"\x00" + amf0.encode("connect", 1.0, {"app": "x"}), type_id=17, msid=0
    )
    data += command("createStream", 2.0, None) + command("publish", 3.0, None, "k", msid=1, csid=8)
    data += raw_chunks(0, 5, b"\x00" + amf0.encode("onMetaData", {"width": 1.0}), type_id=15, msid=1)
    assert replay(data).of(MetadataReceived) == [MetadataReceived({"width": 1.0})]


def test_core_modules_do_no_io() -> None:
    root = Path(__file__).resolve().parents[3] / "ingest"  # formats/ (AMF0, FLV): tests/formats/test_purity.py
    for path in [root / "rtmp" / n for n in ("chunk.py", "handshake.py", "protocol.py")]:
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & {"asyncio", "socket", "selectors", "trio"}, path
