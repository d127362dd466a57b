"""The small interfaces an ingest protocol (RTMP now, WHIP later) needs from the rest.

An ingest server authenticates a publish through a ``StreamPublisher`` and pushes media
into the ``MediaSink`` it returns. It knows nothing about keys, packagers or recorders.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Callable, Final, Protocol

__all__ = ["MediaSink", "PublishRejected", "RefusalReason", "StreamPublisher", "printable_app", "redact_key"]

#: An application name is shown only when it looks like one: a mistyped URL may put the key there.
_SHOWABLE_APP: Final = re.compile(r"[A-Za-z0-9_.-]{1,20}")


class RefusalReason(str, Enum):
    """Why a publish is refused, in no protocol's words: each ingest adapter maps it to its own
    (RTMP: a NetStream status code, WHIP: an HTTP status). The value is the metrics label."""

    SHUTTING_DOWN = "shutting_down"  # stopping or draining: retry on another node or shortly
    BAD_APP = "bad_app"  # RTMP application other than "live"
    BAD_KEY = "bad_key"  # unknown or revoked stream key (an ended event's key is revoked)
    ALREADY_LIVE = "already_live"  # another publisher holds the event and takeover is off
    TOO_MANY_SESSIONS = "too_many_sessions"  # the protocol's own session limit (WHIP)


class PublishRejected(Exception):
    """Raised by ``StreamPublisher.start_publish`` to refuse a publish.

    ``reason`` is protocol-neutral: the adapter picks its code or status from it;
    ``message`` is human readable and may be shown to the client and logged.
    """

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class MediaSink(Protocol):
    """Receives one accepted publish. Payloads are FLV tag bodies (audio/video)."""

    async def on_metadata(self, metadata: dict[str, Any]) -> None: ...

    def on_media(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """Called for every media message; must not block (queue, do not write)."""
        ...

    async def close(self, reason: str) -> None: ...


class StreamPublisher(Protocol):
    """Authorises publishes and hands out sinks."""

    async def start_publish(
        self,
        *,
        protocol: str,
        app: str,
        stream_key: str,
        remote_address: str,
        terminate: Callable[[str], None] | None = None,
    ) -> MediaSink:
        """Return the sink for this publish or raise ``PublishRejected``.

        ``terminate(reason)`` lets the publisher side drop the connection later (a newer
        publisher takes over, packaging failed, the server shuts down).
        """
        ...


def redact_key(stream_key: str) -> str:
    """A loggable form of a secret stream key: a short prefix and an ellipsis."""
    return stream_key[: min(4, len(stream_key) // 3)] + "…"


def printable_app(app: str) -> str:
    """An application name as logs and refusals may show it: quoted, or "(not shown)" when it
    does not look like one (a mistyped URL may carry the stream key there)."""
    return repr(app) if _SHOWABLE_APP.fullmatch(app) else "(not shown)"
