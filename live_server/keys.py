"""Typed keys for what the application shares between handlers (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from live_server.accounts import FailedLoginLimiter
from live_server.db import Database
from live_server.metrics import Metrics
from live_server.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
METRICS = web.AppKey("metrics", Metrics)
LOGIN_LIMITER = web.AppKey("login_limiter", FailedLoginLimiter)
SECRET_KEY = web.AppKey("secret_key", str)
REDIS = web.AppKey("redis", Redis)
