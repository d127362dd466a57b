"""The BigBlueButton API (docs.bigbluebutton.org, "API Reference") as pure code: signed call URLs in,
XML responses out as plain data (the recording-ready callback's JWT is checked in ``bbb/callback.py``).

Every call carries ``checksum = hex(HASH(callName + queryString + sharedSecret))``, HASH being SHA-1
(the original rule) or SHA-256/384/512 (BBB >= 2.5, ``supportedChecksumAlgorithms``). Every answer is
``<response>`` with ``returncode`` SUCCESS or FAILED (then ``messageKey`` and ``message``), which
:func:`parse_response` turns into :class:`BbbFailed`. No I/O here: ``bbb/client.py`` sends the URLs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

__all__ = [
    "ALGORITHMS", "OWNER_META", "EVENT_META", "STREAM_META", "RECORDING_READY_META",
    "BbbError", "BbbFailed", "BbbMalformed", "BbbUnavailable", "NoVideoFormat", "UNKNOWN_MEETING_KEYS", "error_kind",
    "PlaybackFormat", "BbbRecording", "Meeting", "Response",
    "checksum", "query_string", "api_url", "parse_response", "parse_recordings", "parse_meeting",
    "video_file_candidates",
]

ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")
# Meeting metadata (``meta_<name>`` on create, ``<metadata><name>`` in answers) we set and read.
OWNER_META = "live-server-owner"  # the username of the lecturer whose recordings these are
EVENT_META = "live-server-event"  # the live event a webinar meeting is broadcast to (its slug)
STREAM_META = "live-server-stream-url"  # where the streaming runner pushes RTMP
RECORDING_READY_META = "bbb-recording-ready-url"  # BBB POSTs a JWT there when a recording is published
# An answer larger than this is not an API answer we read (getRecordings of a busy server stays far below).
MAX_RESPONSE_BYTES = 8 * 2**20
_API_CALL = re.compile(r"[A-Za-z]{2,40}")


class BbbError(Exception):
    """BigBlueButton could not do what was asked; ``str()`` is fit for the lecturer or the admin."""


class BbbFailed(BbbError):
    """``returncode`` FAILED: the server's ``messageKey`` (stable, e.g. ``checksumError``) and ``message``."""

    def __init__(self, message_key: str, message: str) -> None:
        super().__init__(f"{message_key}: {message}" if message else message_key)
        self.message_key = message_key
        self.message = message


class BbbMalformed(BbbError):
    """The answer is not a BigBlueButton API response (a proxy's error page, a truncated body)."""


class NoVideoFormat(BbbError):
    """The recording has no "video" playback format (the server does not render one): nothing to import."""


class BbbUnavailable(BbbError):
    """No API answer: the server could not be reached, timed out, or answered with an HTTP error."""


# messageKeys of a meeting BBB does not know (getMeetingInfo, join, end); the API keeps its keys stable.
UNKNOWN_MEETING_KEYS = frozenset({"notFound", "invalidMeetingIdentifier", "invalidMeetingId", "meetingNotFound"})


def error_kind(exc: BbbError) -> str:
    """What went wrong, for a message in the reader's language: ``unreachable`` (no answer), ``checksum``
    (our signature refused: wrong secret or algorithm), ``unknown-meeting``, ``malformed`` (not the API), ``no-video`` or
    ``refused`` (any other FAILED)."""
    if isinstance(exc, BbbUnavailable):
        return "unreachable"
    if isinstance(exc, BbbMalformed):
        return "malformed"
    if isinstance(exc, NoVideoFormat):
        return "no-video"
    if isinstance(exc, BbbFailed):
        if exc.message_key == "checksumError":
            return "checksum"
        if exc.message_key in UNKNOWN_MEETING_KEYS:
            return "unknown-meeting"
    return "refused"


@dataclass(frozen=True)
class PlaybackFormat:
    type: str  # "presentation", "video", "podcast", "screenshare", ...
    url: str
    length_minutes: int = 0


@dataclass(frozen=True)
class BbbRecording:
    record_id: str
    meeting_id: str
    name: str
    state: str  # "published", "unpublished", "processing", ...
    start: datetime | None
    end: datetime | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    formats: tuple[PlaybackFormat, ...] = ()

    @property
    def video(self) -> PlaybackFormat | None:
        """The "video" playback format (an MP4/WebM file BBB renders from the meeting), if published."""
        return next((f for f in self.formats if f.type == "video"), None)

    @property
    def duration_seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, (self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Meeting:
    """What ``create`` (and ``getMeetingInfo``) say about a meeting."""

    meeting_id: str
    internal_meeting_id: str
    attendee_pw: str
    moderator_pw: str
    create_time: str
    message_key: str = ""  # "duplicateWarning" when the meeting already existed (create is idempotent)


@dataclass(frozen=True)
class Response:
    returncode: str
    message_key: str
    message: str
    root: ElementTree.Element


# --- requests ----------------------------------------------------------------------------------------


def query_string(params: Mapping[str, str] | list[tuple[str, str]]) -> str:
    """The query string exactly as it is sent (and so as it is signed): form encoding, in the given order."""
    return urlencode(list(params.items()) if isinstance(params, Mapping) else params)


def checksum(call: str, query: str, secret: str, algorithm: str = "sha1") -> str:
    """``hex(HASH(call + query + secret))``, the API's security rule."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    return hashlib.new(algorithm, (call + query + secret).encode("utf-8")).hexdigest()


def api_url(base: str, call: str, params: Mapping[str, str], secret: str, algorithm: str = "sha1") -> str:
    """A signed call URL: ``<base>/<call>?<query>&checksum=<hex>``; ``base`` is the API endpoint
    (``https://bbb.example.edu/bigbluebutton/api``), with or without its trailing slash."""
    if not _API_CALL.fullmatch(call):
        raise ValueError(f"not an API call name: {call!r}")
    query = query_string(params)
    signed = f"{query}&checksum={checksum(call, query, secret, algorithm)}" if query else \
        f"checksum={checksum(call, '', secret, algorithm)}"
    return f"{base.rstrip('/')}/{call}?{signed}"


# --- answers -----------------------------------------------------------------------------------------


def parse_response(body: bytes) -> Response:
    """The ``<response>`` of any call; FAILED raises :class:`BbbFailed`, anything else :class:`BbbMalformed`."""
    if len(body) > MAX_RESPONSE_BYTES:
        raise BbbMalformed(f"the answer is larger than {MAX_RESPONSE_BYTES // 2**20} MiB")
    if b"<!DOCTYPE" in body[:1024] or b"<!ENTITY" in body:  # no DTDs: an API answer has none (no entity expansion)
        raise BbbMalformed("the answer is not a BigBlueButton API response (it has a document type)")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise BbbMalformed(f"the answer is not XML ({exc})") from None
    if root.tag != "response":
        raise BbbMalformed(f"the answer is <{root.tag}>, not a BigBlueButton <response>")
    returncode = _text(root, "returncode").upper()
    message_key, message = _text(root, "messageKey"), _text(root, "message")
    if returncode == "FAILED":
        raise BbbFailed(message_key or "failed", message)
    if returncode != "SUCCESS":
        raise BbbMalformed(f"unexpected returncode {returncode!r}")
    return Response(returncode, message_key, message, root)


def parse_recordings(body: bytes) -> list[BbbRecording]:
    """``getRecordings``: each recording with its metadata and playback formats (``noRecordings`` is empty)."""
    root = parse_response(body).root
    found = []
    for rec in root.iterfind("recordings/recording"):
        meta = rec.find("metadata")
        metadata = {child.tag: (child.text or "").strip() for child in meta} if meta is not None else {}
        formats = []
        for fmt in rec.iterfind("playback/format"):
            url = _text(fmt, "url")
            if url:
                formats.append(PlaybackFormat(_text(fmt, "type"), url, _int(_text(fmt, "length"))))
        found.append(BbbRecording(
            record_id=_text(rec, "recordID"), meeting_id=_text(rec, "meetingID"),
            name=_text(rec, "name") or metadata.get("meetingName", ""), state=_text(rec, "state") or
            ("published" if _text(rec, "published") == "true" else ""),
            start=_millis(_text(rec, "startTime")), end=_millis(_text(rec, "endTime")),
            metadata=metadata, formats=tuple(formats)))
    return [r for r in found if r.record_id]


def parse_meeting(body: bytes) -> Meeting:
    """``create`` or ``getMeetingInfo``."""
    response = parse_response(body)
    root = response.root
    meeting_id = _text(root, "meetingID")
    if not meeting_id:
        raise BbbMalformed("the answer names no meetingID")
    return Meeting(meeting_id, _text(root, "internalMeetingID"), _text(root, "attendeePW"), _text(root, "moderatorPW"),
                   _text(root, "createTime"), response.message_key)


def video_file_candidates(format_url: str) -> list[str]:
    """Where the media file of a "video" playback format is. The format's URL is the file itself on some
    servers, or the folder of its player page (``/playback/video/<recordID>/``), which holds
    ``video-0.m4v`` (BBB 2.6+; MP4 with H.264/AAC) or ``video.mp4``/``video.webm`` (older packages)."""
    parts = urlsplit(format_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BbbMalformed("the video format's URL is not an http(s) URL")
    path = parts.path or "/"
    if re.search(r"\.(mp4|m4v|webm)$", path, re.IGNORECASE):
        return [format_url]
    if path.endswith("/"):
        folder = path
    elif "." in path.rsplit("/", 1)[-1]:  # a page in the folder (index.html)
        folder = path.rsplit("/", 1)[0] + "/"
    else:
        folder = path + "/"
    base = f"{parts.scheme}://{parts.netloc}{folder}"
    return [base + name for name in ("video-0.m4v", "video.mp4", "video-0.webm", "video.webm")]


# --- helpers -----------------------------------------------------------------------------------------


def _text(node: ElementTree.Element, path: str) -> str:
    found = node.find(path)
    return (found.text or "").strip() if found is not None else ""


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _millis(text: str) -> datetime | None:
    """BBB times are milliseconds since the epoch; 0 or absent means unknown."""
    return datetime.fromtimestamp(int(text) / 1000, timezone.utc) if text.isdigit() and int(text) > 0 else None
