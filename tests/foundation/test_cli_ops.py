"""The command line (users, events --json, demo), ffmpeg resolution, health and metrics endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from live_server.app import create_app
from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg
from live_server.settings import Settings
from tests.foundation.commands import cli
from tests.support import Account, login


def console_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live_server.cli", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}, capture_output=True, text=True, timeout=120,
    )


def test_cli_users_events_and_demo(migrated_url: str, tmp_path: Path) -> None:
    env = {"LIVE_DATABASE_URL": migrated_url, "LIVE_DATA_DIR": str(tmp_path)}
    out = console_script("users", "create", "--username", "prof", "--role", "lecturer", "--password", "correct horse", env=env)
    assert out.returncode == 0 and "created lecturer 'prof'" in out.stdout, out.stderr
    dup = cli("users", "create", "--username", "prof", "--password", "another one", env=env)
    assert dup.returncode == 1 and "already exists" in dup.stderr

    out = cli("events", "create", "--title", "Algebra 101", "--owner", "prof", "--caption-language", "en", "--json", env=env)
    assert out.returncode == 0, out.stderr
    event = json.loads(out.stdout)
    assert event["slug"] == "algebra-101" and event["caption_language"] == "en"
    assert len(event["stream"]["stream_key"]) == 52 and event["stream"]["publish_url"].startswith("rtmp://")
    bad = cli("events", "create", "--title", "x", "--owner", "prof", "--start", "tomorrow", env=env)
    assert bad.returncode == 1 and "scheduled_start" in bad.stderr

    first = cli("demo", env=env)  # a user exists already: no demo admin, but the catalog has an event
    assert first.returncode == 0 and "Password" not in first.stdout and "Demo event" not in first.stdout


def test_demo_is_idempotent(migrated_url: str, tmp_path: Path) -> None:
    env = {"LIVE_DATABASE_URL": migrated_url, "LIVE_DATA_DIR": str(tmp_path)}
    first = cli("demo", env=env)
    assert first.returncode == 0 and "Username: admin  Password: " in first.stdout and "Demo event" in first.stdout
    second = cli("demo", env=env)
    assert second.returncode == 0 and second.stdout == ""


def test_ffmpeg_resolution(tmp_path: Path) -> None:
    found = resolve_ffmpeg("")
    assert found.version and Path(found.path).exists()
    with pytest.raises(FfmpegNotFound, match=r"set ffmpeg \(LIVE_FFMPEG\)"):
        resolve_ffmpeg(str(tmp_path / "no-ffmpeg"))
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(FfmpegNotFound, match="fake-ffmpeg"):
        resolve_ffmpeg(str(fake))


async def test_health_readiness_and_metrics(client: Any, make_user: Callable[..., Account]) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"] == {"database": "ok", "media_disk": "ok"}
    await login(client, make_user("viewer"))
    await client.get("/api/v1/events/123")
    text = await (await client.get("/metrics")).text()
    assert 'live_http_requests_total{method="GET",route="/api/v1/events/{ref}",status="404"} 1.0' in text
    assert 'live_http_request_duration_seconds_count{method="POST",route="/api/v1/auth/login"} 1.0' in text


async def test_metrics_only_for_allowed_addresses_or_the_token(aiohttp_client: Any, make_settings: Callable[..., Settings],
                                                                migrated_url: str) -> None:
    """Issue 17 (9): /metrics names live events (unlisted and private ones too): loopback by default,
    a proxied request counts as its real client, and a bearer token opens it from anywhere."""
    default = await aiohttp_client(create_app(make_settings(database_url=migrated_url, trusted_proxies=["127.0.0.1"])))
    assert (await default.get("/metrics")).status == 200
    proxied = await default.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 404 and "live_" not in await proxied.text()

    closed = await aiohttp_client(create_app(make_settings(database_url=migrated_url, metrics_allow="",
                                                           metrics_token="scrape-secret-123")))
    assert (await closed.get("/metrics")).status == 404
    assert (await closed.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 404
    assert (await closed.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})).status == 200


async def test_readiness_checks_redis(aiohttp_client: Any, make_settings: Callable[..., Settings], migrated_url: str, redis_url: str) -> None:
    good = await aiohttp_client(create_app(make_settings(database_url=migrated_url, redis_url=redis_url)))
    body = await (await good.get("/readyz")).json()
    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "media_disk": "ok"}}
    bad = await aiohttp_client(create_app(make_settings(database_url=migrated_url, redis_url="redis://127.0.0.1:1/0")))
    resp = await bad.get("/readyz")
    assert resp.status == 503 and (await resp.json())["checks"]["redis"].startswith("error")
