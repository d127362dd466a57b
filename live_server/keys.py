"""Typed keys for what the application shares between handlers (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ingest.live import LiveStreams
from ingest.rtmp.server import RtmpServer
from live_server.accounts import FailedLoginLimiter
from live_server.db import Database
from live_server.metrics import Metrics
from live_server.settings import Settings
from web.media import CatalogMediaDirectory, MediaCache, MediaPass, ViewerCounter

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
METRICS = web.AppKey("metrics", Metrics)
LOGIN_LIMITER = web.AppKey("login_limiter", FailedLoginLimiter)
SECRET_KEY = web.AppKey("secret_key", str)
REDIS = web.AppKey("redis", Redis)

MEDIA_PASS = web.AppKey("media_pass", MediaPass)
MEDIA_CACHE = web.AppKey("media_cache", MediaCache)
MEDIA_DIRECTORY = web.AppKey("media_directory", CatalogMediaDirectory)
VIEWERS = web.AppKey("viewers", ViewerCounter)
LIVE = web.AppKey("live_streams", LiveStreams)
RTMP = web.AppKey("rtmp_server", RtmpServer)
