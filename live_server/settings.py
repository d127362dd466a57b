"""The one settings object: defaults, then an optional TOML/YAML file, then ``LIVE_*`` environment.

Every tunable lives here with its default and a line saying what it is for, so nothing else in
the code base reads the environment or carries a default of its own (Esup-Pod's hundreds of
``getattr(settings, NAME, default)`` calls are what we avoid).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "LIVE_"
CONFIG_ENV = "LIVE_CONFIG"

Role = Literal["both", "web", "ingest"]


class SettingsError(Exception):
    """Configuration that cannot be used; the message is meant for a human."""


class Settings(BaseModel):
    """Effective configuration of one server process."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- HTTP -----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    public_url: str = Field(
        "",
        description="Base URL viewers use (https://live.example.edu); empty means http://host:port.",
    )
    role: Role = Field("both", description="web (pages, API, chat), ingest (RTMP/WHIP, packagers) or both.")
    node_name: str = Field("", description="Name of this process in a cluster (shown as a stream's ingest node); empty: host:port.")
    log_level: str = Field("INFO", description="Python logging level.")

    # --- Storage --------------------------------------------------------------------------
    data_dir: Path = Field(Path("./var"), description="Folder for the SQLite database and the secret key.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; empty means SQLite at <data_dir>/live.db. "
        "postgresql+psycopg://user@host/db switches to PostgreSQL.",
    )
    media_dir: Path = Field(Path("./var/media"), description="Live HLS output and recordings.")
    redis_url: str = Field("", description="redis://host:6379/0 to share chat rooms between processes; empty: in-process.")
    db_workers: int = Field(
        4, ge=1, le=64, description="Threads that run catalog work (one transaction each) off the event loop; "
        "the connection pool (5 + 5 overflow) should not be smaller.",
    )

    # --- Security -------------------------------------------------------------------------
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Signs session cookies and media URLs; empty means generated once into <data_dir>/secret_key.",
    )
    session_max_age_seconds: int = Field(14 * 24 * 3600, gt=0, description="Login session lifetime.")
    media_pass_lifetime_seconds: int = Field(
        600, ge=60, le=24 * 3600,
        description="Lifetime of the cookie that opens a password event's or recording's media; the page and the "
        "player's playlist requests renew it while someone watches, so it only bounds how long a pass outlives "
        "the viewer. A new password or visibility voids every pass at once.",
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Secure flag on cookies: auto sets it when the request came over TLS."
    )
    login_attempts_per_window: int = Field(5, gt=0, description="Failed logins allowed per account from one address.")
    login_account_attempts_per_window: int = Field(
        20, gt=0, description="Failed logins allowed per account from all addresses together (distributed guessing)."
    )
    login_address_attempts_per_window: int = Field(
        100, gt=0, description="Failed logins allowed per address for all accounts together: a ceiling high enough "
        "for a campus NAT, where one person must not lock everyone out.",
    )
    login_window_seconds: int = Field(300, gt=0, description="Window for the failed-login limits; a lockout lasts one window.")
    login_max_backoff_seconds: int = Field(
        3600, gt=0, description="Each further lockout of the same key doubles its length, up to this."
    )
    http_header_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline to receive a request's line and headers; a slower connection is closed."
    )
    http_body_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="A request body that sends nothing for this long is abandoned and its connection closed."
    )
    http_max_connections: int = Field(
        6000, gt=0, description="Open HTTP connections accepted at once (websockets included); more are closed at once. "
        "An LL-HLS player over HTTP/1.1 holds about three with the chat (a blocking playlist request, a part, a "
        "websocket): 6,000 is a 1,500-student lecture hall with room; the open-files limit is raised to match."
    )
    hsts_max_age_seconds: int = Field(
        31536000, ge=0, description="Strict-Transport-Security max-age on responses served over TLS (or via a trusted "
        "proxy with X-Forwarded-Proto https); 0 sends none.",
    )
    max_request_bytes: int = Field(1024 * 1024, gt=0, description="Largest API request body accepted.")

    # --- Media tools ----------------------------------------------------------------------
    ffmpeg: str = Field(
        "",
        description="ffmpeg binary. Empty: the one bundled in the imageio-ffmpeg wheel (never PATH); a path "
        "(with a /): that file; a bare name such as ffmpeg: looked up on PATH (opt-in). The choice, its "
        "version and origin are logged at start and shown by `live-server config`.",
    )

    # --- RTMP ingest ----------------------------------------------------------------------
    rtmp_enabled: bool = Field(True, description="Run the RTMP listener in this process.")
    rtmp_host: str = Field(
        "", description="Address the RTMP listener binds to; empty: the same as host. 0.0.0.0 accepts encoders "
        "from other machines.",
    )
    rtmp_port: int = Field(1935, ge=0, le=65535, description="RTMP port (0 picks a free one).")
    rtmp_public_url: str = Field("", description="rtmp://host[:port]/live shown to lecturers; empty: derived.")
    rtmp_idle_timeout_seconds: float = Field(10.0, gt=0, description="Close RTMP connections silent this long.")
    rtmp_read_rest_seconds: float = Field(
        0.02, ge=0, le=0.1, description="A publishing RTMP connection rests this long between reads, so one read "
        "takes the several small writes an encoder makes per frame (about a fifth less CPU per stream); a frame "
        "reaches the packager at most this much later. 0: read whenever bytes arrive.",
    )
    rtmp_handshake_timeout_seconds: float = Field(
        10.0, gt=0, description="An RTMP connection must finish handshake, connect and publish within this long "
        "of connecting (however slowly it trickles bytes), or it is closed.",
    )
    rtmp_max_pending_connections: int = Field(
        128, ge=1, description="RTMP connections that have not published yet, in total; more are closed at once."
    )
    rtmp_max_pending_per_address: int = Field(
        16, ge=1, description="RTMP connections that have not published yet, per client address; more are closed at once."
    )
    rtmp_min_chunk_size: int = Field(
        128, ge=1, le=65536, description="Smallest RTMP chunk size a client may set (the protocol default; "
        "encoders use 4096); a smaller Set Chunk Size closes the connection.",
    )
    rtmp_max_buffer_bytes: int = Field(
        32 * 2**20, ge=2**20, description="Memory one publishing RTMP connection may hold in buffers (unparsed "
        "input and incomplete messages, counted as allocated bytes).",
    )
    rtmp_max_buffer_bytes_before_publish: int = Field(
        512 * 1024, ge=64 * 1024, description="The same before its publish is accepted (unauthenticated).",
    )
    publish_takeover: bool = Field(False, description="A second publisher on a live key replaces the first.")

    # --- WHIP (WebRTC) ingest ---------------------------------------------------------------
    whip_enabled: bool = Field(True, description="Accept WebRTC publishes (WHIP, RFC 9725) at /whip in ingest processes.")
    whip_ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN servers for WHIP peers, advertised in Link headers, e.g. "
        "stun:stun.example.edu:3478,turn:turn.example.edu:3478?transport=udp. Empty: host candidates only.",
    )
    whip_turn_username: str = Field("", description="Username for the turn:/turns: servers in whip_ice_servers.")
    whip_turn_credential: SecretStr = Field(
        SecretStr(""), description="Credential for the turn:/turns: servers (given to publishers in Link headers)."
    )
    whip_host_addresses: list[str] = Field(
        default_factory=list,
        description="Local IP addresses offered as ICE host candidates; empty: every interface except loopback. "
        "127.0.0.1 for loopback tests.",
    )
    whip_ice_timeout_seconds: float = Field(
        15.0, gt=0, description="A WHIP peer not connected (ICE and DTLS) this long after its offer is closed."
    )
    whip_media_timeout_seconds: float = Field(10.0, gt=0, description="Close a connected WHIP session that sends no media this long.")
    whip_max_sessions: int = Field(20, ge=1, description="Concurrent WHIP sessions per process; more get 503.")
    whip_vp8_transcode: bool = Field(
        True, description="Accept VP8 from browsers that will not send H.264 and transcode it to H.264 "
        "(about a core per 720p30 stream); false: VP8-only offers get 422.",
    )
    whip_transcode_bitrate_kbps: int = Field(2500, ge=100, le=50000, description="H.264 bitrate of the VP8 transcode.")
    whip_audio_bitrate_kbps: int = Field(128, ge=32, le=512, description="AAC bitrate of the Opus to AAC conversion.")
    whip_ladder_settle_seconds: float = Field(
        3.0, ge=0, le=10, description="An ABR event first published over WHIP chooses its ladder's rungs (none taller "
        "than the source) from the tallest picture sent within this long of the first frame, as a browser's encoder "
        "starts below its camera's size while it probes the bandwidth: its first segment comes up to this much later "
        "(not at all once a picture keeps every rung). RTMP is not waited for. 0: the first picture's.",
    )

    # --- Live packaging -------------------------------------------------------------------
    segment_seconds: float = Field(2.0, ge=0.5, le=10.0, description="HLS segment length and keyframe interval.")
    live_window_segments: int = Field(6, ge=3, le=60, description="Segments in the live sliding-window playlist.")
    grace_period_seconds: float = Field(60.0, ge=0, description="How long a disconnected event stays live.")
    ll_hls: bool = Field(
        True, description="Low-Latency HLS (fMP4 parts, blocking playlist reload) for every live event: passthrough "
        "H.264+AAC packaged in-process without ffmpeg, ABR ladders encoded by one ffmpeg whose renditions feed the "
        "same muxer (recordings keep its fMP4 segments). Off: plain HLS (MPEG-TS, ffmpeg's segmenter) for all.",
    )
    ll_hls_part_target_seconds: float = Field(
        0.334, ge=0.1, le=1.0, description="LL-HLS part target duration (PART-TARGET); players stay about three "
        "parts behind the live edge. 0.334 rather than 1/3: FLV times are whole milliseconds.",
    )
    ll_hls_playlist_files_every_part: bool = Field(
        False, description="Write each LL-HLS rendition's live.m3u8/dvr.m3u8 to the media folder at every part, for "
        "web-only nodes sharing it (they answer blocking reloads from these files). Off: at every segment and at the "
        "end (this node answers from memory); always on for role = ingest.",
    )
    ingest_drain_seconds: float = Field(
        0.0, ge=0, description="On shutdown, refuse new publishes and let live events finish for up to this long "
        "(rolling restarts of ingest nodes); 0 ends them at once.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses/networks of reverse proxies (nginx) whose X-Forwarded-For/-Proto are believed, "
        "e.g. 127.0.0.1,10.0.0.0/8. Empty: the direct peer is the client.",
    )
    metrics_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Addresses/networks allowed to read /metrics (it names live events, private and unlisted ones "
        "included), e.g. 10.0.0.0/8 for a Prometheus on the private network. Empty: none (use metrics_token).",
    )
    metrics_token: SecretStr = Field(
        SecretStr(""), description="Also allow /metrics to requests with 'Authorization: Bearer <token>' (Prometheus "
        "'authorization' in its scrape config). Empty: addresses only.",
    )
    media_accel_redirect: str = Field(
        "",
        description="Behind nginx: internal location (e.g. /_media/) mapped to media_dir; the app checks access "
        "and answers segment requests with X-Accel-Redirect so nginx sends the bytes. Empty: the app sends them.",
    )
    media_decision_cache_seconds: int = Field(
        5, ge=0, le=15, description="Behind nginx (with media_accel_redirect): how long nginx keeps the app's access "
        "decision for one viewer (cookies, address, browser) and one rendition of a live event, so its parts and playlists "
        "cost the app one request per viewer per this many seconds; a viewer is counted and a revoked login or pass acts "
        "within it. Shorter than audience_slot_seconds (watch time is counted from these decisions); 0: decide every request.",
    )
    media_cache_mb: int = Field(
        256, ge=0, description="Memory for live and replay media files served by this process (playlists, segments; "
        "revalidated by mtime), MiB; 0 reads every file from disk.",
    )
    media_directory_ttl_seconds: float = Field(
        2.0, gt=0, le=60, description="How long an event's or recording's access facts (visibility, folder) are "
        "cached for media requests: a change of visibility reaches viewers within it.",
    )
    media_identity_ttl_seconds: float = Field(
        2.0, ge=0, le=10, description="How long a login session's person (account, role, active) is trusted by media "
        "requests before one query re-checks every cached session; logout, deactivation and role changes act at once "
        "in this process, within it in the others. 0: one query per media request that needs a login.",
    )
    media_directory_miss_ttl_seconds: float = Field(
        0.5, gt=0, le=60, description="How long an unknown live slug stays unknown to media requests "
        "(an event about to go live should not 404 for long).",
    )

    # --- Recordings -----------------------------------------------------------------------
    recording_enabled: bool = Field(
        True, description="Record every live event (each event can still opt out with its record switch)."
    )
    import_max_bytes: int = Field(8 * 2**30, gt=0, description="Largest video a lecturer may import into the catalog (bytes).")
    subtitle_max_bytes: int = Field(
        512 * 1024, gt=0, description="Largest subtitle file (WebVTT or SubRip) that may be uploaded as a recording's "
        "text track (bytes; requests stay within max_request_bytes).",
    )
    import_segment_seconds: float = Field(
        4.0, ge=1.0, le=10.0, description="HLS segment length of imported videos (no live edge to keep close: "
        "longer segments, fewer files).",
    )
    recording_min_free_mb: int = Field(
        1024, ge=0, description="Free-space floor of the media disk (MiB). Below it no recording starts, running "
        "recordings pause and live DVR keeps only the live window (older segments deleted) while the live stream "
        "goes on; /readyz answers 503. All resume when space returns.",
    )
    recording_retention_days: int = Field(
        0, ge=0, description="Delete recordings older than this many days; 0 keeps them forever (opt-in policy)."
    )
    recording_retention_check_seconds: float = Field(
        3600.0, gt=0, description="How often the retention policy looks for recordings to delete."
    )
    recording_storage: Literal["local", "s3"] = Field(
        "local", description="Where finished recordings live: local (the media folder) or s3 (an S3-compatible "
        "object store such as MinIO; needs the s3 extra and s3_bucket). Live media always stays on local disk.",
    )
    s3_endpoint_url: str = Field("", description="S3 API endpoint, e.g. https://minio.example.edu:9000; empty: AWS S3 in s3_region.")
    s3_bucket: str = Field("", description="Bucket for the recordings (created beforehand; see the README for its CORS rule).")
    s3_region: str = Field("us-east-1", description="Region of the bucket (MinIO accepts any name; AWS needs the bucket's).")
    s3_access_key: str = Field("", description="S3 access key id; empty: boto3's own credential chain (environment, instance role).")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key that goes with s3_access_key.")
    s3_prefix: str = Field("", description="Key prefix in the bucket (e.g. live/); objects are <prefix><media path>/<file>.")
    s3_url_ttl_seconds: int = Field(
        300, ge=60, le=7 * 24 * 3600, description="Lifetime of the presigned URLs that VOD media requests are redirected to."
    )
    s3_upload_threads: int = Field(4, ge=1, le=64, description="Files of a recording uploaded in parallel (threads).")
    s3_retry_seconds: float = Field(
        300.0, gt=0, description="How often recordings still on local disk (a failed upload) are uploaded again; also at start."
    )

    # --- Captions -------------------------------------------------------------------------
    vosk_models: dict[str, Path] = Field(
        default_factory=dict, description="Vosk model folder per language, e.g. fr=/srv/vosk-fr,en=/srv/vosk-en."
    )
    vosk_preload: bool = Field(
        True, description="Load every configured Vosk model in the background when a node that captions starts, so the "
        "first captioned lecture after a start is captioned from its first words (a model takes seconds to load); "
        "false loads each model at its first use (less memory for languages seldom used).",
    )
    caption_threads: int = Field(
        0, ge=0, le=64, description="Worker threads running Vosk recognizers (shared by all streams); 0 = one per core."
    )
    caption_queue_seconds: float = Field(
        10.0, gt=0, le=120, description="Audio a stream may queue for its recognizer; past it the oldest audio is dropped."
    )
    caption_chunk_seconds: float = Field(
        0.25, ge=0.05, le=2.0, description="Audio handed to the recognizer at once (also how often partial captions update)."
    )
    caption_pause_seconds: float = Field(
        0.5, ge=0.2, le=3.0, description="Silence after the last word that ends an utterance and sends its final cues."
    )
    caption_max_lag_seconds: float = Field(
        6.0, gt=0, le=60, description="A WebVTT segment is published at the latest this long after its video segment."
    )
    caption_save_seconds: float = Field(5.0, gt=0, le=300, description="How often new caption cues are written to the catalog.")
    caption_finish_seconds: float = Field(
        15.0, gt=0, le=300, description="At the end of a live run, how long captions may take to catch up before the rest is dropped."
    )

    transcription_workers: int = Field(
        1, ge=0, le=16, description="Recordings this process transcribes at once (one job per worker); 0 = none here."
    )
    transcription_attempts: int = Field(3, ge=1, le=20, description="Tries a transcription gets before it is marked failed.")
    transcription_retry_seconds: float = Field(60.0, ge=0, le=86400, description="Wait before a failed transcription is tried again.")
    transcription_progress_seconds: float = Field(
        2.0, gt=0, le=60, description="How often a transcription saves its progress and checks whether it was cancelled."
    )
    transcription_stale_seconds: float = Field(
        120.0, gt=0, le=86400, description="A running transcription whose worker gave no sign of life this long is queued again."
    )
    transcription_poll_seconds: float = Field(
        5.0, gt=0, le=600, description="How often idle transcription workers look for jobs queued by other processes."
    )
    transcription_yield_seconds: float = Field(
        1.0, gt=0, le=60, description="Transcriptions pause while a live caption stream has more than this much audio queued."
    )
    transcription_nice: int = Field(
        10, ge=0, le=19, description="Scheduling niceness of transcription threads and their ffmpeg (live captions keep 0)."
    )

    # --- Audio description -----------------------------------------------------------------
    espeak_ng: str = Field(
        "espeak-ng", description="The espeak-ng binary that speaks audio descriptions (a path, or a name looked up on PATH).",
    )
    audio_description_nice: int = Field(
        10, ge=0, le=19, description="Scheduling niceness of audio-description generation (espeak-ng and ffmpeg).",
    )

    # --- Audience insight ------------------------------------------------------------------
    audience_enabled: bool = Field(
        True, description="Collect audience figures (viewers per minute, watch time, replay heatmaps) for event owners.",
    )
    audience_flush_seconds: float = Field(
        15.0, gt=0, le=300, description="How often a process writes what it collected about the audience, in one batch "
        "(never a write per playlist request).",
    )
    audience_slot_seconds: int = Field(
        10, ge=1, le=60, description="Live watch time is counted in slots of this many seconds: a viewer whose player "
        "polled in a slot watched it. Must divide 60.",
    )
    audience_bucket_seconds: int = Field(
        5, ge=1, le=600, description="Width of a replay heatmap bucket, in seconds of the recording.",
    )
    audience_beacon_seconds: float = Field(
        30.0, ge=5, le=600, description="How often a replay player reports the ranges it played (batched).",
    )
    audience_beacon_max_ranges: int = Field(
        64, ge=1, le=1000, description="Most watched ranges one replay beacon may carry; more is refused (422).",
    )
    audience_beacon_max_bytes: int = Field(
        8192, ge=256, le=1024 * 1024, description="Largest replay beacon body; a bigger one is refused (413) unread.",
    )
    audience_retention_days: int = Field(
        90, ge=1, description="Per-viewer audience sessions are kept this many days, then reduced to counts and "
        "distributions that name nobody.",
    )
    audience_retention_check_seconds: float = Field(
        3600.0, gt=0, description="How often sessions past their retention are reduced.",
    )

    # --- BigBlueButton ---------------------------------------------------------------------
    bbb_request_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Deadline of one BigBlueButton API call (servers are configured by admins: "
        "`live-server bbb servers add` or /admin/bigbluebutton).",
    )
    bbb_download_timeout_seconds: float = Field(
        3600.0, gt=0, description="Longest download of a BigBlueButton recording's video file (imports are capped "
        "by import_max_bytes too).",
    )
    bbb_poll_seconds: float = Field(
        300.0, ge=0, description="How often new recordings of auto-import meetings are looked for; 0: no polling "
        "(the recording-ready callback still imports).",
    )
    bbb_poll_max_seconds: float = Field(
        3600.0, gt=0, description="While a BigBlueButton server fails, the polling interval doubles up to this.",
    )
    bbb_import_visibility: Literal["public", "authenticated", "unlisted"] = Field(
        "authenticated", description="Who may watch a BigBlueButton recording once imported (its owner can change it).",
    )

    # --- Chat -----------------------------------------------------------------------------
    chat_max_message_length: int = Field(500, gt=0, le=10000, description="Longest chat message, in characters.")
    chat_history_size: int = Field(50, ge=0, le=1000, description="Messages sent to a viewer on join.")
    chat_rate_messages: int = Field(5, gt=0, description="Chat messages and questions one person may send per rate window.")
    chat_rate_bytes: int = Field(2000, gt=0, description="Bytes of text one person may send per rate window.")
    chat_rate_window_seconds: float = Field(10.0, gt=0, description="Window of the per-person chat rate limits.")
    chat_max_strikes: int = Field(20, gt=0, description="Refused chat actions per rate window before the connection is closed.")
    chat_batch_ms: int = Field(
        100, ge=0, le=2000,
        description="Chat messages of an event go out at most once per this many ms, coalesced into one emit; 0 sends each at once.",
    )
    chat_direct_fanout: bool = Field(
        True,
        description="Write each chat emit, framed once, straight to every idle client's socket, uncompressed. "
        "False: python-socketio's own fan-out (a task per recipient, permessage-deflate): the benchmark's "
        "reference, and a fallback should an engineio upgrade change what the direct path relies on.",
    )
    chat_fanout_max_bytes: int = Field(
        256 * 1024, ge=16 * 1024, description="A chat client with more than this many bytes unsent is skipped "
        "(the packet counted in live_dropped_frames_total{consumer=\"chat_fanout\"}) rather than buffered.",
    )
    chat_fanout_max_packets: int = Field(
        64, ge=1, description="A chat client whose writer queue holds this many packets is skipped (counted the same way).",
    )
    chat_max_frame_bytes: int = Field(16384, ge=1024, description="Largest Socket.IO frame; a bigger one closes the connection.")
    chat_redis_channel: str = Field(
        "live-chat", min_length=1, description="Redis pub/sub channel and key prefix shared by the processes of one site."
    )
    chat_presence_seconds: float = Field(5.0, gt=0, description="How often viewer counts are shared and pushed to viewers.")
    chat_room_ttl_seconds: float = Field(
        2.0, gt=0, le=60, description="How stale an event's chat settings (open, slow mode, who may post) may be in a "
        "process that did not make the change; a join storm reads them once per this period.",
    )
    chat_history_ttl_seconds: float = Field(
        2.0, gt=0, le=60, description="A join storm reads an event's chat history and questions from the catalog "
        "at most this often.",
    )
    chat_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Other origins whose pages may open the chat socket, e.g. https://lms.example.edu "
        "(a page that uses socket.io-client itself; our /embed pages are same-origin and need nothing). "
        "The server's own origin is always allowed; * allows any.",
    )
    chat_guest_identities_per_address: int = Field(
        10, gt=0, description="New guest identities one address may start per guest window; more are refused."
    )
    chat_guest_messages_per_address: int = Field(
        30, gt=0, description="Chat messages and questions all guests of one address may send together per rate window."
    )
    chat_guest_window_seconds: float = Field(
        600.0, gt=0, description="Window of the per-address guest identity limit."
    )

    # --- LTI 1.3 (Moodle and other LMSs) ------------------------------------------------------
    lti_login_lifetime_seconds: int = Field(
        300, ge=30, le=3600, description="How long an LTI login (state and nonce) waits for the platform's launch.",
    )
    lti_state_cookie_required: bool = Field(
        True, description="The LTI launch must come from the browser that started the login (its state cookie, "
        "SameSite=None; Secure over https). false: a launch without the cookie is accepted on the single-use "
        "server-side state alone (browsers that block cookies in cross-site frames); a wrong cookie is always refused.",
    )
    lti_jwks_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Deadline for fetching a platform's public keys (its JWKS URL).",
    )
    lti_jwks_cache_seconds: float = Field(
        300.0, ge=0, description="How long a platform's keys are kept; an unknown key id refetches them sooner.",
    )
    lti_clock_leeway_seconds: float = Field(
        60.0, ge=0, le=600, description="Clock difference tolerated on an id_token's exp and iat.",
    )
    lti_requests_per_address: int = Field(
        600, gt=0, description="LTI login initiations and launches one address may make per window (a launch is "
        "two requests; a lecture hall behind one NAT starts together); more answer 429.",
    )
    lti_rate_window_seconds: float = Field(
        60.0, gt=0, description="Window of the per-address LTI request limit.",
    )
    lti_login_sweep_seconds: float = Field(
        60.0, gt=0, description="How often expired LTI logins (state and nonce never used) are deleted.",
    )
    lti_login_sweep_batch: int = Field(
        1000, gt=0, description="Expired LTI logins deleted per statement (a sweep repeats until none is left).",
    )

    @field_validator("audience_slot_seconds")
    @classmethod
    def _slot_divides_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @model_validator(mode="after")
    def _decisions_within_a_slot(self) -> "Settings":
        seconds = self.media_decision_cache_seconds
        # Only behind nginx (X-Accel) are decisions kept: a server on its own sees every request.
        if seconds and self.media_accel_redirect and self.audience_enabled and seconds >= self.audience_slot_seconds:
            raise ValueError(f"media_decision_cache_seconds ({seconds}) must be shorter than audience_slot_seconds "
                             f"({self.audience_slot_seconds}): a viewer's watch time is counted from its decisions")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("chat_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("chat_allowed_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        origins = []
        for item in value:
            origin = item.strip().rstrip("/").lower()
            if origin != "*" and (not re.fullmatch(r"https?://[^/\s]+", origin)):
                raise ValueError(f"{item!r} is not an origin: write scheme://host[:port], e.g. https://lms.example.edu")
            origins.append(origin)
        return origins

    @field_validator("trusted_proxies", "metrics_allow", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", "metrics_allow")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("whip_ice_servers", "whip_host_addresses", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("whip_ice_servers")
    @classmethod
    def _ice_urls(cls, value: list[str]) -> list[str]:
        import re

        for url in value:
            if not re.match(r"^(stun|stuns|turn|turns):[^\s<>\"]+$", url):
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")
        return value

    @field_validator("whip_host_addresses")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return value

    @field_validator("media_accel_redirect")
    @classmethod
    def _internal_location(cls, value: str) -> str:
        if value and not (value.startswith("/") and value.endswith("/")):
            raise ValueError("must be an nginx location path that starts and ends with '/', e.g. /_media/")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    @model_validator(mode="after")
    def _s3_bucket_given(self) -> "Settings":
        if self.recording_storage == "s3" and not self.s3_bucket:
            raise ValueError("recording_storage = s3 needs s3_bucket (and s3_endpoint_url for MinIO and other non-AWS stores)")
        return self

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("public_url", "rtmp_public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("vosk_models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_mapping(value)
        return value

    @model_validator(mode="after")
    def _rtmp_url_scheme(self) -> "Settings":
        if self.rtmp_public_url and not self.rtmp_public_url.startswith("rtmp"):
            raise ValueError("rtmp_public_url must start with rtmp:// or rtmps://")
        return self

    # --- derived values --------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'live.db').as_posix()}"

    @property
    def audience_beacon_max_seconds(self) -> float:
        """Media seconds one replay beacon may carry: what was played since the previous one at up to 2x speed,
        with slack for a late one (the server refuses more; the player splits its batches by it)."""
        return self.audience_beacon_seconds * 4 + 60

    @property
    def effective_node_name(self) -> str:
        import socket

        return self.node_name or f"{socket.gethostname()}:{self.port}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        return f"http://{self.host}:{self.port}"

    @property
    def effective_ll_hls_playlist_files_every_part(self) -> bool:
        """Per-part playlist files where another node may read them: an ingest-only node always has web peers."""
        return self.ll_hls_playlist_files_every_part or self.role == "ingest"

    @property
    def effective_rtmp_host(self) -> str:
        """Where the RTMP listener binds: rtmp_host, else the HTTP host."""
        return self.rtmp_host or self.host

    @property
    def rtmp_url(self) -> str:
        if self.rtmp_public_url:
            return self.rtmp_public_url
        host = self.host if self.rtmp_host in ("", "0.0.0.0", "::") else self.rtmp_host
        if self.public_url:
            host = self.public_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        port = "" if self.rtmp_port == 1935 else f":{self.rtmp_port}"
        return f"rtmp://{host}{port}/live"

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data, secrets replaced by asterisks (for `live-server config`)."""
        data = self.model_dump(mode="json")
        data["secret_key"] = "********" if self.secret_key.get_secret_value() else ""
        data["s3_secret_key"] = "********" if self.s3_secret_key.get_secret_value() else ""
        data["metrics_token"] = "********" if self.metrics_token.get_secret_value() else ""
        for name in ("database_url", "redis_url", "s3_endpoint_url"):
            data[name] = mask_url_password(data[name])
        data["effective_database_url"] = mask_url_password(self.effective_database_url)
        return data


def parse_mapping(text: str) -> dict[str, str]:
    """Parse ``fr=/a,en=/b`` (the environment form of a mapping)."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[key.strip()] = val.strip()
    return result


def mask_url_password(url: str) -> str:
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":********"
    return f"{scheme}://{creds}@{host}"


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML settings file; a ``[live]`` table or top-level keys are both accepted."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must contain a table of settings")
    if isinstance(data.get("live"), dict):
        data = data["live"]
    return data


def environment_values(environ: Mapping[str, str]) -> dict[str, str]:
    fields = Settings.model_fields
    values: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in fields:
            raise SettingsError(f"unknown setting {name} (known: {', '.join(ENV_PREFIX + f.upper() for f in fields)})")
        values[key] = value
    return values


def load_settings(
    config_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults, then the file (argument or ``LIVE_CONFIG``), then ``LIVE_*``, then overrides."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file = config_file or env.get(CONFIG_ENV)
    if file:
        data.update(read_config_file(Path(file)))
    data.update(environment_values(env))
    data.update(overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        name = f"{loc} (env {ENV_PREFIX}{loc.split('.')[0].upper()})" if err["loc"] else loc
        given = err.get("input")
        shown = "" if isinstance(given, dict) or loc in ("secret_key", "s3_secret_key", "metrics_token") else f"; got {given!r}"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"  {name}: {message}{shown}")
    return "\n".join(lines)
