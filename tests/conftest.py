"""Shared fixtures: real catalogs (SQLite and PostgreSQL), a running app, users and clients."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from live_server import accounts, migrations
from live_server.db import Database
from live_server.settings import Settings, load_settings
from tests.browser import browser  # noqa: F401  (fixture for browser tests)
from tests.support import Account, stream_key_cipher

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("LIVE_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("LIVE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def service_missing(what: str, reason: str) -> None:
    """Skip with a visible reason locally; under CI a missing service is a failure."""
    message = f"{what} not reachable ({reason})"
    if IN_CI:
        pytest.fail(message + " and CI=true", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        service_missing("PostgreSQL on 127.0.0.1:5432", str(exc).strip().splitlines()[0])
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"live_test_{secrets.token_hex(4)}"
    admin = postgres_server.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        service_missing("Redis on 127.0.0.1:6379", str(exc))
    return REDIS_TEST_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog URL, once per supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrations.upgrade(database_url)
    return database_url


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "media_dir": tmp_path / "var" / "media",
            "rtmp_enabled": False,
            "port": 0,
        }
        values.update(overrides)
        return load_settings(environ={}, **values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings], migrated_url: str) -> Settings:
    return make_settings(database_url=migrated_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.effective_database_url, stream_key_cipher=stream_key_cipher(settings))
    yield database
    database.close()


@pytest.fixture
def make_user(db: Database) -> Callable[..., Account]:
    def factory(role: str = "lecturer", username: str | None = None, password: str | None = None) -> Account:
        username = username or f"{role}-{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(12)
        user = db.transaction(lambda s: accounts.create_user(s, username, password, role))
        return Account(user.id, username, password, role)

    return factory


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[Any]:
    from live_server.app import create_app

    yield await aiohttp_client(create_app(settings))
