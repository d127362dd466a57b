"""The application factory: every component is built and wired here, and nowhere else.

``create_app`` builds each object once (constructors do no network I/O) and hands handlers their
collaborators as constructor arguments; ``cleanup_ctx`` only starts and stops what has a lifecycle.
A few objects are also kept on the app under their owners' ``AppKey``s, for tests and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import socketio
from aiohttp import web
from redis.asyncio import Redis

from audience.api import AudienceApi
from audience.collector import AUDIENCE, Audience
from audience.merge import RedisMerge
from audience import store as audience_store
from bbb.client import BbbClient
from bbb.deposit import BBB_DEPOSIT, BbbDeposit, RecordingReadyApi
from bbb.servers import BbbAdmin
from bbb.webinar import Webinars
from captions.captioner import SUBTITLES_FOLDER, LiveCaptions
from captions.transcriber import TranscriptionFailed
from captions.transcription import TRANSCRIPTIONS, AudioSource, Transcriptions
from captions.transcription_api import TranscriptionApi
from captions.vosk_models import ModelRegistry
from captions.socketio import SocketIOCaptionSink
from captions.web import CaptionsApi
from chat.api import ChatApi
from chat.fanout import ClientManager
from chat.server import CHAT, ChatServer
from ingest.live import LIVE, LiveStreams
from ingest.rtmp.server import RTMP, RtmpServer, rtmp_server_from_settings
from ingest.whip.handlers import WHIP, WhipApi, options_from_settings
from ingest.whip.session import WhipSessions
from live_server import migrations, security
from live_server.accounts import FailedLoginLimiter
from live_server.api.auth import AuthApi
from live_server.api.event_api import EventsApi
from live_server.cluster import LiveStatusBoard
from live_server.db import DB, Database
from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg
from live_server.http_server import CONNECTION_GUARD, ConnectionGuard
from live_server.logins import Logins
from live_server.metrics import METRICS, Metrics
from live_server.middleware import (
    content_security_policy,
    errors_middleware,
    forwarded_middleware,
    identity_middleware,
    metrics_middleware,
    route_ids_middleware,
    security_headers_middleware,
)
from live_server.ops import Ops
from lti.deep_linking import Tickets
from lti.platform_keys import PlatformKeys
from lti.tool import LTI_TOOL, LtiTool
from live_server.passes import MEDIA_PASS, MediaPasses
from live_server.session_people import SESSION_PEOPLE, SessionPeople
from live_server.models import Visibility
from live_server.settings import Settings
from recorder.recorder import Recorder
from recorder.storage import JOURNAL, RecordingFiles, copy_full_playlist
from vod.api import RecordingsApi
from vod.archive import RecordingArchiver
from vod.audio_description_api import AudioDescriptionApi
from vod.audio_descriptions import AudioDescriptions
from vod.catalog import RECORDINGS, RecordingCatalog
from vod.import_api import ImportApi
from vod.importer import Importer
from vod.media import RecordingDirectory, VodMediaHandler
from vod.objects import RecordingStores, StoreUnavailable, build_stores
from vod.subtitles import SubtitleMedia
from vod.tracks_api import TrackApi
from vod.page import ReplayPages, page_tracks
from web import pages
from web.account_pages import AccountPages
from web.admin_pages import AdminPages
from web.audience_tab import AudienceTab
from web.bbb_pages import BbbPages
from web.dashboard import Dashboard
from web.embed import EmbedPages
from web.guards import error_pages_middleware
from web.home import HomePages
from web.ll_files import LlFileStreams
from web.media import (
    MEDIA_CACHE, VIEWERS, CatalogMediaDirectory, LiveMediaHandler, LowLatencyStreams, MediaCache, ViewerCounter,
    media_preflight, player_handle,
)
from web.pages import Pages
from web.templating import setup_templates
from web.vendor import vendor_routes

log = logging.getLogger(__name__)
WEB_DIR = Path(pages.__file__).resolve().parent
Lifecycle = Callable[[web.Application], AsyncIterator[None]]


def create_app(settings: Settings, *, models: ModelRegistry | None = None) -> web.Application:
    ingest = settings.role in ("both", "ingest")
    guard = ConnectionGuard(settings.http_max_connections, settings.http_header_timeout_seconds,
                            settings.http_body_idle_timeout_seconds)
    metrics = Metrics()
    secret_key = security.load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir)
    db = Database(settings.effective_database_url, settings.db_workers, stream_key_cipher=security.StreamKeyCipher(secret_key))
    passes = MediaPasses(secret_key, settings.media_pass_lifetime_seconds)
    people = SessionPeople(db, settings.media_identity_ttl_seconds)
    viewers = ViewerCounter(window_seconds=max(20.0, settings.segment_seconds * 4))
    cache = MediaCache(settings.media_cache_mb * 2**20)
    live_directory = CatalogMediaDirectory(db, settings.media_dir, settings.media_directory_ttl_seconds,
                                           settings.media_directory_miss_ttl_seconds)
    limiter = FailedLoginLimiter(
        settings.login_attempts_per_window, settings.login_window_seconds,
        account_limit=settings.login_account_attempts_per_window, address_limit=settings.login_address_attempts_per_window,
        max_backoff_seconds=settings.login_max_backoff_seconds,
    )
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None  # connects on first use
    board = LiveStatusBoard(redis, settings.chat_redis_channel, settings.effective_node_name) if redis is not None else None
    ffmpeg = _ffmpeg(settings, required=ingest)

    # Recordings: the catalog (every role: API and replay media), imports, replay media, uploads to object storage.
    stores = build_stores(settings)  # boto3 loads its service model (no network)
    catalog = RecordingCatalog(db, settings.media_dir, ffmpeg, stores)
    importer = Importer(db, settings.media_dir, ffmpeg, settings.import_segment_seconds)
    recording_directory = RecordingDirectory(db, settings.media_dir, settings.media_directory_ttl_seconds)
    archiver: RecordingArchiver | None = None
    if stores.target is not None:
        def archived(recording_id: int, media_path: str) -> None:
            recording_directory.invalidate(recording_id)
            cache.forget_under(settings.media_dir / media_path)

        archiver = RecordingArchiver(catalog, stores.target, metrics, settings.s3_retry_seconds, archived)
        catalog.ready_listeners.append(archiver.schedule)
        importer.ready_listeners.append(archiver.schedule)

    # Audio description (issue 20): alternate audio renditions of recordings, made in the background.
    def descriptions_changed(recording_id: int, media_path: str) -> None:
        recording_directory.invalidate(recording_id)
        cache.forget_under(settings.media_dir / media_path)

    audio_descriptions = AudioDescriptions(db, settings.media_dir, ffmpeg, settings.espeak_ng,
                                           settings.audio_description_nice, descriptions_changed)

    # BigBlueButton (issue 19): recordings deposited through the importer, webinars broadcast to live events.
    bbb_client = BbbClient(settings.bbb_request_timeout_seconds, settings.bbb_download_timeout_seconds)
    deposit = BbbDeposit(db, bbb_client, importer, max_bytes=settings.import_max_bytes,
                         visibility=Visibility(settings.bbb_import_visibility), poll_seconds=settings.bbb_poll_seconds,
                         poll_max_seconds=settings.bbb_poll_max_seconds)
    webinars = Webinars(db, bbb_client, settings.rtmp_url, settings.base_url)

    # Speech models, loaded once and shared by live captions and transcriptions (and, given, by several
    # apps of one process: a model is hundreds of MB and seconds to load).
    if models is None:
        models = ModelRegistry(dict(settings.vosk_models))
    elif {k: Path(v) for k, v in models.paths.items()} != {k: Path(v) for k, v in settings.vosk_models.items()}:
        raise ValueError("the shared speech models are not the ones these settings configure")

    # The live pipeline, where media is ingested: captions and the recorder are its taps.
    live: LiveStreams | None = None
    captions: LiveCaptions | None = None
    rtmp: RtmpServer | None = None
    whip: WhipSessions | None = None
    if ingest:
        live = LiveStreams(settings, db, metrics, ffmpeg)
        captions = LiveCaptions(settings, db, metrics, ffmpeg, models)
        live.media_taps.append(captions)
        live.observers.append(captions)
        if settings.recording_enabled:  # after captions: their last batch is saved when the recorder ends a run
            recorder = Recorder(settings.media_dir, catalog, metrics, live.disk)
            live.media_taps.append(recorder)
            live.observers.append(recorder)
        if settings.rtmp_enabled:
            rtmp = rtmp_server_from_settings(settings, live)
        if settings.whip_enabled:  # WebRTC publishes feed the same live pipeline
            whip = WhipSessions(live, options_from_settings(settings), metrics.drop_counter("whip_converter"))

    # Transcription of recordings (queue in the catalog): workers run where media is made, behind live captions.
    transcriptions = Transcriptions(settings, db, models, ffmpeg, _RecordingAudio(settings.media_dir, stores), captions, metrics)
    catalog.ready_listeners.append(transcriptions.recording_ready)
    importer.ready_listeners.append(transcriptions.recording_ready)

    chat: ChatServer | None = None
    if settings.role in ("both", "web"):  # Socket.IO chat and Q&A (Redis-shared rooms when redis_url is set)
        manager = ClientManager(settings.redis_url, settings.chat_redis_channel, settings.chat_direct_fanout,
                                settings.chat_fanout_max_bytes, settings.chat_fanout_max_packets,
                                metrics.drop_counter("chat_fanout"))
        chat = ChatServer(settings, manager, db, passes, viewers, redis, metrics.registry)
    if captions is not None:
        _caption_events(settings, captions, chat)

    # Audience insight (issue 21): from playlist polls and replay beacons, merged through Redis, written in batches.
    audience = Audience(settings, db, people, RedisMerge(redis, settings.chat_redis_channel) if redis is not None else None,
                        captions_folder=SUBTITLES_FOLDER)

    app = web.Application(
        middlewares=[
            guard.middleware,  # deadlines and the connection cap of `live-server run` (live_server/http_server.py)
            forwarded_middleware(settings.trusted_proxies),
            metrics_middleware(metrics), errors_middleware,
            security_headers_middleware(content_security_policy(_page_origins(settings)), settings.hsts_max_age_seconds),
            identity_middleware(db),
            error_pages_middleware,  # 404s and refusals as pages for browsers (web/guards.py); the API stays JSON
            route_ids_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    # What tests and the CLI reach on the app; handlers got theirs above.
    app[CONNECTION_GUARD] = guard
    app[METRICS] = metrics
    app[DB] = db
    app[MEDIA_PASS] = passes
    app[SESSION_PEOPLE] = people
    app[VIEWERS] = viewers
    app[MEDIA_CACHE] = cache
    app[RECORDINGS] = catalog
    if live is not None:
        app[LIVE] = live
    if rtmp is not None:
        app[RTMP] = rtmp
    if whip is not None:
        app[WHIP] = whip
    if chat is not None:
        app[CHAT] = chat
    app[AUDIENCE] = audience
    app[TRANSCRIPTIONS] = transcriptions
    app[BBB_DEPOSIT] = deposit

    app.cleanup_ctx.append(_database(db))
    app.cleanup_ctx.append(_recordings(settings, catalog, importer, archiver))
    app.cleanup_ctx.append(_transcriptions(transcriptions, workers=ingest))
    app.cleanup_ctx.append(_audio_descriptions(audio_descriptions, recover=ingest))
    app.cleanup_ctx.append(_bigbluebutton(settings, deposit, bbb_client))  # stopped before the importer
    if redis is not None:
        app.cleanup_ctx.append(_redis(redis))
    if live is not None and captions is not None:
        app.cleanup_ctx.append(_live_ingest(live, captions, catalog, rtmp))
        if whip is not None:  # closed before the live pipeline
            app.cleanup_ctx.append(_whip_sessions(whip))
            app.router.add_routes(WhipApi(whip).routes())
        app.on_shutdown.append(_drain_ingest(live, settings.ingest_drain_seconds))
    if board is not None:
        app.cleanup_ctx.append(_live_board(board, live))  # after the ingest: it announces what this node carries
    # after the catalog and Redis: its last flush runs before they close
    app.cleanup_ctx.append(_audience(audience, retention=settings.role in ("both", "web")))

    setup_templates(app, WEB_DIR / "templates", settings.public_url)  # Jinja2 with the French/English catalogs (web/i18n.py)
    logins = Logins(db, limiter, metrics, people, settings)
    replays = ReplayPages(db, passes, settings.cookie_secure, audio_descriptions)
    subtitles = SubtitleMedia(db)  # a recording's text tracks as subtitle renditions of its master playlist
    vod_media = VodMediaHandler(recording_directory, cache, passes, stores, settings.cookie_secure, subtitles)
    track_api = TrackApi(db, passes, subtitles, settings.subtitle_max_bytes, settings.base_url)
    app.router.add_routes(Ops(db, settings, metrics, viewers, redis, live).routes())
    app.router.add_routes(AuthApi(logins, db).routes())
    app.router.add_routes(EventsApi(db, settings, viewers, live_directory, live, board).routes())
    app.router.add_routes(CaptionsApi(db, passes).routes())
    app.router.add_routes(ImportApi(db, importer, settings, transcriptions).routes())  # before /api/v1/recordings/{id}
    app.router.add_routes(TranscriptionApi(db, transcriptions).routes())
    app.router.add_routes(AudioDescriptionApi(db, audio_descriptions, settings.media_dir / "imports",
                                              settings.import_max_bytes).routes())
    app.router.add_routes(RecordingReadyApi(deposit).routes())
    app.router.add_routes(AudienceApi(audience, db, people, passes, recording_directory, player_handle, settings).routes())
    app.router.add_routes(track_api.routes())
    app.router.add_routes(RecordingsApi(db, catalog, recording_directory, cache, passes, settings, vod_media,
                                        people).routes())
    # The LTI 1.3 tool (Moodle...): platforms' keys fetched with a deadline, our keys sealed like stream keys.
    platform_keys = PlatformKeys(settings.lti_jwks_timeout_seconds, settings.lti_jwks_cache_seconds)
    app.cleanup_ctx.append(_closing(platform_keys.close))
    lti_limiter = FailedLoginLimiter(settings.lti_requests_per_address, settings.lti_rate_window_seconds)
    lti_tool = LtiTool(db, settings, platform_keys, security.StreamKeyCipher(secret_key), Tickets(secret_key), logins,
                       pages.render, lti_limiter)
    app[LTI_TOOL] = lti_tool
    app.cleanup_ctx.append(_lti_logins(lti_tool))
    app.router.add_routes(lti_tool.routes())
    app.router.add_routes(Pages(db, passes, viewers, settings, logins, replays,
                                AudienceTab(db, audience_store, settings.audience_bucket_seconds), lti_tool,
                                transcriptions=transcriptions, tracks=track_api).routes())
    app.router.add_routes(HomePages(db, viewers).routes())
    app.router.add_routes(Dashboard(db, settings, viewers, audience_store, transcriptions).routes())
    app.router.add_routes(AccountPages(db, settings.vosk_models).routes())
    app.router.add_routes(AdminPages(db, people).routes())
    app.router.add_routes(BbbPages(db, deposit, webinars, BbbAdmin(db, settings.base_url)).routes())
    app.router.add_routes(EmbedPages(db, page_tracks).routes())
    # LL-HLS blocking reloads: from the packager's memory where ingest runs; on a web-only node, from the
    # playlists the ingest node replaces in the shared media folder at every part.
    low_latency: LowLatencyStreams | None = live
    if live is None and settings.ll_hls:
        ll_files = LlFileStreams()
        app.cleanup_ctx.append(_closing(ll_files.close))
        low_latency = ll_files
    live_media = LiveMediaHandler(live_directory, cache, viewers, passes, settings.media_accel_redirect, settings.media_dir,
                                  settings.cookie_secure, audience, low_latency=low_latency,
                                  decision_seconds=settings.media_decision_cache_seconds)

    async def live_media_route(request: web.Request) -> web.StreamResponse:
        return await live_media(request, people)

    async def live_decision_route(request: web.Request) -> web.StreamResponse:
        return await live_media.decide(request, people)

    app.router.add_get("/live/{slug}/{tail:.+}", live_media_route)
    app.router.add_get("/live-decision/{slug}/{tail:.+}", live_decision_route)
    for media_path in ("/live/{slug}/{tail:.+}", "/vod/{id}/{tail:.+}"):  # CORS preflight of cross-origin players
        app.router.add_route("OPTIONS", media_path, media_preflight)
    app.router.add_routes(vendor_routes())
    app.router.add_static("/static", WEB_DIR / "static", append_version=True)
    if chat is not None:
        app.router.add_routes(chat.routes())
        app.router.add_routes(ChatApi(db, passes).routes())
        app.cleanup_ctx.append(_chat(chat))
        app.on_shutdown.append(_close_chat_connections(chat))
    return app


def _ffmpeg(settings: Settings, required: bool) -> str:
    """The ffmpeg to run: required where media is ingested; elsewhere (a web-only process may have
    none) thumbnails and MP4 downloads then fail, logged."""
    try:
        return resolve_ffmpeg(settings.ffmpeg).path
    except FfmpegNotFound as exc:
        if required:
            raise
        log.warning("recordings: %s", exc)
        return settings.ffmpeg or "ffmpeg"


def _page_origins(settings: Settings) -> list[str]:
    """Origins besides the page's own that its scripts and media may reach: the public URL (API and
    playback URLs are absolute) and, with object storage, where presigned recording URLs point."""
    origins = [_origin(settings.base_url)]
    if settings.recording_storage == "s3":
        origins.append(_origin(settings.s3_endpoint_url) if settings.s3_endpoint_url else "https://*.amazonaws.com")
    return [o for o in origins if o]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _caption_events(settings: Settings, captions: LiveCaptions, chat: ChatServer | None) -> None:
    """Live caption events go to viewers through the chat's Socket.IO server, when this process runs one."""
    server: socketio.AsyncServer | socketio.AsyncRedisManager | None = chat.sio if chat is not None else None
    if server is None and settings.redis_url:
        # An ingest node without chat: publish into the chat rooms the web workers share via Redis.
        server = socketio.AsyncRedisManager(settings.redis_url, channel=settings.chat_redis_channel, write_only=True)
        log.info("captions: live caption events go to the web workers through Redis")
    if server is None:
        log.info("captions: no Socket.IO server in this process; live caption events are off (subtitles and transcript stay on)")
        return
    captions.sinks.append(SocketIOCaptionSink(server))


def _database(db: Database) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        try:
            migrations.ensure_migrated(db.engine)
            log.info("catalog: %s", db.backend)
            yield
        finally:
            db.close()

    return lifecycle


def _recordings(settings: Settings, catalog: RecordingCatalog, importer: Importer,
                archiver: RecordingArchiver | None) -> Lifecycle:
    """Where media is made: retention, and retrying uploads to object storage (at start too)."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        makes_media = settings.role in ("both", "ingest")
        if archiver is not None and makes_media:
            archiver.start()
        retention = None
        if makes_media and settings.recording_retention_days > 0:
            retention = asyncio.create_task(catalog.retention_loop(
                settings.recording_retention_days, settings.recording_retention_check_seconds), name="recording-retention")
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            await importer.close()
            if archiver is not None:
                await archiver.close()
            await catalog.close()

    return lifecycle


class _RecordingAudio:
    """A recording's full playlist for transcription, from its folder's one owner (``RecordingFiles``); a
    recording archived to object storage is fetched into a folder of its own for the job's length."""

    def __init__(self, media_dir: Path, stores: RecordingStores) -> None:
        self.media_dir = media_dir
        self.stores = stores

    def audio_source(self, media_path: str, storage_url: str | None) -> AudioSource:
        found = RecordingFiles.of(self.media_dir, media_path).full_playlist() if media_path else None
        if found is not None:
            return AudioSource(*found)
        if not storage_url:
            raise TranscriptionFailed("the recording's segments are missing from this server's disk")
        work = self.media_dir / "transcribing" / secrets.token_hex(8)
        work.mkdir(parents=True)
        try:
            store, where = self.stores.of(storage_url)
            location = where or storage_url
            journal = store.read(location, JOURNAL)
            fetched = None if journal is None else copy_full_playlist(
                journal, lambda name, target: store.fetch(location, name, target), work)
        except (StoreUnavailable, OSError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise TranscriptionFailed(f"the recording could not be read from object storage: {exc}") from exc
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if fetched is None:
            shutil.rmtree(work, ignore_errors=True)
            raise TranscriptionFailed("the recording's full playlist is not in object storage")
        return AudioSource(*fetched, cleanup=lambda: shutil.rmtree(work, ignore_errors=True))


def _transcriptions(transcriptions: Transcriptions, workers: bool) -> Lifecycle:
    """Transcription workers run in processes that make media; every process may queue jobs."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if workers:
            await transcriptions.start()
        try:
            yield
        finally:
            await transcriptions.close()

    return lifecycle


def _audio_descriptions(descriptions: AudioDescriptions, recover: bool) -> Lifecycle:
    """Tracks left pending by a stopped process are marked failed where media is made; work stops with the app."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if recover:
            await descriptions.start()
        try:
            yield
        finally:
            await descriptions.close()

    return lifecycle


def _bigbluebutton(settings: Settings, deposit: BbbDeposit, client: BbbClient) -> Lifecycle:
    """Automatic imports poll where media is made (``bbb_poll_seconds`` > 0); downloads stop with the app."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        poller = None
        if settings.bbb_poll_seconds > 0 and settings.role in ("both", "ingest"):
            poller = asyncio.create_task(deposit.poll_forever(), name="bbb-poll")
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await deposit.close()
            await client.close()

    return lifecycle


def _live_ingest(live: LiveStreams, captions: LiveCaptions, catalog: RecordingCatalog, rtmp: RtmpServer | None) -> Lifecycle:
    """The live pipeline and the RTMP listener start and stop with the app."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await live.start()
        if captions.settings.vosk_preload:
            captions.preload()
        await catalog.recover()  # before anything new is recorded: finish what a crash left
        if rtmp is not None:
            await rtmp.start()
        try:
            yield
        finally:
            if rtmp is not None:
                await rtmp.close()
            await live.close()
            await captions.close()

    return lifecycle


def _audience(audience: Audience, retention: bool) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await audience.start(retention)
        try:
            yield
        finally:
            await audience.stop()

    return lifecycle


def _whip_sessions(sessions: WhipSessions) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sessions.close()

    return lifecycle


def _drain_ingest(live: LiveStreams, seconds: float) -> Callable[[web.Application], Awaitable[None]]:
    """Shutdown begins: new publishes are refused; current events may finish (``ingest_drain_seconds``)."""

    async def drain(app: web.Application) -> None:
        await live.drain(seconds)

    return drain


def _live_board(board: LiveStatusBoard, live: LiveStreams | None) -> Lifecycle:
    """Ingest nodes announce their live events through Redis; every process can look them up."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_announce(board, live), name="live-board") if live is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await board.withdraw(list(live.events) if live is not None else [])

    return lifecycle


async def _announce(board: LiveStatusBoard, live: LiveStreams) -> None:
    while True:
        try:
            await board.announce({event_id: {"health": live.health(event_id)} for event_id in list(live.events)})
        except Exception as exc:  # Redis hiccup: try again next period; the stream itself is unaffected
            log.warning("announcing live events failed: %r", exc)
        await asyncio.sleep(board.period)


def _lti_logins(tool: LtiTool) -> Lifecycle:
    """Expired LTI logins are deleted on a timer (``lti_login_sweep_seconds``), not only when a login starts."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(tool.sweep_loop(), name="lti-login-sweep")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return lifecycle


def _closing(close: Callable[[], Awaitable[None]]) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close()

    return lifecycle


def _redis(client: Redis) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return lifecycle


def _chat(chat: ChatServer) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await chat.start()
        yield
        await chat.stop()

    return lifecycle


def _close_chat_connections(chat: ChatServer) -> Callable[[web.Application], Awaitable[None]]:
    """On shutdown, so aiohttp does not wait for open websockets."""

    async def close(app: web.Application) -> None:
        await chat.close_connections()

    return close
