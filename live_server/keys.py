"""Typed keys for what the application shares between handlers (aiohttp's AppKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

from captions.captioner import LiveCaptions
from ingest.live import LiveStreams
from ingest.rtmp.server import RtmpServer
from ingest.whip.session import WhipSessions
from live_server.accounts import FailedLoginLimiter
from live_server.cluster import LiveStatusBoard
from live_server.http_server import ConnectionGuard
from vod.importer import Importer
from live_server.db import Database
from live_server.metrics import Metrics
from live_server.settings import Settings
from recorder.recorder import Recorder
from vod.catalog import RecordingCatalog
from vod.media import RecordingDirectory
from vod.archive import RecordingArchiver
from vod.objects import RecordingStores
from live_server.passes import MediaPasses
from web.media import CatalogMediaDirectory, MediaCache, ViewerCounter
from web.i18n import Catalogs

if TYPE_CHECKING:  # chat.server imports these keys: name its type without a circular import
    from chat.server import ChatServer

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
METRICS = web.AppKey("metrics", Metrics)
LOGIN_LIMITER = web.AppKey("login_limiter", FailedLoginLimiter)
CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)
SECRET_KEY = web.AppKey("secret_key", str)
REDIS = web.AppKey("redis", Redis)

MEDIA_PASS = web.AppKey("media_passes", MediaPasses)  # events' and recordings' passes
MEDIA_CACHE = web.AppKey("media_cache", MediaCache)
MEDIA_DIRECTORY = web.AppKey("media_directory", CatalogMediaDirectory)
VIEWERS = web.AppKey("viewers", ViewerCounter)
LIVE = web.AppKey("live_streams", LiveStreams)
WHIP = web.AppKey("whip_sessions", WhipSessions)
RTMP = web.AppKey("rtmp_server", RtmpServer)
CAPTIONS = web.AppKey("live_captions", LiveCaptions)
CHAT: "web.AppKey[ChatServer]" = web.AppKey("chat")
RECORDINGS = web.AppKey("recordings", RecordingCatalog)
RECORDER = web.AppKey("recorder", Recorder)
RECORDING_DIRECTORY = web.AppKey("recording_directory", RecordingDirectory)
LIVE_BOARD = web.AppKey("live_status_board", LiveStatusBoard)
CATALOGS = web.AppKey("translation_catalogs", Catalogs)
IMPORTER = web.AppKey("importer", Importer)
RECORDING_STORES = web.AppKey("recording_stores", RecordingStores)
ARCHIVER = web.AppKey("recording_archiver", RecordingArchiver)
