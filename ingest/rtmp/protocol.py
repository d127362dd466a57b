"""Sans-I/O RTMP server connection for publishers (ingest only).

Feed it received bytes, act on the events it returns, send what ``data_to_send`` gives.
It never touches sockets or the event loop, so every client quirk can be replayed from a
byte capture in a unit test.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import parse_qsl

from formats import flv
from ingest.publishing import printable_app
from formats import amf0
from ingest.rtmp.chunk import (
    MSG_ACK,
    MSG_AGGREGATE,
    MSG_AUDIO,
    MSG_COMMAND_AMF0,
    MSG_COMMAND_AMF3,
    MSG_DATA_AMF0,
    MSG_DATA_AMF3,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkLimits,
    ChunkReader,
    ChunkWriter,
    Message,
    ProtocolError,
)
from ingest.rtmp.handshake import HandshakeError, ServerHandshake

__all__ = [
    "ConnectionFailed",
    "Event",
    "MediaReceived",
    "MetadataReceived",
    "PublishFinished",
    "PublishRequested",
    "RtmpServerConnection",
    "UnsupportedCodec",
]

# Chunk stream ids for what we send, as nginx-rtmp and FMS use them.
_CSID_CONTROL: Final = 2
_CSID_COMMAND: Final = 3
_CSID_STREAM_STATUS: Final = 5

_USER_CONTROL_STREAM_BEGIN: Final = 0
_USER_CONTROL_PING_REQUEST: Final = 6
_USER_CONTROL_PING_RESPONSE: Final = 7

_MAX_CREATED_STREAMS: Final = 16
#: How codecs are named to people (encoder logs), by the names ``formats.flv`` gives them.
_CODEC_NAMES: Final = {
    "h264": "H.264",
    "hevc": "HEVC (H.265)",
    "av1": "AV1",
    "vp9": "VP9",
    "vp8": "VP8",
    "flv1": "Sorenson H.263 (flv1)",
    "vp6f": "VP6",
    "vp6a": "VP6 with alpha",
    "aac": "AAC",
    "mp3": "MP3",
    "opus": "Opus",
    "speex": "Speex",
}

#: A publisher needs about ten messages before its publish is accepted (connect, createStream,
#: publish...); tiny messages by the thousand are work (one dispatch each, pings answered) an
#: unauthenticated peer may not ask for.
_MAX_MESSAGES_BEFORE_PUBLISH: Final = 1000
#: What a held ``Message`` costs besides its payload (object, list slot), counted as memory.
_MESSAGE_OVERHEAD: Final = 120
_HELD_TYPES: Final = frozenset(
    {MSG_AUDIO, MSG_VIDEO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_COMMAND_AMF0, MSG_COMMAND_AMF3, MSG_AGGREGATE}
)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with ``accept_publish`` or ``reject_publish``.

    Key and query stay out of ``repr`` so that logging an event never leaks them.
    """

    app: str
    stream_key: str = field(repr=False)
    query: dict[str, str] = field(repr=False)
    stream_id: int
    tc_url: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    """``@setDataFrame``/``onMetaData`` arrived (clients may resend it any time)."""

    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MediaReceived:
    """One audio or video message; ``payload`` is an FLV tag body, ``timestamp`` absolute ms."""

    kind: Literal["audio", "video"]
    timestamp: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PublishFinished:
    """The client ended the publish (FCUnpublish, deleteStream or closeStream)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """Protocol violation or a request we refuse; close the connection after flushing."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnsupportedCodec:
    """The first media of a stream uses a codec we do not accept; close after flushing."""

    kind: Literal["audio", "video"]
    codec: str
    reason: str


Event: TypeAlias = (
    PublishRequested
    | MetadataReceived
    | MediaReceived
    | PublishFinished
    | ConnectionFailed
    | UnsupportedCodec
)


class _State(enum.Enum):
    HANDSHAKE = enum.auto()
    AWAIT_CONNECT = enum.auto()
    CONNECTED = enum.auto()
    PUBLISH_PENDING = enum.auto()
    PUBLISHING = enum.auto()
    CLOSED = enum.auto()


class _Refused(Exception):
    """Internal: stop processing and report ConnectionFailed with this reason."""


class RtmpServerConnection:
    """One publisher connection: handshake, commands, acknowledgements, media extraction."""

    def __init__(
        self,
        *,
        limits: ChunkLimits | None = None,
        accepted_video_codecs: Collection[str] = ("h264",),
        accepted_audio_codecs: Collection[str] = ("aac",),
        accepted_apps: Collection[str] | None = None,
        window_ack_size: int = 2_500_000,
        out_chunk_size: int = 4096,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._handshake = ServerHandshake(random_bytes)
        self._reader = ChunkReader(limits)
        # Until a publish is accepted the peer is unauthenticated: it gets a small budget.
        self._reader.memory_limit = self._reader.limits.max_buffered_bytes_before_publish
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._state = _State.HANDSHAKE
        self._accepted_video = frozenset(accepted_video_codecs)
        self._accepted_audio = frozenset(accepted_audio_codecs)
        self._accepted_apps = None if accepted_apps is None else tuple(accepted_apps)
        self._our_window = window_ack_size
        self._out_chunk_size = out_chunk_size
        self._bytes_received = 0
        self._last_ack = 0
        self._peer_window = 0  # from the client's Window Acknowledgement Size, 0 = not sent
        self._next_stream_id = 1
        self._created_streams: set[int] = set()
        self._held: list[Message] = []
        self._held_bytes = 0
        self._early_messages: int | None = 0  # messages before the first accepted publish; None after
        self._fc_publish = False
        self._publish_stream_id = 0
        self._video_checked = False
        self._audio_checked = False
        #: from ``connect``; informative
        self.app = ""
        self.tc_url = ""
        self.flash_ver = ""

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        """True once the connection failed or a publish was rejected: flush, then close."""
        return self._state is _State.CLOSED

    @property
    def publishing(self) -> bool:
        return self._state is _State.PUBLISHING

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Process bytes from the client; return the resulting events in order."""
        events: list[Event] = []
        if self._state is _State.CLOSED:
            return events
        self._bytes_received += len(data)
        try:
            if self._state is _State.HANDSHAKE:
                self._out += self._handshake.feed(data)
                if not self._handshake.done:
                    return events
                self._state = _State.AWAIT_CONNECT
                data = self._handshake.surplus
            for message in self._reader.feed(data):
                if self._early_messages is not None:
                    self._early_messages += 1
                    if self._early_messages > _MAX_MESSAGES_BEFORE_PUBLISH:
                        raise _Refused(
                            f"client sent more than {_MAX_MESSAGES_BEFORE_PUBLISH} messages before publishing"
                        )
                self._dispatch(message, events)
                if self._state is _State.CLOSED:
                    break
        except (HandshakeError, ProtocolError, _Refused) as exc:
            self._fail(str(exc), events)
        self._acknowledge()
        return events

    @property
    def has_data_to_send(self) -> bool:
        """Whether ``data_to_send`` would return bytes (the common answer, no, without a copy)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (and forget)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def accept_publish(self) -> list[Event]:
        """Tell the client publishing started; return events for messages held meanwhile.

        Does nothing (returns []) if the publish is no longer pending, e.g. the client
        already gave up or the connection failed.
        """
        if self._state is not _State.PUBLISH_PENDING:
            return []
        sid = self._publish_stream_id
        self._send_user_control(_USER_CONTROL_STREAM_BEGIN, sid.to_bytes(4, "big"))
        self._send_status(sid, "status", "NetStream.Publish.Start", "Stream is now published.")
        if self._fc_publish:
            # Flash Media Live Encoder-era clients wait for this before sending media.
            self._send_command(
                "onFCPublish",
                0,
                None,
                {"code": "NetStream.Publish.Start", "description": "Publishing started."},
            )
        self._state = _State.PUBLISHING
        self._reader.memory_limit = self._reader.limits.max_buffered_bytes
        self._early_messages = None
        self._video_checked = False
        self._audio_checked = False
        held, self._held, self._held_bytes = self._held, [], 0
        events: list[Event] = []
        try:
            for message in held:
                self._dispatch(message, events)
                if self._state is _State.CLOSED:
                    break
        except _Refused as exc:
            self._fail(str(exc), events)
        return events

    def reject_publish(
        self, code: str = "NetStream.Publish.BadName", description: str = "Publishing refused."
    ) -> None:
        """Send an error status for the pending publish; the caller then closes."""
        if self._state is not _State.PUBLISH_PENDING:
            return
        self._send_status(self._publish_stream_id, "error", code, description)
        self._state = _State.CLOSED
        self._held, self._held_bytes = [], 0

    def close_publish(self, code: str, description: str) -> None:
        """Stop an accepted publish from our side (takeover, packaging failed); caller closes."""
        if self._state in (_State.PUBLISHING, _State.PUBLISH_PENDING):
            self._send_status(self._publish_stream_id, "error", code, description)
        self._state = _State.CLOSED

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if self._state is _State.PUBLISH_PENDING and type_id in _HELD_TYPES:
            # Messages that arrive while the application decides on a publish wait, counted
            # as memory against the unauthenticated budget together with the reader's buffers.
            self._held.append(message)
            self._held_bytes += _MESSAGE_OVERHEAD + sys.getsizeof(message.payload)
            budget = self._reader.memory_limit
            if self._held_bytes + self._reader.memory > budget:
                raise _Refused(
                    f"client sent more than {budget} bytes of memory before its publish was answered"
                )
            return
        if type_id == MSG_AUDIO or type_id == MSG_VIDEO:
            self._on_media(message, events)
        elif type_id == MSG_COMMAND_AMF0 or type_id == MSG_COMMAND_AMF3:
            self._on_command(message, events)
        elif type_id == MSG_DATA_AMF0 or type_id == MSG_DATA_AMF3:
            self._on_data(message, events)
        elif type_id == MSG_AGGREGATE:
            self._on_aggregate(message, events)
        elif type_id == MSG_USER_CONTROL:
            self._on_user_control(message)
        elif type_id == MSG_WINDOW_ACK_SIZE:
            if len(message.payload) >= 4:
                self._peer_window = int.from_bytes(message.payload[:4], "big")
        # Set Chunk Size and Abort were applied by the reader; Acknowledgement and
        # Set Peer Bandwidth need no action from an ingest server; shared objects are ignored.

    def _on_user_control(self, message: Message) -> None:
        payload = message.payload
        if len(payload) >= 6 and int.from_bytes(payload[:2], "big") == _USER_CONTROL_PING_REQUEST:
            self._send_user_control(_USER_CONTROL_PING_RESPONSE, payload[2:6])

    def _on_media(self, message: Message, events: list[Event]) -> None:
        if self._state is not _State.PUBLISHING or not message.payload:
            return  # nothing was accepted yet (or an empty keep-alive tag)
        payload = message.payload
        if message.type_id == MSG_VIDEO:
            if not self._video_checked:
                codec = flv.video_codec(payload)
                if codec is not None:
                    if codec not in self._accepted_video:
                        self._reject_codec("video", codec, self._accepted_video, events)
                        return
                    self._video_checked = True
            events.append(MediaReceived("video", message.timestamp, payload))
        else:
            if not self._audio_checked:
                codec = flv.audio_codec(payload)
                if codec not in self._accepted_audio:
                    self._reject_codec("audio", codec, self._accepted_audio, events)
                    return
                self._audio_checked = True
            events.append(MediaReceived("audio", message.timestamp, payload))

    def _reject_codec(
        self, kind: Literal["audio", "video"], codec: str, accepted: frozenset[str], events: list[Event]
    ) -> None:
        # Said to the encoder (ffmpeg prints it as "Server error: ...") and logged.
        reason = (
            f"unsupported {kind} codec {_codec_name(codec)}; this server accepts "
            f"{' or '.join(_codec_name(c) for c in sorted(self._accepted_video))} video with "
            f"{' or '.join(_codec_name(c) for c in sorted(self._accepted_audio))} audio"
        )
        self._send_status(self._publish_stream_id, "error", "NetStream.Publish.Rejected", reason)
        self._state = _State.CLOSED
        events.append(UnsupportedCodec(kind, codec, reason))

    def _on_aggregate(self, message: Message, events: list[Event]) -> None:
        """Split an aggregate message (FLV tags back to back) into its sub-messages."""
        data = message.payload
        pos = 0
        first_ts: int | None = None
        while pos + 11 <= len(data):
            type_id = data[pos] & 0x1F
            size = int.from_bytes(data[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            end = pos + 11 + size
            if end > len(data):
                raise _Refused("malformed aggregate message: sub-message overruns the message")
            if first_ts is None:
                first_ts = ts
            sub_ts = (message.timestamp + ts - first_ts) & 0xFFFFFFFF
            sub = Message(type_id, data[pos + 11 : end], sub_ts, message.stream_id, message.chunk_stream_id)
            if type_id in (MSG_AUDIO, MSG_VIDEO, MSG_DATA_AMF0):
                self._dispatch(sub, events)
            pos = end + 4  # skip the back pointer
            if self._state is _State.CLOSED:
                return

    def _decode_amf(self, message: Message, what: str) -> list[Any]:
        payload = message.payload
        if message.type_id in (MSG_COMMAND_AMF3, MSG_DATA_AMF3) and payload[:1] == b"\x00":
            payload = payload[1:]  # AMF3 messages start with a format byte, then AMF0 values
        try:
            return amf0.decode(payload)
        except amf0.AMFError as exc:
            raise _Refused(f"malformed AMF0 in {what} message: {exc}") from None

    def _on_data(self, message: Message, events: list[Event]) -> None:
        values = self._decode_amf(message, "data")
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            if self._state is _State.PUBLISHING:
                events.append(MetadataReceived(dict(values[1])))

    # ------------------------------------------------------------------ commands

    def _on_command(self, message: Message, events: list[Event]) -> None:
        values = self._decode_amf(message, "command")
        if len(values) < 2 or not isinstance(values[0], str):
            raise _Refused("command message without a name and transaction id")
        name = values[0]
        txn = values[1] if isinstance(values[1], float) else 0.0
        args = values[3:]
        if self._state is _State.AWAIT_CONNECT and name != "connect":
            raise _Refused(f"command {name[:64]!r} before connect")
        if name == "connect":
            self._on_connect(txn, values[2] if len(values) > 2 else None)
        elif name in ("releaseStream", "FCPublish"):
            self._fc_publish = self._fc_publish or name == "FCPublish"
            if txn:
                self._send_command("_result", txn, None, amf0.UNDEFINED)
        elif name == "createStream":
            if len(self._created_streams) >= _MAX_CREATED_STREAMS:
                raise _Refused(f"client created more than {_MAX_CREATED_STREAMS} streams")
            sid = self._next_stream_id
            self._next_stream_id += 1
            self._created_streams.add(sid)
            self._send_command("_result", txn, None, float(sid))
        elif name == "publish":
            self._on_publish(message.stream_id, args, events)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if name == "deleteStream" and args and isinstance(args[0], float):
                self._created_streams.discard(int(args[0]))
            if self._state in (_State.PUBLISHING, _State.PUBLISH_PENDING):
                self._state = _State.CONNECTED
                events.append(PublishFinished(name))
        elif name in ("play", "play2"):
            self._send_status(
                message.stream_id, "error", "NetStream.Play.Failed", "This server only accepts publishing."
            )
            raise _Refused("client asked to play; this server only accepts publishing")
        elif name in ("_result", "_error", "onStatus", "@setDataFrame", "onMetaData"):
            pass  # replies to calls we never make, or data sent the wrong way: ignore
        elif txn:
            self._send_command(
                "_error",
                txn,
                None,
                {
                    "level": "error",
                    "code": "NetConnection.Call.Failed",
                    "description": f"Unknown command {name[:64]}.",
                },
            )

    def _on_connect(self, txn: float, command_object: Any) -> None:
        if self._state is not _State.AWAIT_CONNECT:
            raise _Refused("second connect on one connection")
        if not isinstance(command_object, dict):
            raise _Refused("connect without a command object")
        app = command_object.get("app")
        self.app = app.strip("/") if isinstance(app, str) else ""
        name = self.app.partition("?")[0]
        if self._accepted_apps is not None and name not in self._accepted_apps:
            description = (
                f"unknown application {printable_app(name)}; publish to rtmp://<server>/{self._accepted_apps[0]}/<stream key>"
                if self._accepted_apps
                else "this server accepts no publishing"
            )
            self._send_command(
                "_error",
                txn,
                None,
                {"level": "error", "code": "NetConnection.Connect.Rejected", "description": description},
            )
            raise _Refused(f"connect refused: {description}")
        tc_url = command_object.get("tcUrl")
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        flash_ver = command_object.get("flashVer")
        self.flash_ver = flash_ver if isinstance(flash_ver, str) else ""
        self._send_control(MSG_WINDOW_ACK_SIZE, self._our_window.to_bytes(4, "big"))
        self._send_control(MSG_SET_PEER_BANDWIDTH, self._our_window.to_bytes(4, "big") + b"\x02")
        self._send_control(MSG_SET_CHUNK_SIZE, self._out_chunk_size.to_bytes(4, "big"))
        self._send_command(
            "_result",
            txn,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        )
        self._state = _State.CONNECTED

    def _on_publish(self, stream_id: int, args: list[Any], events: list[Event]) -> None:
        if self._state is not _State.CONNECTED:
            raise _Refused("publish while a publish is already active on this connection")
        if not args or not isinstance(args[0], str) or not args[0].strip():
            self._send_status(stream_id, "error", "NetStream.Publish.BadName", "Missing stream key.")
            raise _Refused("publish without a stream key")
        key, _, key_query = args[0].partition("?")
        app, _, app_query = self.app.partition("?")
        query = dict(parse_qsl(app_query, keep_blank_values=True))
        query.update(parse_qsl(key_query, keep_blank_values=True))
        self._publish_stream_id = stream_id
        self._state = _State.PUBLISH_PENDING
        events.append(PublishRequested(app, key, query, stream_id, self.tc_url))

    # ------------------------------------------------------------------ output

    def _fail(self, reason: str, events: list[Event]) -> None:
        self._state = _State.CLOSED
        self._held, self._held_bytes = [], 0
        events.append(ConnectionFailed(reason))

    def _acknowledge(self) -> None:
        # Per spec the client's Window Acknowledgement Size sets the pace; clients such as
        # ffmpeg never send one, so fall back to the window we announced (as nginx-rtmp does).
        window = self._peer_window or self._our_window
        if (
            window > 0
            and self._state is not _State.CLOSED
            and self._bytes_received - self._last_ack >= window
        ):
            self._last_ack = self._bytes_received
            self._send_control(MSG_ACK, (self._bytes_received & 0xFFFFFFFF).to_bytes(4, "big"))

    def _send(self, message: Message) -> None:
        self._out += self._writer.write(message)

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._send(Message(type_id, payload, 0, 0, _CSID_CONTROL))

    def _send_user_control(self, event: int, data: bytes) -> None:
        self._send_control(MSG_USER_CONTROL, event.to_bytes(2, "big") + data)

    def _send_command(self, name: str, txn: float, *values: Any) -> None:
        self._send(Message(MSG_COMMAND_AMF0, amf0.encode(name, txn, *values), 0, 0, _CSID_COMMAND))

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        payload = amf0.encode("onStatus", 0.0, None, info)
        self._send(Message(MSG_COMMAND_AMF0, payload, 0, stream_id, _CSID_STREAM_STATUS))


def _codec_name(codec: str) -> str:
    return _CODEC_NAMES.get(codec, repr(codec))
