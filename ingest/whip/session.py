"""One WHIP publish = one aiortc peer connection feeding one ``MediaSink``; and their registry.

aiortc normally decodes every received frame in a thread per track and queues the pictures without
bound. We take the encoded frames instead: each receiver's decoder queue is replaced (before it
starts) by ``_EncodedFrameTap``, so H.264 goes to FLV without decoding, and only Opus (and VP8,
for browsers that insist) is converted, in one worker thread per track behind a bounded queue whose
overflow is counted. Every session ends through ``close()``: peer connection, worker threads and
the sink's broadcast session go together, whatever the reason (DELETE, ICE timeout, no media,
takeover, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Iterable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from ingest.publishing import MediaSink, PublishRejected, RefusalReason, StreamPublisher, redact_key
from ingest.whip.convert import OPUS_CLOCK, VIDEO_CLOCK, AvcToFlv, RtpTimestampMapper, OpusToAac, Vp8ToH264
from ingest.whip.dtls import DtlsPolicy
from ingest.whip.sdp import IceServer, OfferError, OfferSummary, TrickleFragment, inspect_offer, reject_sections

log = logging.getLogger(__name__)

__all__ = ["WhipOptions", "WhipSession", "WhipSessions", "WhipSessionGone"]

#: Encoded frames a converter thread may have waiting: ~1 s of Opus (20 ms packets), ~1 s of 30 fps VP8.
AUDIO_QUEUE_FRAMES: Final = 50
VIDEO_QUEUE_FRAMES: Final = 30
#: How often a session checks its ICE/media timeouts and whether a keyframe is due.
_SUPERVISE_PERIOD: Final = 0.25


@dataclass(frozen=True)
class WhipOptions:
    """What a WHIP session needs from the settings (kept small so tests and the bench can build it)."""

    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] = ()
    ice_timeout: float = 15.0
    media_timeout: float = 10.0
    keyframe_seconds: float = 2.0
    allow_vp8: bool = True
    transcode_bitrate: int = 2_500_000
    audio_bitrate: int = 128_000
    max_sessions: int = 20


class WhipSessionGone(Exception):
    """The session URL names no (or no longer a) session."""


class _EncodedFrameTap:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: complete encoded frames come to us.

    ``put`` is called on the event loop with (codec, frame) for every frame, and with None when the
    receiver stops; aiortc's (now idle) decoder thread blocks in ``get`` until then and exits.
    """

    def __init__(self, on_frame: Callable[[Any, Any], None]) -> None:
        self._on_frame = on_frame
        self._stop: queue.SimpleQueue[None] = queue.SimpleQueue()

    def put(self, item: tuple[Any, Any] | None) -> None:
        if item is None:
            self._stop.put(None)
            return
        codec, frame = item
        self._on_frame(codec, frame)

    def get(self) -> None:
        return self._stop.get()


def _tap_receiver(receiver: RTCRtpReceiver, on_frame: Callable[[Any, Any], None]) -> None:
    # aiortc has no public hook for encoded frames; the decoder queue is a private attribute that
    # ``receive()`` hands to its decoder thread, so it must be replaced before the receiver starts.
    receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameTap(on_frame)  # type: ignore[attr-defined]


class _Converter:
    """A worker thread running one PyAV converter behind a bounded queue; results go back to the loop."""

    def __init__(self, name: str, convert: Callable[[bytes, int], list[tuple[int, bytes]]], maxsize: int,
                 deliver: Callable[[list[tuple[int, bytes]]], None], loop: asyncio.AbstractEventLoop,
                 on_drop: Callable[[], None] = lambda: None) -> None:
        self._convert = convert
        self._on_drop = on_drop
        self._deliver = deliver
        self._loop = loop
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize)
        self.dropped = 0
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, data: bytes, rtp_ts: int) -> bool:
        try:
            self._queue.put_nowait((data, rtp_ts))
            return True
        except queue.Full:
            self.dropped += 1
            self._on_drop()
            return False

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                out = self._convert(*item)
            except Exception as exc:  # a converter bug must end this track, not the process
                self.failed = repr(exc)
                log.exception("WHIP converter %s failed", self._thread.name)
                return
            if out:
                try:
                    self._loop.call_soon_threadsafe(self._deliver, out)
                except RuntimeError:  # loop closed during shutdown
                    return

    async def stop(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        await asyncio.to_thread(self._thread.join, 5.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


@dataclass
class _Stats:
    video_frames_in: int = 0
    audio_frames_in: int = 0
    video_tags_out: int = 0
    audio_tags_out: int = 0
    audio_held_back: int = 0
    plis: int = 0
    last_media_at: float = 0.0
    last_keyframe_at: float = 0.0
    last_pli_at: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


class WhipSession:
    """One publish over WHIP: the peer connection, the converters and the sink they feed."""

    def __init__(self, session_id: str, stream_key: str, sink: MediaSink, summary: OfferSummary,
                 options: WhipOptions, remote: str, on_closed: Callable[["WhipSession"], None],
                 dtls: DtlsPolicy | None = None, on_drop: Callable[[], None] = lambda: None) -> None:
        self.id = session_id
        self._on_drop = on_drop
        self.stream_key = stream_key
        self.sink = sink
        self.summary = summary
        self.options = options
        self.remote = remote
        self.etag = secrets.token_hex(8)
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.stats = _Stats()
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[
            RTCIceServer(urls=s.url, username=s.username, credential=s.credential) for s in options.ice_servers
        ]))
        self._dtls = dtls or DtlsPolicy()
        self._dtls.prepare(self._pc)
        self.dtls_roles: list[str] = []
        self._clock = RtpTimestampMapper()
        self._avc = AvcToFlv()
        self._audio: _Converter | None = None
        self._vp8: _Converter | None = None
        self._video_receiver: RTCRtpReceiver | None = None
        self._video_started = False
        self._last_audio_ms = -1
        self._last_video_ms = -1
        self._sent_dimensions: tuple[int, int] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        # Nothing reaches the sink before the first frame: a peer that never sends media announces nothing.
        self._announce: asyncio.Future[None] | None = None
        self._announced = False
        self._held: list[tuple[str, int, bytes]] = []
        self._pc.on("connectionstatechange", self._on_connection_state)

    # --- negotiation ------------------------------------------------------------------------
    async def answer(self, offer: str) -> str:
        """Apply the offer and return the answer (all candidates gathered: no trickle needed)."""
        pc = self._pc
        if self.summary.video:
            video = pc.addTransceiver("video", direction="recvonly")
            # Before setRemoteDescription, or aiortc picks VP8: H.264 first (kept as is), VP8 as fallback.
            caps = RTCRtpReceiver.getCapabilities("video")
            assert caps is not None
            ranked = sorted(caps.codecs, key=lambda c: {"video/h264": 0, "video/vp8": 1}.get(c.mimeType.lower(), 2))
            video.setCodecPreferences([c for c in ranked if c.mimeType.lower() != "video/vp8" or self.options.allow_vp8])
            _tap_receiver(video.receiver, self._on_video_frame)
            self._video_receiver = video.receiver
        if self.summary.audio:
            audio = pc.addTransceiver("audio", direction="recvonly")
            audio.setCodecPreferences([RTCRtpCodecCapability(mimeType="audio/opus", clockRate=48000, channels=2)])
            _tap_receiver(audio.receiver, self._on_audio_frame)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:  # aiortc reports offer problems as ValueError/OperationError/...
            raise OfferError(422, "offer_refused", f"the offer cannot be negotiated: {exc}") from None
        for transceiver in pc.getTransceivers():  # sections we did not add: refused in the answer below
            if not isinstance(getattr(transceiver.receiver, "_RTCRtpReceiver__decoder_queue", None), _EncodedFrameTap):
                _tap_receiver(transceiver.receiver, lambda codec, frame: None)
        self.dtls_roles = self._dtls.choose_server_role(pc, self.summary.dtls_role_ours)
        if self.options.host_addresses:
            await self._gather_on(self.options.host_addresses)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"whip-{self.id[:8]}")
        # aiortc accepts every m-line it is offered; the ones we do not take are refused (port 0) so
        # that no publisher believes a track is on air that the server drops.
        return reject_sections(pc.localDescription.sdp, self.summary.ignored_mids)

    async def _gather_on(self, addresses: tuple[str, ...]) -> None:
        # aioice gathers host candidates on every interface but loopback, with no option to choose;
        # gathering ourselves on the configured addresses first makes setLocalDescription skip it.
        connections = {t.receiver.transport.transport.iceGatherer._connection for t in self._pc.getTransceivers()}
        for connection in connections:
            if connection._local_candidates_start:
                continue
            connection._local_candidates_start = True
            connection._local_candidates += await connection.get_component_candidates(component=1, addresses=list(addresses))
            connection._local_candidates_end = True

    async def add_trickle(self, fragment: TrickleFragment) -> None:
        """Remote candidates sent after the offer (RFC 8840); an ICE restart is refused."""
        remote = self._pc.remoteDescription
        if fragment.ice_ufrag and remote is not None and f"a=ice-ufrag:{fragment.ice_ufrag}" not in remote.sdp:
            raise OfferError(422, "ice_restart_unsupported",
                             "ICE restarts are not supported: DELETE this session and POST a new offer")
        mids = [t.mid for t in self._pc.getTransceivers()]
        try:
            for mid, line in fragment.candidates:
                candidate = candidate_from_sdp(line.removeprefix("candidate:"))
                candidate.sdpMid = mid or (mids[0] if mids else None)
                await self._pc.addIceCandidate(candidate)
            if fragment.end_of_candidates:
                await self._pc.addIceCandidate(None)  # type: ignore[arg-type]
        except (ValueError, AssertionError, IndexError, KeyError) as exc:  # what aiortc/aioice raise for odd candidates
            raise OfferError(400, "malformed_sdpfrag", f"malformed SDP fragment: {exc}") from None

    # --- media ------------------------------------------------------------------------------
    def _arrived(self, kind: str, frame: Any, clock_rate: int) -> int:
        """A decoded frame of a track arrived: the session has media now; its FLV timestamp (ms)."""
        now = time.monotonic()
        self.stats.last_media_at = now
        return self._clock.to_ms(kind, frame.timestamp, clock_rate, now)

    def _converter(self, kind: str, name: str, feed: Callable[[bytes, int], Iterable[tuple[int, bytes]]], clock_rate: int,
                   maxsize: int, deliver: Callable[[list[tuple[int, bytes]]], None]) -> _Converter:
        """A converter thread for a track: what ``feed`` makes (pts in ``clock_rate`` units) comes back to
        ``deliver`` in FLV milliseconds on the session's timeline (never before 0)."""
        offset = self._clock.offset_ms(kind)

        def convert(data: bytes, rtp_ts: int) -> list[tuple[int, bytes]]:
            return [(max(0, round(offset + pts * 1000 / clock_rate)), out) for pts, out in feed(data, rtp_ts)]

        return _Converter(f"whip-{name}-{self.id[:8]}", convert, maxsize, deliver, self._loop, self._on_drop)

    def _on_video_frame(self, codec: Any, frame: Any) -> None:
        if self.closed:
            return
        self.stats.video_frames_in += 1
        ts_ms = self._arrived("video", frame, VIDEO_CLOCK)
        name = codec.name.lower()
        if name == "h264":
            self._deliver_video(self._avc.push(frame.data, ts_ms))
        elif name == "vp8":
            if self._vp8 is None:
                transcoder = Vp8ToH264(self.options.transcode_bitrate, self.options.keyframe_seconds)
                self._vp8 = self._converter("video", "vp8", transcoder.feed, VIDEO_CLOCK, VIDEO_QUEUE_FRAMES,
                                            self._on_transcoded)
            if not self._vp8.submit(frame.data, frame.timestamp):
                self.stats.last_keyframe_at = 0.0  # the decoder lost a frame: ask for a keyframe soon

    def _on_transcoded(self, access_units: list[tuple[int, bytes]]) -> None:
        for ts_ms, au in access_units:
            self._deliver_video(self._avc.push(au, ts_ms))

    def _deliver_video(self, tags: list[tuple[int, bytes]]) -> None:
        if self.closed or not tags:
            return
        if self._avc.dimensions and self._avc.dimensions != self._sent_dimensions:
            self._sent_dimensions = self._avc.dimensions
            if self._announced:
                asyncio.ensure_future(self._send_metadata())  # else the announcement carries them
        for ts_ms, body in tags:
            if body[1] == 1:  # a frame (not the decoder configuration)
                # Decode times must increase: a browser's frames bunched by a stall can map to one
                # millisecond, and the packager's muxer refuses a repeated DTS.
                ts_ms = max(ts_ms, self._last_video_ms + 1)
                self._last_video_ms = ts_ms
                if body[0] == 0x17:
                    self.stats.last_keyframe_at = time.monotonic()
            self._emit("video", ts_ms, body)
            self.stats.video_tags_out += 1
        self._video_started = self._video_started or self._avc.started

    def _on_audio_frame(self, codec: Any, frame: Any) -> None:
        if self.closed:
            return
        self.stats.audio_frames_in += 1
        self._arrived("audio", frame, OPUS_CLOCK)  # the clock maps this track from its first frame on
        if self._audio is None:
            transcoder = OpusToAac(self.options.audio_bitrate)
            self._emit("audio", 0, transcoder.sequence_header)
            self._audio = self._converter("audio", "opus", transcoder.feed, OPUS_CLOCK, AUDIO_QUEUE_FRAMES, self._on_aac)
        self._audio.submit(frame.data, frame.timestamp)

    def _on_aac(self, tags: list[tuple[int, bytes]]) -> None:
        if self.closed:
            return
        if self.summary.video and not self._video_started:
            self.stats.audio_held_back += len(tags)  # the stream starts at the first video keyframe
            return
        for ts_ms, body in tags:
            ts_ms = max(ts_ms, self._last_audio_ms + 1)  # AAC priming packets may map to the same millisecond
            self._last_audio_ms = ts_ms
            self._emit("audio", ts_ms, body)
        self.stats.audio_tags_out += len(tags)

    def _emit(self, kind: str, ts_ms: int, body: bytes) -> None:
        """To the sink, after the metadata that announces the publish (sent once, at the first tag)."""
        if self._announced:
            self.sink.on_media(kind, ts_ms, body)
            return
        self._held.append((kind, ts_ms, body))
        if self._announce is None:
            self._announce = asyncio.ensure_future(self._announce_publish())

    async def _announce_publish(self) -> None:
        try:
            await self._send_metadata()
        finally:
            held, self._held = self._held, []
            self._announced = True
            if not self.closed:
                for kind, ts_ms, body in held:
                    self.sink.on_media(kind, ts_ms, body)

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {"encoder": "WHIP (aiortc)"}
        if self.summary.video:
            data["videocodecid"] = 7
            if self._sent_dimensions:
                data["width"], data["height"] = self._sent_dimensions
        if self.summary.audio:
            data.update({"audiocodecid": 10, "audiosamplerate": OPUS_CLOCK, "stereo": True})
        return data

    async def _send_metadata(self) -> None:
        if not self.closed:
            await self.sink.on_metadata(self.metadata())

    # --- lifecycle --------------------------------------------------------------------------
    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            log.info("WHIP session %s from %s connected after %.2f s", self.id[:8], self.remote, self.connected_at - self.created)
        elif state in ("failed", "closed"):
            self.schedule_close(f"peer connection {state}")

    async def _supervise(self) -> None:
        """ICE timeout, media timeout, and keyframe requests on the segment clock."""
        options = self.options
        while not self.closed:
            await asyncio.sleep(_SUPERVISE_PERIOD)
            now = time.monotonic()
            if self.connected_at is None:
                if now - self.created > options.ice_timeout:
                    self.schedule_close(f"ICE/DTLS not connected after {options.ice_timeout:g} s")
                    return
                continue
            quiet_since = self.stats.last_media_at or self.connected_at
            if now - quiet_since > options.media_timeout:
                self.schedule_close(f"no media for {options.media_timeout:g} s")
                return
            if (self._video_receiver is not None and self._vp8 is None
                    and now - self.stats.last_keyframe_at >= options.keyframe_seconds
                    and now - self.stats.last_pli_at >= options.keyframe_seconds):
                await self._request_keyframe()
            elif self._vp8 is not None and self._vp8.dropped and now - self.stats.last_keyframe_at > 1.0 \
                    and now - self.stats.last_pli_at >= 1.0:
                await self._request_keyframe()

    async def _request_keyframe(self) -> None:
        """Browsers send a keyframe only when asked (PLI); HLS needs one per segment."""
        receiver = self._video_receiver
        if receiver is None:
            return
        self.stats.last_pli_at = time.monotonic()
        for source in receiver.getSynchronizationSources():
            self.stats.plis += 1
            await receiver._send_rtcp_pli(source.source)  # aiortc has no public PLI call

    def schedule_close(self, reason: str) -> None:
        """Close from a callback (state change, takeover); idempotent."""
        if self._closing is None and not self.closed:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        current = asyncio.current_task()
        for task in (self._supervisor, self._announce):
            if task is not None and task is not current:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        try:
            await self._pc.close()
        except Exception as exc:  # aiortc left half-built by an offer it accepted: one line, no traceback
            log.warning("WHIP session %s: closing the peer connection failed: %r", self.id[:8], exc)
        for converter in (self._audio, self._vp8):
            if converter is not None:
                await converter.stop()
        try:
            await self.sink.close(reason)
        finally:
            self._on_closed(self)
        log.info("WHIP session %s from %s closed (%s): %d video / %d audio frames in, %d / %d tags out",
                 self.id[:8], self.remote, reason, self.stats.video_frames_in, self.stats.audio_frames_in,
                 self.stats.video_tags_out, self.stats.audio_tags_out)

    def health(self) -> dict[str, Any]:
        return {
            "connection": self._pc.connectionState,
            "video_codec": self.summary.video,
            "video_frames_in": self.stats.video_frames_in,
            "audio_frames_in": self.stats.audio_frames_in,
            "video_tags_out": self.stats.video_tags_out,
            "audio_tags_out": self.stats.audio_tags_out,
            "dropped_before_keyframe": self._avc.dropped,
            "dropped_by_converters": sum(c.dropped for c in (self._audio, self._vp8) if c is not None),
            "keyframe_requests": self.stats.plis,
            "announced": self._announced,  # the publish reached the sink (at the first frame)
        }


class WhipSessions:
    """The WHIP sessions of this process: created by POST, found by their URL, all closed on shutdown."""

    def __init__(self, publisher: StreamPublisher, options: WhipOptions, on_drop: Callable[[], None] = lambda: None) -> None:
        self.publisher = publisher
        self.options = options
        self.on_drop = on_drop  # a converter's queue was full: one frame dropped
        self.sessions: dict[str, WhipSession] = {}
        self.accepting = True
        self.dtls = DtlsPolicy()
        #: POSTs past the limit check and not yet in ``sessions`` (claiming the event, negotiating).
        self.reserved = 0

    async def create(self, offer: str, stream_key: str, remote: str) -> tuple[WhipSession, str]:
        """Check the offer, claim the event (``PublishRejected``), negotiate; returns the session and answer."""
        summary = inspect_offer(offer, allow_vp8=self.options.allow_vp8)
        if not self.accepting:
            raise PublishRejected(RefusalReason.SHUTTING_DOWN, "server is shutting down; retry shortly")
        # Counted before the first await: concurrent POSTs cannot all pass the check.
        if len(self.sessions) + self.reserved >= self.options.max_sessions:
            raise PublishRejected(RefusalReason.TOO_MANY_SESSIONS,
                                  f"this server already carries {self.options.max_sessions} WHIP sessions")
        holder: dict[str, WhipSession] = {}

        def terminate(reason: str) -> None:
            if "session" in holder:
                holder["session"].schedule_close(reason)

        self.reserved += 1
        try:
            sink = await self.publisher.start_publish(protocol="whip", app="live", stream_key=stream_key,
                                                      remote_address=remote, terminate=terminate)
        finally:
            self.reserved -= 1
        # No await from here to the insertion: the reservation passes to the session's entry.
        session_id = secrets.token_urlsafe(18)
        session = WhipSession(session_id, stream_key, sink, summary, self.options, remote, self._forget, self.dtls, self.on_drop)
        self.sessions[session_id] = session
        holder["session"] = session
        try:
            answer = await session.answer(offer)
        except BaseException:
            await session.close("negotiation failed")
            raise
        log.info("WHIP session %s: %s publish from %s with key %s (%s; DTLS %s)", session_id[:8], "+".join(summary.kinds),
                 remote, redact_key(stream_key), summary.video or "no video", "/".join(session.dtls_roles) or "?")
        return session, answer

    def get(self, session_id: str) -> WhipSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise WhipSessionGone(session_id)
        return session

    def _forget(self, session: WhipSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    async def close(self) -> None:
        self.accepting = False
        await asyncio.gather(*(s.close("server shutting down") for s in list(self.sessions.values())),
                             return_exceptions=True)
