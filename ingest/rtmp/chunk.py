"""RTMP chunk stream: demuxer (bytes -> messages) and muxer (messages -> bytes).

Pure and incremental: ``ChunkReader.feed`` takes whatever the socket produced and returns
the messages completed so far. The reader slices a bytearray buffer instead of looping
per byte, since a server takes several 6 Mbps streams per core.

Interoperability choices, all observed in real clients:

* A type-3 chunk that starts a new message reuses the previous timestamp delta
  (ffmpeg does this for audio); after a type-0 header that delta is the type-0 timestamp,
  as the spec and ffmpeg's own reader have it.
* Extended timestamps on type-3 chunks: librtmp, ffmpeg and FMS repeat them, some other
  encoders do not. The first time it matters, the reader peeks at the next four bytes and
  takes them as a repetition if they equal the extended value (or the absolute timestamp),
  as SRS does; the answer then holds for the rest of the connection, so later payloads
  that happen to start with those bytes are not misread.
* Set Chunk Size and Abort are applied inside the reader the moment they complete, because
  the chunks that follow in the same buffer already depend on them.

Memory: a peer must not make us hold much more memory than it sent, before or after it
authenticated. A message spread over several chunks grows in one ``bytearray`` (never a
``bytes`` object per chunk), the chunk size may not go below ``min_chunk_size`` (so chunk
headers cannot outnumber payload bytes), and what the reader holds (unparsed input plus
incomplete messages) is measured as allocated memory (``sys.getsizeof``), not payload bytes,
against ``memory_limit``, which the protocol raises once a publish is accepted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ChunkLimits",
    "ChunkReader",
    "ChunkWriter",
    "Message",
    "ProtocolError",
    "MSG_SET_CHUNK_SIZE",
    "MSG_ABORT",
    "MSG_ACK",
    "MSG_USER_CONTROL",
    "MSG_WINDOW_ACK_SIZE",
    "MSG_SET_PEER_BANDWIDTH",
    "MSG_AUDIO",
    "MSG_VIDEO",
    "MSG_DATA_AMF3",
    "MSG_SHARED_OBJECT_AMF3",
    "MSG_COMMAND_AMF3",
    "MSG_DATA_AMF0",
    "MSG_SHARED_OBJECT_AMF0",
    "MSG_COMMAND_AMF0",
    "MSG_AGGREGATE",
]

MSG_SET_CHUNK_SIZE: Final = 1
MSG_ABORT: Final = 2
MSG_ACK: Final = 3
MSG_USER_CONTROL: Final = 4
MSG_WINDOW_ACK_SIZE: Final = 5
MSG_SET_PEER_BANDWIDTH: Final = 6
MSG_AUDIO: Final = 8
MSG_VIDEO: Final = 9
MSG_DATA_AMF3: Final = 15
MSG_SHARED_OBJECT_AMF3: Final = 16
MSG_COMMAND_AMF3: Final = 17
MSG_DATA_AMF0: Final = 18
MSG_SHARED_OBJECT_AMF0: Final = 19
MSG_COMMAND_AMF0: Final = 20
MSG_AGGREGATE: Final = 22

DEFAULT_CHUNK_SIZE: Final = 128
_MESSAGE_HEADER_SIZE: Final = (11, 7, 3, 0)
_MAX_TS: Final = 0xFFFFFFFF
_EXTENDED: Final = 0xFFFFFF
#: what one chunk stream's state costs besides its buffer (object, dict slot), counted as memory
_STREAM_OVERHEAD: Final = 200
#: an emptied input buffer larger than this is replaced by a fresh one, so a big chunk's
#: allocation does not outlive it
_KEEP_INPUT_ALLOCATION: Final = 256 * 1024


class ProtocolError(Exception):
    """The peer broke the RTMP chunk protocol or a configured limit; close the connection."""


@dataclass(slots=True)
class Message:
    """One RTMP message. ``timestamp`` is absolute (ms, 32-bit wrapping)."""

    type_id: int
    payload: bytes
    timestamp: int = 0
    stream_id: int = 0
    chunk_stream_id: int = 3


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """Bounds on what a peer may make us buffer. The spec allows chunk sizes up to
    0x7FFFFFFF and 16 MiB messages; nobody legitimate comes close."""

    max_chunk_size: int = 16 * 1024 * 1024
    #: Smaller chunks only multiply headers and per-chunk work: the spec's default is 128 and
    #: encoders raise it (ffmpeg, OBS: 4096); nginx-rtmp refuses below 128 too.
    min_chunk_size: int = 128
    #: the 24-bit length field allows just under 16 MiB; no sane video frame is near 8 MiB
    max_message_size: int = 8 * 1024 * 1024
    max_chunk_streams: int = 64
    #: memory (allocated bytes) the reader may hold for one connection once its publish is
    #: accepted: unparsed input plus incomplete messages over all chunk streams
    max_buffered_bytes: int = 32 * 1024 * 1024
    #: the same before that (handshake, connect, publish: commands of a few hundred bytes)
    max_buffered_bytes_before_publish: int = 512 * 1024


@dataclass(slots=True)
class _InStream:
    timestamp: int = 0  # absolute timestamp of the current/last message
    ts_field: int = 0  # last timestamp field value (delta, or absolute for type 0)
    extended: bool = False  # last header carried an extended timestamp
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    received: int = 0
    in_progress: bool = False
    #: the incomplete message's bytes so far (None when it fits one chunk or none is open)
    data: bytearray | None = None
    #: allocated size of ``data``, as counted in the reader's memory
    allocated: int = 0


class ChunkReader:
    """Incremental chunk stream demuxer.

    ``memory_limit`` (default ``limits.max_buffered_bytes``) bounds ``memory``; a peer that
    makes the reader hold more gets a ProtocolError.
    """

    def __init__(self, limits: ChunkLimits | None = None) -> None:
        self.limits = limits or ChunkLimits()
        self.memory_limit = self.limits.max_buffered_bytes
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._buf = bytearray()
        self._streams: dict[int, _InStream] = {}
        self._held = 0  # allocated bytes of the incomplete messages, plus each stream's overhead
        # Whether this peer repeats extended timestamps on type-3 chunks; learnt once.
        self._repeats_extended: bool | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed into complete chunks."""
        return len(self._buf)

    @property
    def memory(self) -> int:
        """Allocated bytes held for this connection: unparsed input and incomplete messages."""
        return sys.getsizeof(self._buf) + self._held

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add received bytes; return the messages they complete. Raises ProtocolError."""
        buf = self._buf
        buf += data
        messages: list[Message] = []
        pos = 0
        try:
            pos = self._parse(buf, messages)
        finally:
            if pos:
                del buf[:pos]
                if not buf and sys.getsizeof(buf) > _KEEP_INPUT_ALLOCATION:
                    self._buf = bytearray()
        self._check_memory()
        return messages

    def _check_memory(self) -> None:
        memory = self.memory
        if memory > self.memory_limit:
            raise ProtocolError(
                f"peer made the connection buffer {memory} bytes, above the limit of {self.memory_limit}"
            )

    def _parse(self, buf: bytearray, messages: list[Message]) -> int:
        n = len(buf)
        pos = 0
        streams = self._streams
        limits = self.limits
        input_memory = sys.getsizeof(buf)
        if input_memory + self._held > self.memory_limit:
            self._check_memory()
        with memoryview(buf) as view:
            while pos < n:
                b0 = buf[pos]
                fmt = b0 >> 6
                csid = b0 & 0x3F
                p = pos + 1
                if csid == 0:
                    if p + 1 > n:
                        break
                    csid = buf[p] + 64
                    p += 1
                elif csid == 1:
                    if p + 2 > n:
                        break
                    csid = buf[p] + (buf[p + 1] << 8) + 64
                    p += 2
                mh = _MESSAGE_HEADER_SIZE[fmt]
                if p + mh > n:
                    break

                st = streams.get(csid)
                if st is None:
                    if fmt > 1:
                        raise ProtocolError(
                            f"chunk stream {csid} starts with a type-{fmt} header "
                            "(its first chunk must carry a full message header)"
                        )
                    if len(streams) >= limits.max_chunk_streams:
                        raise ProtocolError(f"too many chunk streams (limit {limits.max_chunk_streams})")
                    st = _InStream()
                    streams[csid] = st
                    self._held += _STREAM_OVERHEAD
                if fmt != 3 and st.in_progress:
                    raise ProtocolError(
                        f"type-{fmt} header on chunk stream {csid} while a message of "
                        f"{st.length} bytes was incomplete ({st.received} received)"
                    )

                # Parse the header into locals; state only changes once the whole chunk is here.
                length = st.length
                type_id = st.type_id
                stream_id = st.stream_id
                if fmt != 3:
                    ts_field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                    if fmt <= 1:
                        length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                        type_id = buf[p + 6]
                        if fmt == 0:
                            stream_id = int.from_bytes(view[p + 7 : p + 11], "little")
                    p += mh
                    extended = ts_field == _EXTENDED
                    if extended:
                        if p + 4 > n:
                            break
                        ts_field = int.from_bytes(view[p : p + 4], "big")
                        p += 4
                else:
                    ts_field = st.ts_field
                    extended = st.extended
                    if extended:
                        if p + 4 > n:
                            break
                        if self._repeats_extended is None:
                            repeated = int.from_bytes(view[p : p + 4], "big")
                            self._repeats_extended = repeated == ts_field or (
                                st.in_progress and repeated == st.timestamp
                            )
                        if self._repeats_extended:
                            p += 4

                new_message = not st.in_progress
                if new_message and length > limits.max_message_size:
                    raise ProtocolError(
                        f"message of {length} bytes on chunk stream {csid} exceeds the "
                        f"limit of {limits.max_message_size} bytes"
                    )
                received = 0 if new_message else st.received
                take = min(length - received, self.chunk_size)
                if p + take > n:
                    break

                # Commit.
                if new_message:
                    if fmt == 0:
                        st.timestamp = ts_field
                    else:
                        st.timestamp = (st.timestamp + ts_field) & _MAX_TS
                    st.ts_field = ts_field
                    st.extended = extended
                    st.length = length
                    st.type_id = type_id
                    st.stream_id = stream_id
                    st.in_progress = True
                    st.received = 0
                pos = p + take
                if take == length:  # the whole message in one chunk: no accumulation
                    payload = bytes(view[p:pos])
                else:
                    data = st.data
                    if data is None:
                        data = st.data = bytearray(view[p:pos])
                    else:
                        data += view[p:pos]
                    allocated = sys.getsizeof(data)
                    self._held += allocated - st.allocated
                    st.allocated = allocated
                    st.received += take
                    if st.received < length:
                        if input_memory + self._held > self.memory_limit:
                            self._check_memory()
                        continue
                    payload = bytes(data)
                    self._release(st)
                st.received = 0
                st.in_progress = False
                message = Message(type_id, payload, st.timestamp, stream_id, csid)
                if type_id == MSG_SET_CHUNK_SIZE:
                    self._apply_chunk_size(payload)
                elif type_id == MSG_ABORT:
                    self._apply_abort(payload)
                messages.append(message)
        return pos

    def _release(self, st: _InStream) -> None:
        self._held -= st.allocated
        st.data = None
        st.allocated = 0

    def _apply_chunk_size(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ProtocolError(f"Set Chunk Size message with {len(payload)} bytes (needs 4)")
        size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        if size < self.limits.min_chunk_size:
            raise ProtocolError(
                f"peer set chunk size {size}, below the minimum of {self.limits.min_chunk_size}"
            )
        if size > self.limits.max_chunk_size:
            raise ProtocolError(
                f"peer set chunk size {size}, above the limit of {self.limits.max_chunk_size}"
            )
        self.chunk_size = size

    def _apply_abort(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ProtocolError(f"Abort message with {len(payload)} bytes (needs 4)")
        st = self._streams.get(int.from_bytes(payload[:4], "big"))
        if st is not None and st.in_progress:
            self._release(st)
            st.received = 0
            st.in_progress = False


@dataclass(slots=True)
class _OutStream:
    timestamp: int
    ts_field: int
    length: int
    type_id: int
    stream_id: int


class ChunkWriter:
    """Chunk stream muxer choosing the smallest header type, as ffmpeg and librtmp do.

    Writing a Set Chunk Size message switches the writer to the new size after that message.
    ``repeat_extended_timestamp=False`` imitates encoders that omit the extended timestamp on
    type-3 chunks (only useful for testing readers).
    """

    def __init__(
        self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, repeat_extended_timestamp: bool = True
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk size must be positive")
        self.chunk_size = chunk_size
        self.repeat_extended_timestamp = repeat_extended_timestamp
        self._streams: dict[int, _OutStream] = {}

    def write(self, message: Message) -> bytes:
        """Serialise one message into chunks."""
        csid = message.chunk_stream_id
        if not 2 <= csid <= 65599:
            raise ValueError(f"chunk stream id {csid} out of range 2..65599")
        payload = message.payload
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"message of {length} bytes is too long for RTMP")
        timestamp = message.timestamp & _MAX_TS
        st = self._streams.get(csid)
        if st is None or message.stream_id != st.stream_id or timestamp < st.timestamp:
            fmt = 0
            ts_field = timestamp
        else:
            ts_field = timestamp - st.timestamp
            if message.type_id != st.type_id or length != st.length:
                fmt = 1
            elif ts_field != st.ts_field:
                fmt = 2
            else:
                fmt = 3
        extended = ts_field >= _EXTENDED
        self._streams[csid] = _OutStream(timestamp, ts_field, length, message.type_id, message.stream_id)

        out = bytearray(_basic_header(fmt, csid))
        if fmt != 3:
            out += (_EXTENDED if extended else ts_field).to_bytes(3, "big")
            if fmt <= 1:
                out += length.to_bytes(3, "big")
                out.append(message.type_id)
                if fmt == 0:
                    out += (message.stream_id & 0xFFFFFFFF).to_bytes(4, "little")
        ext_bytes = ts_field.to_bytes(4, "big") if extended else b""
        if fmt != 3 or self.repeat_extended_timestamp:
            out += ext_bytes
        continuation = _basic_header(3, csid)
        if extended and self.repeat_extended_timestamp:
            continuation += ext_bytes
        size = self.chunk_size
        out += payload[:size]
        for offset in range(size, length, size):
            out += continuation
            out += payload[offset : offset + size]

        if message.type_id == MSG_SET_CHUNK_SIZE and length >= 4:
            new_size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if new_size >= 1:
                self.chunk_size = new_size
        return bytes(out)


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes((fmt << 6 | 1, rest & 0xFF, rest >> 8))
