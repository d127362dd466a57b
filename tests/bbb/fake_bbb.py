"""A BigBlueButton API server for tests, written from BBB's published API reference (docs.bigbluebutton.org,
"API Reference"), since BBB itself cannot run here. Independent of formats/bbb.py on purpose: it checks our
requests the way bbb-web does.

- Every call's ``checksum`` is ``HASH(callName + queryString + sharedSecret)`` over the query string as received,
  without its checksum parameter; HASH is told by the checksum's length among ``supported`` algorithms
  (bbb-web's ``supportedChecksumAlgorithms``). A mismatch answers ``checksumError``.
- ``create`` is idempotent (``duplicateWarning``), makes passwords when none are given, keeps ``meta_*``.
- ``getMeetingInfo`` of an unknown meeting answers ``notFound``; ``join`` redirects (302) into the client when the
  meeting exists and the caller is a moderator by role or password.
- ``getRecordings`` filters by ``meetingID``, ``recordID`` (comma lists), ``state`` and ``meta_*``; each
  recording has a presentation format and a "video" format whose folder holds ``video-0.m4v``.
- ``publish`` adds a recording and, when its meeting asked for one (``meta_bbb-recording-ready-url``), POSTs the
  recording-ready callback: ``signed_parameters``, an HS256 JWT of ``meeting_id`` and ``record_id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from tests.media import FFMPEG

#: The shared secret of the tests' BigBlueButton server.
SECRET = "8cd8ef52e8e101574e400365b55e11a6bbb"
HASH_BY_LENGTH = {40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}


def make_lecture_mp4(path: Path, seconds: int = 2) -> Path:
    """What BBB's video format publishes: an MP4 (H.264 + AAC), here a generated pattern and tone."""
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=330", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(path)], check=True)
    return path


@dataclass
class FakeMeeting:
    meeting_id: str
    name: str
    attendee_pw: str
    moderator_pw: str
    metadata: dict[str, str]
    params: dict[str, str]


@dataclass
class FakeRecording:
    record_id: str
    meeting_id: str
    name: str
    metadata: dict[str, str]
    start_ms: int = 1_764_000_000_000
    end_ms: int = 1_764_000_002_000
    state: str = "published"
    has_video: bool = True


@dataclass
class FakeBbb:
    secret: str
    video: Path
    supported: tuple[str, ...] = ("sha1", "sha256", "sha384", "sha512")
    meetings: dict[str, FakeMeeting] = field(default_factory=dict)
    recordings: list[FakeRecording] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (call, params) of every accepted call
    refused: list[str] = field(default_factory=list)  # calls refused for their checksum
    joins: list[dict[str, str]] = field(default_factory=list)
    callbacks: list[int] = field(default_factory=list)  # HTTP statuses our server answered to recording-ready posts
    base: str = ""
    runner: web.AppRunner | None = None

    @property
    def api_url(self) -> str:
        return f"{self.base}/bigbluebutton/api"

    async def start(self) -> "FakeBbb":
        app = web.Application()
        app.router.add_get("/bigbluebutton/api/{call}", self._api)
        app.router.add_get("/playback/video/{record_id}/{name}", self._video)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # --- the API ---------------------------------------------------------------------------------

    def _checksum_ok(self, call: str, query: str) -> bool:
        pairs = query.split("&") if query else []
        sent = [p for p in pairs if p.startswith("checksum=")]
        if len(sent) != 1:
            return False
        checksum = sent[0].removeprefix("checksum=")
        rest = "&".join(p for p in pairs if not p.startswith("checksum="))
        algorithm = HASH_BY_LENGTH.get(len(checksum))
        if algorithm not in self.supported:
            return False
        expected = hashlib.new(algorithm, f"{call}{rest}{self.secret}".encode()).hexdigest()
        return hmac.compare_digest(expected, checksum)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        call = request.match_info["call"]
        query = request.rel_url.raw_query_string  # as received, percent-encoding untouched (what bbb-web hashes)
        if not self._checksum_ok(call, query):
            self.refused.append(call)
            return _failed("checksumError", "Checksums do not match")
        params = {k: v for k, v in parse_qsl(query, keep_blank_values=True) if k != "checksum"}
        self.calls.append((call, params))
        handler = {"create": self._create, "getMeetingInfo": self._info, "join": self._join,
                   "getRecordings": self._recordings}.get(call)
        if handler is None:
            return _failed("unsupportedRequest", "This request is not supported.")
        return handler(params)

    def _create(self, params: dict[str, str]) -> web.StreamResponse:
        meeting_id, name = params.get("meetingID", ""), params.get("name", "")
        if not 2 <= len(meeting_id) <= 256 or "," in meeting_id:
            return _failed("missingParamMeetingID", "You must specify a meeting ID for the meeting.")
        if not 2 <= len(name) <= 64:
            return _failed("missingParamName", "You must specify a name for the meeting (2 to 64 characters).")
        existing = self.meetings.get(meeting_id)
        if existing is None:
            existing = self.meetings[meeting_id] = FakeMeeting(
                meeting_id, name, params.get("attendeePW") or secrets.token_hex(4), params.get("moderatorPW") or secrets.token_hex(4),
                {k[5:]: v for k, v in params.items() if k.startswith("meta_")}, params)
            duplicate = ""
        else:
            duplicate = ("<messageKey>duplicateWarning</messageKey><message>This conference was already in existence and "
                         "may currently be in progress.</message>")
        return _ok(f"<meetingID>{escape(meeting_id)}</meetingID><internalMeetingID>{hashlib.sha1(meeting_id.encode()).hexdigest()}"
                   f"-1764000000000</internalMeetingID><attendeePW>{existing.attendee_pw}</attendeePW>"
                   f"<moderatorPW>{existing.moderator_pw}</moderatorPW><createTime>1764000000000</createTime>{duplicate}")

    def _info(self, params: dict[str, str]) -> web.StreamResponse:
        meeting = self.meetings.get(params.get("meetingID", ""))
        if meeting is None:
            return _failed("notFound", "We could not find a meeting with that meeting ID")
        return _ok(f"<meetingName>{escape(meeting.name)}</meetingName><meetingID>{escape(meeting.meeting_id)}</meetingID>"
                   f"<attendeePW>{meeting.attendee_pw}</attendeePW><moderatorPW>{meeting.moderator_pw}</moderatorPW>"
                   "<running>true</running>")

    def _join(self, params: dict[str, str]) -> web.StreamResponse:
        meeting = self.meetings.get(params.get("meetingID", ""))
        if meeting is None:
            return _failed("invalidMeetingIdentifier", "The meeting ID that you supplied did not match any existing meetings")
        if not params.get("fullName"):
            return _failed("missingParamFullName", "You must specify a name for the attendee who will be joining the meeting.")
        password = params.get("password")
        moderator = params.get("role", "").upper() == "MODERATOR" if password is None else password == meeting.moderator_pw
        if password is not None and password not in (meeting.moderator_pw, meeting.attendee_pw):
            return _failed("invalidPassword", "You either did not supply a password or the password supplied is neither "
                           "the attendee or moderator password for this conference.")
        self.joins.append({**params, "as": "MODERATOR" if moderator else "VIEWER"})
        raise web.HTTPFound(f"{self.base}/html5client/join?sessionToken={secrets.token_hex(8)}")

    def _recordings(self, params: dict[str, str]) -> web.StreamResponse:
        meeting_ids = set(filter(None, params.get("meetingID", "").split(",")))
        record_ids = set(filter(None, params.get("recordID", "").split(",")))
        states = set(filter(None, params.get("state", "").split(",")))
        meta = {k[5:]: v for k, v in params.items() if k.startswith("meta_")}
        found = [r for r in self.recordings
                 if (not meeting_ids or r.meeting_id in meeting_ids) and (not record_ids or r.record_id in record_ids)
                 and (r.state in states if states else r.state in ("published", "unpublished"))
                 and all(r.metadata.get(k) == v for k, v in meta.items())]
        if not found:
            return _ok("<recordings></recordings><messageKey>noRecordings</messageKey>"
                       "<message>There are no recordings for the meeting(s).</message>")
        return _ok("<recordings>" + "".join(self._recording_xml(r) for r in found) + "</recordings>")

    def _recording_xml(self, r: FakeRecording) -> str:
        meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.metadata.items())
        video = (f"<format><type>video</type><url>{self.base}/playback/video/{r.record_id}/</url>"
                 "<processingTime>1000</processingTime><length>0</length></format>") if r.has_video else ""
        return (f"<recording><recordID>{escape(r.record_id)}</recordID><meetingID>{escape(r.meeting_id)}</meetingID>"
                f"<internalMeetingID>{escape(r.record_id)}</internalMeetingID><name>{escape(r.name)}</name>"
                f"<isBreakout>false</isBreakout><published>{'true' if r.state == 'published' else 'false'}</published>"
                f"<state>{r.state}</state><startTime>{r.start_ms}</startTime><endTime>{r.end_ms}</endTime>"
                f"<participants>3</participants><metadata><meetingName>{escape(r.name)}</meetingName>{meta}</metadata>"
                f"<playback><format><type>presentation</type><url>{self.base}/playback/presentation/2.3/{r.record_id}</url>"
                f"<processingTime>7177</processingTime><length>0</length></format>{video}</playback></recording>")

    async def _video(self, request: web.Request) -> web.StreamResponse:
        record = next((r for r in self.recordings if r.record_id == request.match_info["record_id"] and r.has_video), None)
        if record is None or request.match_info["name"] != "video-0.m4v":
            raise web.HTTPNotFound()
        return web.FileResponse(self.video, headers={"Content-Type": "video/mp4"})

    # --- what BBB does by itself ------------------------------------------------------------------

    async def publish(self, recording: FakeRecording, callback_url: str | None = None) -> int | None:
        """A recording finished processing; BBB tells ``meta_bbb-recording-ready-url`` (the meeting's, or the
        one given). Returns our server's HTTP status, or None when no callback was asked for."""
        self.recordings.append(recording)
        meeting = self.meetings.get(recording.meeting_id)
        url = callback_url or (meeting.metadata.get("bbb-recording-ready-url") if meeting else None)
        if not url:
            return None
        token = jwt_hs256({"meeting_id": recording.meeting_id, "record_id": recording.record_id}, self.secret)
        return await self.post_callback(url, token)

    async def post_callback(self, url: str, token: str) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data={"signed_parameters": token}, allow_redirects=False) as resp:
                self.callbacks.append(resp.status)
                return resp.status


def jwt_hs256(claims: dict[str, Any], secret: str) -> str:
    """As BBB's recording-ready callback signs it (header ``{"typ": "JWT", "alg": "HS256"}``)."""
    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    head = enc(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    body = enc(json.dumps(claims).encode())
    return f"{head}.{body}.{enc(hmac.new(secret.encode(), f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


def _ok(inner: str) -> web.Response:
    return web.Response(text=f"<response><returncode>SUCCESS</returncode>{inner}</response>", content_type="text/xml")


def _failed(key: str, message: str) -> web.Response:
    return web.Response(text=f"<response><returncode>FAILED</returncode><messageKey>{key}</messageKey>"
                             f"<message>{escape(message)}</message></response>", content_type="text/xml")
