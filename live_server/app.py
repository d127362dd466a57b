"""The application factory: every component is built and wired here, and nowhere else."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from redis.asyncio import Redis

from live_server import migrations, security
from live_server.accounts import FailedLoginLimiter
from live_server.api import auth as auth_api
from live_server.api import events as events_api
from live_server.db import Database
from ingest.live import LiveStreams
from ingest.rtmp.server import RtmpServer
from live_server.ffmpeg import resolve_ffmpeg
from live_server.keys import (
    DB, LIVE, LOGIN_LIMITER, MEDIA_CACHE, MEDIA_DIRECTORY, MEDIA_PASS, METRICS, REDIS, RTMP, SECRET_KEY, SETTINGS, VIEWERS,
)
from live_server.metrics import Metrics
from live_server.middleware import (
    errors_middleware,
    identity_middleware,
    metrics_middleware,
    security_headers_middleware,
)
from live_server import ops
from live_server.settings import Settings
from web import pages
from web.media import CatalogMediaDirectory, LiveMediaHandler, MediaCache, MediaPass, ViewerCounter
from web.vendor import vendor_routes

log = logging.getLogger(__name__)
WEB_DIR = Path(pages.__file__).resolve().parent


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware, security_headers_middleware, identity_middleware],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[LOGIN_LIMITER] = FailedLoginLimiter(settings.login_attempts_per_window, settings.login_window_seconds)
    app[VIEWERS] = ViewerCounter(window_seconds=max(20.0, settings.segment_seconds * 4))
    app[MEDIA_CACHE] = MediaCache()
    app.cleanup_ctx.append(_database)
    if settings.redis_url:
        app.cleanup_ctx.append(_redis)
    if settings.role in ("both", "ingest"):
        app.cleanup_ctx.append(_live_ingest)

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.router.add_routes(ops.routes)
    app.router.add_routes(auth_api.routes)
    app.router.add_routes(events_api.routes)
    app.router.add_routes(pages.routes)
    app.router.add_get("/live/{slug}/{tail:.+}", _live_media)
    app.router.add_routes(vendor_routes())
    app.router.add_static("/static", WEB_DIR / "static", append_version=True)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = Database(settings.effective_database_url)
    try:
        migrations.ensure_migrated(db.engine)
        app[SECRET_KEY] = security.load_or_create_secret_key(settings.secret_key.get_secret_value(), settings.data_dir)
        app[DB] = db
        app[MEDIA_PASS] = MediaPass(app[SECRET_KEY])
        app[MEDIA_DIRECTORY] = CatalogMediaDirectory(db, settings.media_dir)
        log.info("catalog: %s", db.backend)
        yield
    finally:
        db.close()


async def _live_media(request: web.Request) -> web.StreamResponse:
    app = request.app
    handler = LiveMediaHandler(app[MEDIA_DIRECTORY], app[MEDIA_CACHE], app[VIEWERS], app[MEDIA_PASS])
    return await handler(request)


async def _live_ingest(app: web.Application) -> AsyncIterator[None]:
    """The live pipeline and the RTMP listener start and stop with the app."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings.ffmpeg)
    live = LiveStreams(settings, app[DB], app[METRICS], ffmpeg.path)
    await live.start()
    app[LIVE] = live
    rtmp: RtmpServer | None = None
    if settings.rtmp_enabled:
        rtmp = RtmpServer(settings.rtmp_host, settings.rtmp_port, live, idle_timeout=settings.rtmp_idle_timeout_seconds)
        await rtmp.start()
        app[RTMP] = rtmp
    try:
        yield
    finally:
        if rtmp is not None:
            await rtmp.close()
        await live.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = Redis.from_url(app[SETTINGS].redis_url)
    app[REDIS] = client
    yield
    await client.aclose()
