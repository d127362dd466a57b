"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import tempfile
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from live_server import security
from live_server.db import Database
from live_server.metrics import Metrics
from live_server.settings import Settings

class Pingable(Protocol):
    def ping(self) -> Any: ...


class Ingest(Protocol):
    """The live pipeline of an ingest node, as readiness sees it."""

    @property
    def accepting(self) -> bool: ...


class Viewers(Protocol):
    def counts(self) -> dict[int, int]: ...


class Ops:
    """``/healthz``, ``/readyz`` and ``/metrics``, with what they check given at wiring."""

    def __init__(self, db: Database, settings: Settings, metrics: Metrics, viewers: Viewers,
                 redis: Pingable | None, live: Ingest | None) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.viewers = viewers
        self.redis = redis  # None without redis_url
        self.live = live  # None where no ingest runs

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.healthz), web.get("/readyz", self.readyz), web.get("/metrics", self.metrics_page)]

    async def healthz(self, request: web.Request) -> web.Response:
        """The process is up and its event loop answers."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready to serve: the catalog (and Redis, when configured) answer within a few seconds."""
        checks: dict[str, str] = {}
        ok = True
        try:
            await asyncio.wait_for(self.db.ping(), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported
            ok, checks["database"] = False, f"error: {type(exc).__name__}"
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.ping(), timeout=3)
                checks["redis"] = "ok"
            except Exception as exc:
                ok, checks["redis"] = False, f"error: {type(exc).__name__}"
        live = self.live
        if live is not None and not live.accepting:
            ok, checks["ingest"] = False, "draining"
        if live is not None:  # where media is written: can the disk take segments?
            disk = await asyncio.get_running_loop().run_in_executor(None, media_disk_check, self.settings)
            checks["media_disk"] = disk
            ok = ok and disk == "ok"
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        if not metrics_allowed(request, self.settings):
            raise web.HTTPNotFound(text="not found\n")
        metrics = self.metrics
        metrics.viewers.clear()
        for event_id, count in self.viewers.counts().items():
            metrics.viewers.labels(str(event_id)).set(count)
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def media_disk_check(settings: Settings) -> str:
    """Write and remove a small file in the media folder (blocking: run in a thread).

    A full or read-only disk makes every packager and recorder write fail, and a disk below
    ``recording_min_free_mb`` pauses DVR and recordings; readiness says so (503, naming the disk),
    so that operators and load balancers see it before the next event tries to go live.
    """
    try:
        settings.media_dir.mkdir(parents=True, exist_ok=True)  # made by the first live run otherwise
        fd, name = tempfile.mkstemp(prefix=".ready-", dir=settings.media_dir)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
            os.unlink(name)
        free = shutil.disk_usage(settings.media_dir).free
    except OSError as exc:
        return f"error: {exc.strerror or type(exc).__name__}"
    if free < settings.recording_min_free_mb * 2**20:  # DVR and recordings paused: do not send new events here
        return f"low: {free // 2**20} MiB free, below the {settings.recording_min_free_mb} MiB floor (recording_min_free_mb)"
    return "ok"


def metrics_allowed(request: web.Request, settings: Settings) -> bool:
    """/metrics names every live event (private and unlisted ones too): loopback, listed networks or a token only."""
    token = settings.metrics_token.get_secret_value()
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and security.constant_time_equals(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(allowed, strict=False) for allowed in settings.metrics_allow)
