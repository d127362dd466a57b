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
from live_server.keys import DB, LOGIN_LIMITER, METRICS, REDIS, SECRET_KEY, SETTINGS
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
    app.cleanup_ctx.append(_database)
    if settings.redis_url:
        app.cleanup_ctx.append(_redis)

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.router.add_routes(ops.routes)
    app.router.add_routes(auth_api.routes)
    app.router.add_routes(events_api.routes)
    app.router.add_routes(pages.routes)
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
        log.info("catalog: %s", db.backend)
        yield
    finally:
        db.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = Redis.from_url(app[SETTINGS].redis_url)
    app[REDIS] = client
    yield
    await client.aclose()
