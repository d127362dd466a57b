"""WHIP over HTTP (RFC 9725): POST an offer to /whip, DELETE/PATCH the session URL, OPTIONS for CORS.

The endpoint is the event's ``stream.whip_url``; the stream key is the bearer token, so the key
alone chooses the event, exactly as with RTMP. Answers are plain text (WHIP clients show them to
people) and every response carries CORS headers, so browser publishers on other origins work.
"""

from __future__ import annotations

import logging
import secrets
from typing import Awaitable, Callable

from aiohttp import web

from ingest.publishing import PublishRejected, RefusalReason
from ingest.whip.sdp import MAX_SDP_BYTES, IceServer, OfferError, ice_server_link, parse_ice_server, parse_trickle_fragment
from ingest.whip.session import WhipOptions, WhipSession, WhipSessionGone, WhipSessions
from live_server.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["WhipApi", "WHIP", "options_from_settings"]

WHIP = web.AppKey("whip_sessions", WhipSessions)  # the app's WHIP sessions, when enabled (tests inspect them)

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
SESSION_PATH = "/whip/session/{session_id}"

#: PublishRejected.reason → HTTP status (anything else: 409).
_REJECTION_STATUS = {RefusalReason.BAD_KEY: 401, RefusalReason.ALREADY_LIVE: 409, RefusalReason.SHUTTING_DOWN: 503,
                     RefusalReason.TOO_MANY_SESSIONS: 503}


def refusal_status(reason: RefusalReason) -> int:
    """The HTTP status a WHIP client gets for a refused publish (503s come with Retry-After)."""
    return _REJECTION_STATUS.get(reason, 409)


def options_from_settings(settings: Settings) -> WhipOptions:
    return WhipOptions(
        ice_servers=ice_servers(settings),
        host_addresses=tuple(settings.whip_host_addresses),
        ice_timeout=settings.whip_ice_timeout_seconds,
        media_timeout=settings.whip_media_timeout_seconds,
        keyframe_seconds=settings.segment_seconds,
        allow_vp8=settings.whip_vp8_transcode,
        transcode_bitrate=settings.whip_transcode_bitrate_kbps * 1000,
        audio_bitrate=settings.whip_audio_bitrate_kbps * 1000,
        max_sessions=settings.whip_max_sessions,
    )


def ice_servers(settings: Settings) -> tuple[IceServer, ...]:
    credential = settings.whip_turn_credential.get_secret_value()
    return tuple(parse_ice_server(url, settings.whip_turn_username, credential) for url in settings.whip_ice_servers)


# --------------------------------------------------------------------------- helpers

def _cors(headers: dict[str, str] | None = None) -> dict[str, str]:
    base = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, Accept-Post",
    }
    base.update(headers or {})
    return base


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = 'Bearer realm="live-server WHIP"'
    return web.Response(status=status, text=f"{message}\n", headers=_cors({"X-Error-Code": code, **extra}))


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _read_sdp(request: web.Request, code: str) -> str:
    """The body as UTF-8 text, refused (413) past ``MAX_SDP_BYTES`` before more of it is read."""
    if (request.content_length or 0) > MAX_SDP_BYTES:
        raise OfferError(413, "too_large", f"the SDP body exceeds {MAX_SDP_BYTES} bytes")
    body = bytearray()
    while len(body) <= MAX_SDP_BYTES:
        chunk = await request.content.read(MAX_SDP_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > MAX_SDP_BYTES:
        raise OfferError(413, "too_large", f"the SDP body exceeds {MAX_SDP_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise OfferError(400, code, "malformed SDP: the body is not UTF-8 text") from None


def _link_headers(sessions: WhipSessions) -> list[tuple[str, str]]:
    return [("Link", ice_server_link(server)) for server in sessions.options.ice_servers]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _whip(handler: Handler) -> Handler:
    """Plain-text errors with CORS headers for every WHIP failure (not the API's JSON envelope)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except OfferError as exc:
            log.info("WHIP %s from %s refused (%s): %s", request.method, request.remote, exc.code, exc.message)
            return _error(exc.status, exc.code, exc.message)
        except WhipSessionGone:
            return _error(404, "not_found", "no such WHIP session (it ended or never existed)")

    return wrapped


# --------------------------------------------------------------------------- routes

class WhipApi:
    """The WHIP endpoint and its session URLs, over the process's ``WhipSessions``."""

    def __init__(self, sessions: WhipSessions) -> None:
        self.sessions = sessions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.options("/whip", _whip(self.endpoint_options)),
            web.post("/whip", _whip(self.publish)),
            web.delete(SESSION_PATH, _whip(self.end_session), name="whip_session"),
            web.patch(SESSION_PATH, _whip(self.trickle)),
            web.options(SESSION_PATH, self.session_options),
        ]

    async def endpoint_options(self, request: web.Request) -> web.StreamResponse:
        headers = _cors({
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Accept-Post": SDP,
            "Allow": "POST, OPTIONS",
        })
        response = web.Response(status=204, headers=headers)
        for name, value in _link_headers(self.sessions):
            response.headers.add(name, value)
        return response

    async def publish(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != SDP:
            return _error(415, "unsupported_media_type", f"send the SDP offer as {SDP}", {"Accept-Post": SDP})
        key = _bearer(request)
        if key is None:
            return _error(401, "unauthorized", "send the event's stream key as Authorization: Bearer <stream key>")
        offer = await _read_sdp(request, "malformed_sdp")
        try:
            session, answer = await self.sessions.create(offer, key, request.remote or "unknown")
        except PublishRejected as exc:
            status = refusal_status(exc.reason)
            headers = {"Retry-After": "5"} if status == 503 else None
            return _error(status, exc.reason.value, exc.message, headers)
        location = request.app.router["whip_session"].url_for(session_id=session.id)
        response = web.Response(status=201, body=answer.encode(), content_type=SDP, headers=_cors({
            "Location": str(location),
            "ETag": f'"{session.etag}"',
            "Accept-Patch": SDP_FRAG,
        }))
        for name, value in _link_headers(self.sessions):
            response.headers.add(name, value)
        return response

    def _session_for(self, request: web.Request) -> WhipSession:
        session = self.sessions.get(request.match_info["session_id"])
        presented = _bearer(request)
        # The session URL is an unguessable capability; a bearer, when sent, must still be the right key.
        if presented is not None and not secrets.compare_digest(presented, session.stream_key):
            raise OfferError(401, "unauthorized", "this stream key does not own the WHIP session")
        return session

    async def end_session(self, request: web.Request) -> web.StreamResponse:
        session = self._session_for(request)
        await session.close("publisher ended the session (DELETE)")
        return web.Response(status=200, headers=_cors())

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        session = self._session_for(request)
        if request.content_type != SDP_FRAG:
            return _error(415, "unsupported_media_type", f"PATCH takes {SDP_FRAG} (trickle ICE)", {"Accept-Patch": SDP_FRAG})
        match = request.headers.get("If-Match")
        if match not in (None, "*", f'"{session.etag}"'):
            return _error(412, "precondition_failed", "the If-Match ETag does not match this WHIP session")
        fragment = parse_trickle_fragment(await _read_sdp(request, "malformed_sdpfrag"))
        await session.add_trickle(fragment)
        return web.Response(status=204, headers=_cors())

    async def session_options(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers=_cors({
            "Access-Control-Allow-Methods": "PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "600",
            "Accept-Patch": SDP_FRAG,
            "Allow": "PATCH, DELETE, OPTIONS",
        }))
