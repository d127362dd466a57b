"""Build, record and replay the RTMP byte captures under ``captures/``.

Crafted captures are assembled here byte by byte (chunk headers written by hand, not by
``ChunkWriter``) so that they test the reader independently; they are deterministic and a
test checks the committed files still match. Recorded captures come from the real ffmpeg
publishing through a tap that saves what the client sent.

Regenerate with:  .venv/bin/python tests/ingest/rtmp/rtmp_captures.py [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # when run as a script
    sys.path.insert(0, str(ROOT))

from formats import amf0  # noqa: E402
from ingest.rtmp.protocol import (  # noqa: E402
    Event,
    PublishRequested,
    RtmpServerConnection,
)

CAPTURES = Path(__file__).resolve().parent / "captures"

# --------------------------------------------------------------------------- handshake

FP_KEY = b"Genuine Adobe Flash Player 001" + bytes.fromhex(
    "F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE"
)
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + FP_KEY[30:]


def _librtmp_digest_pos(block: bytes | bytearray, schema: int) -> int:
    # librtmp GetDigestOffset1 (schema 0, digest in the first half) / GetDigestOffset2 (schema 1)
    if schema == 0:
        return (block[8] + block[9] + block[10] + block[11]) % 728 + 12
    return (block[772] + block[773] + block[774] + block[775]) % 728 + 776


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def librtmp_c1(schema: int, seed: int, version: bytes = b"\x80\x00\x07\x02") -> bytes:
    """A Flash-Player-9-style C1 as librtmp (and OBS) build it, deterministic per seed."""
    rnd = random.Random(seed)
    block = bytearray(b"\0\0\0\0" + version + rnd.randbytes(1528))
    pos = _librtmp_digest_pos(block, schema)
    digest = _hmac(FP_KEY[:30], bytes(block[:pos] + block[pos + 32 :]))
    block[pos : pos + 32] = digest
    return bytes(block)


def verify_server_response(c1: bytes, s1: bytes, s2: bytes, schema: int) -> None:
    """What librtmp's FP9 handshake checks in S1/S2; raises AssertionError otherwise."""
    pos = _librtmp_digest_pos(s1, schema)
    expected = _hmac(FMS_KEY[:36], s1[:pos] + s1[pos + 32 :])
    assert s1[pos : pos + 32] == expected, "S1 digest does not verify with the FMS key"
    c1_digest = c1[_librtmp_digest_pos(c1, schema) :][:32]
    key = _hmac(FMS_KEY, c1_digest)
    assert s2[-32:] == _hmac(key, s2[:-32]), "S2 is not signed from the C1 digest"


def plain_handshake() -> bytes:
    """C0 + a plain C1 (zero version field) + C2."""
    return b"\x03" + bytes(1536) + bytes(1536)


# --------------------------------------------------------------------------- chunks


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def raw_chunks(
    fmt: int,
    csid: int,
    payload: bytes,
    *,
    chunk_size: int = 128,
    ts: int = 0,
    type_id: int | None = None,
    msid: int = 1,
    length: int | None = None,
    repeat_extended: bool = True,
    continuation_ext: int | None = None,
) -> bytes:
    """One message as chunks: a fmt-0..3 header, then type-3 continuations."""
    length = len(payload) if length is None else length
    extended = ts >= 0xFFFFFF
    out = bytearray(basic_header(fmt, csid))
    if fmt <= 2:
        out += (0xFFFFFF if extended else ts).to_bytes(3, "big")
    if fmt <= 1:
        assert type_id is not None
        out += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        out += msid.to_bytes(4, "little")
    # On a type-3 header the caller says whether the previous header was extended.
    ext_value = ts if fmt <= 2 else continuation_ext
    if fmt <= 2 and extended:
        out += ts.to_bytes(4, "big")
    elif fmt == 3 and continuation_ext is not None and repeat_extended:
        out += continuation_ext.to_bytes(4, "big")
    out += payload[:chunk_size]
    for offset in range(chunk_size, len(payload), chunk_size):
        out += basic_header(3, csid)
        if repeat_extended and ext_value is not None and (ext_value >= 0xFFFFFF or fmt == 3):
            out += ext_value.to_bytes(4, "big")
        out += payload[offset : offset + chunk_size]
    return bytes(out)


def command(name: str, txn: float, *args: Any, msid: int = 0, csid: int = 3) -> bytes:
    body = amf0.encode(name, txn, *args)
    return raw_chunks(0, csid, body, type_id=20, msid=msid)


def control(type_id: int, payload: bytes) -> bytes:
    return raw_chunks(0, 2, payload, type_id=type_id, msid=0)


def publish_preamble(key: str = "testkey?x=1", app: str = "live") -> bytes:
    """Plain handshake, connect, createStream and publish (stream id 1), as ffmpeg orders them."""
    return (
        plain_handshake()
        + command("connect", 1.0, {"app": app, "type": "nonprivate", "tcUrl": f"rtmp://127.0.0.1/{app}"})
        + command("releaseStream", 2.0, None, key)
        + command("FCPublish", 3.0, None, key)
        + command("createStream", 4.0, None)
        + command("publish", 5.0, None, key, "live", msid=1, csid=8)
    )


AAC_SEQ = b"\xaf\x00\x12\x10"
AVC_SEQ = b"\x17\x00\x00\x00\x00" + b"\x01\x64\x00\x0c\xff\xe1\x00\x04gd\x00\x0c\x01\x00\x04h\xee\x3c\x80"


def aac_frame(n: int, size: int = 10) -> bytes:
    return b"\xaf\x01" + bytes([n & 0xFF]) * (size - 2)


def avc_frame(n: int, size: int, key: bool = False) -> bytes:
    return (b"\x17\x01" if key else b"\x27\x01") + b"\x00\x00\x00" + bytes([n & 0xFF]) * (size - 5)


def metadata_message() -> bytes:
    meta = amf0.ECMAArray(width=160.0, height=120.0, videocodecid=7.0, audiocodecid=10.0, framerate=10.0)
    return raw_chunks(0, 5, amf0.encode("@setDataFrame", "onMetaData", meta), type_id=18, msid=1)


# --------------------------------------------------------------------------- crafted captures


def build_digest_handshake(schema: int) -> bytes:
    return b"\x03" + librtmp_c1(schema, seed=schema + 1) + bytes(1536)


def build_type3_new_messages() -> bytes:
    """ffmpeg-style audio: same-size frames with the same delta reuse a bare type-3 header."""
    out = bytearray(publish_preamble() + metadata_message())
    # audio on csid 4; expected timestamps are listed in the test
    out += raw_chunks(0, 4, AAC_SEQ, type_id=8, ts=0)
    out += raw_chunks(1, 4, aac_frame(1), type_id=8, ts=23)  # 23
    out += raw_chunks(3, 4, aac_frame(2))  # new message, delta 23 -> 46
    out += raw_chunks(3, 4, aac_frame(3))  # 69
    out += raw_chunks(2, 4, aac_frame(4), ts=24)  # 93
    out += raw_chunks(3, 4, aac_frame(5))  # 117
    # a 300-byte frame split in 3 chunks, video interleaved between its chunks
    long_frame = aac_frame(6, 300)
    first = raw_chunks(1, 4, long_frame, type_id=8, ts=23)  # 140
    header_len = 1 + 7
    video = raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=0)
    out += first[: header_len + 128] + video + first[header_len + 128 :]
    out += raw_chunks(3, 4, aac_frame(7, 300))  # new 300-byte message, delta 23 -> 163
    # type 3 after type 0: the delta is the type-0 timestamp (spec, ffmpeg's reader)
    out += raw_chunks(0, 7, aac_frame(8), type_id=8, ts=40)  # 40 on csid 7
    out += raw_chunks(3, 7, aac_frame(9))  # 80
    return bytes(out)


def build_extended_timestamps(repeat: bool) -> bytes:
    """Video with timestamps past 0xFFFFFF, messages spanning several chunks."""
    big = 0x01000000  # 16777216 ms, about 4.6 h
    out = bytearray(publish_preamble())
    out += raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=big, repeat_extended=repeat)
    out += raw_chunks(1, 6, avc_frame(1, 300, key=True), type_id=9, ts=big, repeat_extended=repeat)  # 2*big
    out += raw_chunks(1, 6, avc_frame(2, 290), type_id=9, ts=100, repeat_extended=repeat)  # 2*big+100
    out += raw_chunks(2, 6, avc_frame(3, 290), ts=0x01000001, repeat_extended=repeat)  # 3*big+101
    # type 3 starting a message after an extended delta: the extended field comes again
    out += raw_chunks(
        3, 6, avc_frame(4, 290), continuation_ext=0x01000001, repeat_extended=repeat
    )  # 4*big+102
    out += raw_chunks(0, 4, AAC_SEQ, type_id=8, ts=0xFFFFFF, repeat_extended=repeat)  # exactly 0xFFFFFF
    out += raw_chunks(0, 4, aac_frame(1, 200), type_id=8, ts=0xFFFFFF + 23, repeat_extended=repeat)
    return bytes(out)


def build_chunk_size_changes() -> bytes:
    out = bytearray(publish_preamble())
    out += control(1, (4096).to_bytes(4, "big"))
    out += raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=0, chunk_size=4096)
    out += raw_chunks(1, 6, avc_frame(1, 5000, key=True), type_id=9, ts=0, chunk_size=4096)  # 2 chunks
    out += control(1, (200).to_bytes(4, "big"))
    out += raw_chunks(1, 6, avc_frame(2, 700), type_id=9, ts=100, chunk_size=200)  # 4 chunks
    out += control(1, (128).to_bytes(4, "big"))  # the smallest chunk size the server accepts
    out += raw_chunks(2, 6, avc_frame(3, 700), ts=100, chunk_size=128)  # 6 chunks
    return bytes(out)


def build_tiny_chunk_size() -> bytes:
    """The memory attack of issue 17: Set Chunk Size 1, then a big message in 1-byte chunks."""
    out = bytearray(plain_handshake())
    out += control(1, (1).to_bytes(4, "big"))
    out += raw_chunks(0, 6, bytes(2000), type_id=9, ts=0, chunk_size=1)
    return bytes(out)


def build_abort() -> bytes:
    out = bytearray(publish_preamble())
    out += raw_chunks(0, 6, AVC_SEQ, type_id=9, ts=0)
    partial = raw_chunks(0, 6, avc_frame(1, 1000, key=True), type_id=9, ts=100)
    out += partial[: 12 + 128 + 1 + 128]  # two chunks of a 1000-byte message
    out += control(2, (6).to_bytes(4, "big"))  # Abort chunk stream 6
    out += raw_chunks(0, 6, avc_frame(2, 50, key=True), type_id=9, ts=200)
    return bytes(out)


def enhanced_video_payloads() -> list[bytes]:
    """Enhanced-RTMP video bodies as newer OBS/ffmpeg send them, with FourCC avc1."""
    avcc = AVC_SEQ[5:]
    color_info = amf0.encode("colorInfo", {"colorConfig": {"bitDepth": 8.0}})
    return [
        b"\x90avc1" + avcc,  # key frame, SequenceStart
        b"\x84avc1" + color_info,  # Metadata packet (frame type ignored)
        b"\x91avc1\x00\x00\x00" + b"\x00\x00\x00\x05" + b"\x65" * 5,  # key, CodedFrames
        b"\xa3avc1" + b"\x00\x00\x00\x05" + b"\x41" * 5,  # inter, CodedFramesX
        b"\xa7\x02\x00\x01\x02\x01avc1\x00\x00\x00" + b"\x41" * 9,  # ModEx (nano offset) then CodedFrames
        b"\xd1\x00",  # command frame: no FourCC at all
        b"\x96\x00avc1\x00\x00\x00\x0a" + b"\x91" * 10,  # Multitrack, OneTrack, SequenceStart
    ]


def build_enhanced_fourcc() -> bytes:
    out = bytearray(publish_preamble())
    out += raw_chunks(0, 4, AAC_SEQ, type_id=8, ts=0)
    for i, body in enumerate(enhanced_video_payloads()):
        out += raw_chunks(0, 6, body, type_id=9, ts=i * 100)
    return bytes(out)


def build_bad_version() -> bytes:
    return b"\x05" + bytes(1536)


def build_truncated_amf() -> bytes:
    body = amf0.encode("connect", 1.0, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"})
    return plain_handshake() + raw_chunks(0, 3, body[:40], type_id=20, msid=0)


def build_absurd_chunk_size() -> bytes:
    return publish_preamble() + control(1, (0x7FFFFFFF).to_bytes(4, "big"))


def build_oversize_message() -> bytes:
    header = basic_header(0, 6) + (0).to_bytes(3, "big") + (0xFFFFFF).to_bytes(3, "big") + b"\x09"
    return publish_preamble() + header + (1).to_bytes(4, "little") + bytes(128)


def build_garbage_after_handshake() -> bytes:
    return plain_handshake() + random.Random(7).randbytes(512)


CRAFTED: dict[str, Callable[[], bytes]] = {
    "digest_c1_schema0.bin": lambda: build_digest_handshake(0),
    "digest_c1_schema1.bin": lambda: build_digest_handshake(1),
    "type3_new_messages.bin": build_type3_new_messages,
    "extended_ts_repeated.bin": lambda: build_extended_timestamps(True),
    "extended_ts_not_repeated.bin": lambda: build_extended_timestamps(False),
    "chunk_size_changes.bin": build_chunk_size_changes,
    "abort.bin": build_abort,
    "enhanced_fourcc.bin": build_enhanced_fourcc,
    "invalid_bad_version.bin": build_bad_version,
    "invalid_truncated_amf.bin": build_truncated_amf,
    "invalid_absurd_chunk_size.bin": build_absurd_chunk_size,
    "invalid_tiny_chunk_size.bin": build_tiny_chunk_size,
    "invalid_oversize_message.bin": build_oversize_message,
    "invalid_garbage.bin": build_garbage_after_handshake,
}


# --------------------------------------------------------------------------- replay


@dataclass
class Replay:
    conn: RtmpServerConnection
    events: list[Event] = field(default_factory=list)
    sent: bytes = b""

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def replay(
    data: bytes,
    *,
    split: int | Iterable[int] = 4096,
    accept: bool = True,
    **conn_kwargs: Any,
) -> Replay:
    """Feed ``data`` to a fresh connection in pieces, accepting the publish when asked."""
    conn = RtmpServerConnection(random_bytes=lambda n: bytes(n), **conn_kwargs)
    result = Replay(conn)
    sizes = iter([split] if isinstance(split, int) else split)
    size = next(sizes)
    pos = 0
    sent = bytearray()
    while pos < len(data):
        piece = data[pos : pos + size]
        pos += len(piece)
        size = next(sizes, size)
        for event in conn.receive_data(piece):
            result.events.append(event)
            if isinstance(event, PublishRequested):
                if accept:
                    result.events.extend(conn.accept_publish())
                else:
                    conn.reject_publish("NetStream.Publish.BadName", "bad key")
        sent += conn.data_to_send()
    result.sent = bytes(sent)
    return result


# --------------------------------------------------------------------------- recording


SINE = "sine=f=440:sample_rate=44100"
SILENCE = "anullsrc=r=44100:cl=mono"
H264_AAC = ["-c:v", "libx264", "-g", "10", "-c:a", "aac", "-t", "1"]

#: name -> (audio source, encoder arguments)
RECORDED: dict[str, tuple[str, list[str]]] = {
    # The command line from the task brief: what real ffmpeg sends when publishing.
    "ffmpeg_h264_aac.bin": (SINE, H264_AAC),
    # Silent AAC frames all have the same size, so ffmpeg starts most audio messages with a
    # bare type-3 chunk header (the case pyrtmp got wrong).
    "ffmpeg_silence_type3.bin": (SILENCE, H264_AAC),
    # ffmpeg >= 6.1 publishes HEVC with Enhanced-RTMP FourCC headers.
    "ffmpeg_hevc_enhanced.bin": (
        SINE,
        ["-c:v", "libx265", "-x265-params", "log-level=error", "-g", "5", "-c:a", "aac", "-t", "0.5"],
    ),
}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def record_ffmpeg(out_path: Path, audio_source: str, codec_args: list[str]) -> int:
    """Run ffmpeg against our server through a tap; save the client->server bytes."""
    from ingest.rtmp.server import RtmpServer

    class Sink:
        async def on_metadata(self, metadata: dict[str, Any]) -> None: ...
        def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None: ...
        async def close(self, reason: str) -> None: ...

    class Publisher:
        async def start_publish(
            self, *, protocol: str, app: str, stream_key: str, remote_address: str, terminate: Any = None
        ) -> Sink:
            return Sink()

    server = RtmpServer("127.0.0.1", 0, Publisher(), accepted_video_codecs=("h264", "hevc"))
    await server.start()
    recorded = bytearray()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: bytearray | None) -> None:
        try:
            while data := await reader.read(65536):
                if tap is not None:
                    tap += data
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def on_client(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(
            pump(c_reader, s_writer, recorded), pump(s_reader, c_writer, None), return_exceptions=True
        )

    tap = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = tap.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=10",
        "-f",
        "lavfi",
        "-i",
        audio_source,
        *codec_args,
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/testkey?x=1",
    )
    rc = await proc.wait()
    await asyncio.sleep(0.3)
    tap.close()
    await server.close()
    out_path.write_bytes(bytes(recorded))
    return rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="store_true", help="also re-record the ffmpeg captures")
    args = parser.parse_args()
    CAPTURES.mkdir(exist_ok=True)
    for name, build in CRAFTED.items():
        (CAPTURES / name).write_bytes(build())
        print(f"wrote {name}")
    if args.record:
        for name, (audio_source, codec_args) in RECORDED.items():
            rc = asyncio.run(record_ffmpeg(CAPTURES / name, audio_source, codec_args))
            print(f"recorded {name}: {(CAPTURES / name).stat().st_size} bytes, ffmpeg exit {rc}")


if __name__ == "__main__":
    main()
