"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from live_server import security
from live_server.keys import DB, LIVE, METRICS, REDIS, SETTINGS, VIEWERS
from live_server.settings import Settings

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the catalog (and Redis, when configured) answer within a few seconds."""
    checks: dict[str, str] = {}
    ok = True
    try:
        await asyncio.wait_for(request.app[DB].ping(), timeout=3)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported
        ok, checks["database"] = False, f"error: {type(exc).__name__}"
    redis = request.app.get(REDIS)
    if redis is not None:
        try:
            await asyncio.wait_for(redis.ping(), timeout=3)  # type: ignore[arg-type]  # redis types ping for both clients
            checks["redis"] = "ok"
        except Exception as exc:
            ok, checks["redis"] = False, f"error: {type(exc).__name__}"
    live = request.app.get(LIVE)
    if live is not None and not live.accepting:
        ok, checks["ingest"] = False, "draining"
    return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


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


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    if not metrics_allowed(request, request.app[SETTINGS]):
        raise web.HTTPNotFound(text="not found\n")
    metrics = request.app[METRICS]
    metrics.viewers.clear()
    for event_id, count in request.app[VIEWERS].counts().items():
        metrics.viewers.labels(str(event_id)).set(count)
    body = metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
