"""The application factory: every component is built and wired here, and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import socketio
from aiohttp import web
from redis.asyncio import Redis

from live_server import migrations, security
from live_server.cluster import LiveStatusBoard
from live_server.accounts import FailedLoginLimiter
from live_server.api import auth as auth_api
from live_server.api import events as events_api
from live_server.db import Database
from live_server.http_server import ConnectionGuard
from ingest.live import LiveStreams
from ingest.rtmp.server import RtmpServer, rtmp_server_from_settings
from ingest.whip import handlers as whip_web
from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg
from captions import web as captions_web
from captions.captioner import LiveCaptions
from captions.socketio import SocketIOCaptionSink
from live_server import keys
from live_server.keys import (
    CAPTIONS, DB, LIVE, LOGIN_LIMITER, MEDIA_CACHE, MEDIA_DIRECTORY, MEDIA_PASS, METRICS, REDIS, RTMP, SECRET_KEY, SETTINGS, VIEWERS,
)
from live_server.keys import RECORDER, RECORDING_DIRECTORY, RECORDINGS
from live_server.keys import IMPORTER, LIVE_BOARD
from live_server.keys import ARCHIVER, RECORDING_STORES
from vod.archive import RecordingArchiver
from vod.objects import build_stores
from vod.importer import Importer
from vod import import_api
from live_server.metrics import Metrics
from live_server.middleware import (
    content_security_policy,
    errors_middleware,
    forwarded_middleware,
    identity_middleware,
    metrics_middleware,
    route_ids_middleware,
    security_headers_middleware,
)
from live_server import ops
from chat import server as chat_server
from live_server.settings import Settings
from recorder.recorder import Recorder
from vod import api as vod_api
from vod.catalog import RecordingCatalog
from vod.media import RecordingDirectory
from web import account_pages, admin_pages, dashboard, embed, home, pages
from web.templating import setup_templates
from live_server.session_people import SESSION_PEOPLE, SessionPeople
from live_server.passes import MediaPasses
from web.media import CatalogMediaDirectory, LiveMediaHandler, MediaCache, ViewerCounter, media_preflight
from web.vendor import vendor_routes
from web.media import viewer_id
from audience.api import AudienceApi
from audience.collector import AUDIENCE, Audience
from audience.merge import RedisMerge
from captions.captioner import SUBTITLES_FOLDER

log = logging.getLogger(__name__)
WEB_DIR = Path(pages.__file__).resolve().parent


def create_app(settings: Settings) -> web.Application:
    guard = ConnectionGuard(settings.http_max_connections, settings.http_header_timeout_seconds,
                            settings.http_body_idle_timeout_seconds)
    app = web.Application(
        middlewares=[
            guard.middleware,  # deadlines and the connection cap of `live-server run` (live_server/http_server.py)
            forwarded_middleware(settings.trusted_proxies),
            metrics_middleware, errors_middleware, route_ids_middleware,
            security_headers_middleware(content_security_policy(_page_origins(settings)), settings.hsts_max_age_seconds),
            identity_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[keys.CONNECTION_GUARD] = guard
    app[METRICS] = Metrics()
    app[LOGIN_LIMITER] = FailedLoginLimiter(
        settings.login_attempts_per_window, settings.login_window_seconds,
        account_limit=settings.login_account_attempts_per_window, address_limit=settings.login_address_attempts_per_window,
        max_backoff_seconds=settings.login_max_backoff_seconds,
    )
    app[VIEWERS] = ViewerCounter(window_seconds=max(20.0, settings.segment_seconds * 4))
    app[MEDIA_CACHE] = MediaCache(settings.media_cache_mb * 2**20)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_recordings)
    if settings.redis_url:
        app.cleanup_ctx.append(_redis)
    if settings.role in ("both", "ingest"):
        app.cleanup_ctx.append(_live_ingest)
        if settings.whip_enabled:  # WebRTC publishes feed the same live pipeline (closed before it)
            app.cleanup_ctx.append(whip_web.whip_sessions)
            app.router.add_routes(whip_web.routes)
        app.on_shutdown.append(_drain_ingest)
        app.on_startup.append(_caption_events)  # after every cleanup_ctx: the chat's Socket.IO server exists by then
    if settings.redis_url:
        app.cleanup_ctx.append(_live_board)  # after the ingest: it announces what this node carries

    # --- audience insight (issue 21): collected from playlist polls and replay beacons, batched writes
    audience = app[AUDIENCE] = Audience(settings, captions_folder=SUBTITLES_FOLDER)
    audience_api = AudienceApi(audience, settings, viewer_id)
    app.router.add_routes(audience_api.routes())  # before /api/v1/recordings/{id}

    async def _audience(app: web.Application) -> AsyncIterator[None]:
        audience_api.bind(app[DB], app[SESSION_PEOPLE], app[MEDIA_PASS], app[RECORDING_DIRECTORY])
        redis = app.get(REDIS)
        merge = RedisMerge(redis, settings.chat_redis_channel) if redis is not None else None
        await audience.start(app[DB], app[SESSION_PEOPLE], merge, retention=settings.role in ("both", "web"))
        yield
        await audience.stop()

    app.cleanup_ctx.append(_audience)
    # --- end of audience wiring

    setup_templates(app, WEB_DIR / "templates")  # Jinja2 with the French/English catalogs (web/i18n.py)
    app.router.add_routes(ops.routes)
    app.router.add_routes(auth_api.routes)
    app.router.add_routes(events_api.routes)
    app.router.add_routes(captions_web.routes)
    app.router.add_routes(import_api.routes)  # before /api/v1/recordings/{id}
    app.router.add_routes(vod_api.routes)
    app.router.add_routes(pages.routes)
    for page_routes in (home.routes, dashboard.routes, account_pages.routes, admin_pages.routes, embed.routes):
        app.router.add_routes(page_routes)
    app.router.add_get("/live/{slug}/{tail:.+}", _live_media)
    for media_path in ("/live/{slug}/{tail:.+}", "/vod/{id}/{tail:.+}"):  # CORS preflight of cross-origin players
        app.router.add_route("OPTIONS", media_path, media_preflight)
    app.router.add_routes(vendor_routes())
    app.router.add_static("/static", WEB_DIR / "static", append_version=True)
    if settings.role in ("both", "web"):
        chat_server.attach(app)  # Socket.IO chat and Q&A (Redis-shared rooms when redis_url is set)
    return app


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


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[SECRET_KEY] = security.load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir)
    db = Database(settings.effective_database_url, settings.db_workers, stream_key_cipher=security.StreamKeyCipher(app[SECRET_KEY]))
    try:
        migrations.ensure_migrated(db.engine)
        app[DB] = db
        app[MEDIA_PASS] = MediaPasses(app[SECRET_KEY], settings.media_pass_lifetime_seconds)
        app[SESSION_PEOPLE] = SessionPeople(db, settings.media_identity_ttl_seconds)
        app[MEDIA_DIRECTORY] = CatalogMediaDirectory(db, settings.media_dir, settings.media_directory_ttl_seconds,
                                                     settings.media_directory_miss_ttl_seconds)
        log.info("catalog: %s", db.backend)
        yield
    finally:
        db.close()


async def _recordings(app: web.Application) -> AsyncIterator[None]:
    """The recordings catalog (every role: API and replay media) and, where media is made, retention
    and the upload of ready recordings to object storage (``recording_storage = "s3"``)."""
    settings = app[SETTINGS]
    try:
        ffmpeg = resolve_ffmpeg(settings.ffmpeg).path
    except FfmpegNotFound as exc:  # a web-only process may have none: thumbnails and MP4 downloads then fail, logged
        log.warning("recordings: %s", exc)
        ffmpeg = settings.ffmpeg or "ffmpeg"
    stores = await asyncio.to_thread(build_stores, settings)  # boto3 loads its service model: not on the loop
    app[RECORDING_STORES] = stores
    catalog = RecordingCatalog(app[DB], settings.media_dir, ffmpeg, stores)
    app[RECORDINGS] = catalog
    importer = Importer(app[DB], settings.media_dir, ffmpeg, settings.import_segment_seconds)
    app[IMPORTER] = importer
    directory = app[RECORDING_DIRECTORY] = RecordingDirectory(app[DB], settings.media_dir, settings.media_directory_ttl_seconds)
    archiver = None
    if stores.target is not None:
        def archived(recording_id: int, media_path: str) -> None:
            directory.invalidate(recording_id)
            app[MEDIA_CACHE].forget_under(settings.media_dir / media_path)

        archiver = app[ARCHIVER] = RecordingArchiver(catalog, stores.target, app[METRICS], settings.s3_retry_seconds, archived)
        catalog.ready_listeners.append(archiver.schedule)
        importer.ready_listeners.append(archiver.schedule)
        if settings.role in ("both", "ingest"):  # where recordings are made: retry failed uploads, at start too
            archiver.start()
    retention = None
    if settings.role in ("both", "ingest") and settings.recording_retention_days > 0:
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


async def _live_media(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    handler = LiveMediaHandler(app[MEDIA_DIRECTORY], app[MEDIA_CACHE], app[VIEWERS], app[MEDIA_PASS],
                               settings.media_accel_redirect, settings.media_dir, settings.cookie_secure,
                               app[AUDIENCE])
    return await handler(request, app[SESSION_PEOPLE])


async def _live_ingest(app: web.Application) -> AsyncIterator[None]:
    """The live pipeline and the RTMP listener start and stop with the app."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings.ffmpeg)
    live = LiveStreams(settings, app[DB], app[METRICS], ffmpeg.path)
    await live.start()
    app[LIVE] = live
    captions = LiveCaptions(settings, app[DB], app[METRICS], ffmpeg.path)
    live.media_taps.append(captions)
    live.observers.append(captions)
    app[CAPTIONS] = captions
    await app[RECORDINGS].recover()  # before anything new is recorded: finish what a crash left
    if settings.recording_enabled:  # after captions: their last batch is saved when the recorder ends a run
        recorder = Recorder(settings.media_dir, app[RECORDINGS], app[METRICS], live.disk)
        live.media_taps.append(recorder)
        live.observers.append(recorder)
        app[RECORDER] = recorder
    rtmp: RtmpServer | None = None
    if settings.rtmp_enabled:
        rtmp = rtmp_server_from_settings(settings, live)
        await rtmp.start()
        app[RTMP] = rtmp
    try:
        yield
    finally:
        if rtmp is not None:
            await rtmp.close()
        await live.close()
        await captions.close()


async def _caption_events(app: web.Application) -> None:
    """Live caption events go to viewers through the chat's Socket.IO server, when this process runs one."""
    captions = app.get(CAPTIONS)
    chat = app.get(keys.CHAT)
    server = chat.sio if chat is not None else None
    if captions is None:
        return
    if server is None and app[SETTINGS].redis_url:
        # An ingest node without chat: publish into the chat rooms the web workers share via Redis.
        settings = app[SETTINGS]
        server = socketio.AsyncRedisManager(settings.redis_url, channel=settings.chat_redis_channel, write_only=True)
        log.info("captions: live caption events go to the web workers through Redis")
    if server is None:
        log.info("captions: no Socket.IO server in this process; live caption events are off (subtitles and transcript stay on)")
        return
    captions.sinks.append(SocketIOCaptionSink(server))


async def _drain_ingest(app: web.Application) -> None:
    """Shutdown begins: new publishes are refused; current events may finish (``ingest_drain_seconds``)."""
    live = app.get(LIVE)
    if live is not None:
        await live.drain(app[SETTINGS].ingest_drain_seconds)


async def _live_board(app: web.Application) -> AsyncIterator[None]:
    """Ingest nodes announce their live events through Redis; every process can look them up."""
    settings = app[SETTINGS]
    board = LiveStatusBoard(app[REDIS], settings.chat_redis_channel, settings.effective_node_name)
    app[LIVE_BOARD] = board
    live = app.get(LIVE)
    task = asyncio.create_task(_announce(board, live), name="live-board") if live is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await board.withdraw(list(live.events) if live is not None else [])


async def _announce(board: LiveStatusBoard, live: LiveStreams) -> None:
    while True:
        try:
            await board.announce({event_id: {"health": live.health(event_id)} for event_id in list(live.events)})
        except Exception as exc:  # Redis hiccup: try again next period; the stream itself is unaffected
            log.warning("announcing live events failed: %r", exc)
        await asyncio.sleep(board.period)


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = Redis.from_url(app[SETTINGS].redis_url)
    app[REDIS] = client
    yield
    await client.aclose()
