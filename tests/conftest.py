"""Shared fixtures: real catalogs (SQLite and PostgreSQL), a running app, users and clients."""

from __future__ import annotations

import os
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from live_server import accounts, migrations
from live_server.db import Database
from live_server.settings import Settings, load_settings
from tests.support import REALTIME_SPEECH, Account, hls_mode, service_missing, stream_key_cipher

#: Fixtures shared by every directory: one Chromium per test process (``browser``, ``webrtc_browser``),
#: and the guard against a blocked event loop (``loop_guard``).
pytest_plugins = ["tests.browser", "tests.loop_guard", "tests.cpu_profile"]

PG_ADMIN_URL = os.environ.get("LIVE_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("LIVE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def worker_index() -> int:
    """0 for a plain run, N for pytest-xdist's worker gwN."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def worker_redis_url() -> str:
    """The test Redis database, counting down from LIVE_TEST_REDIS's (15) by xdist worker, so that keys
    written by tests running in parallel never meet (pub/sub channels are not per database: tests that
    use them pick a random channel)."""
    base, _, number = REDIS_TEST_URL.rpartition("/")
    if not number.isdigit():
        return REDIS_TEST_URL
    return f"{base}/{(int(number) - worker_index()) % 16}"


@pytest.fixture(scope="session", autouse=True)
def scrypt_once_per_password() -> Iterator[None]:
    """scrypt at its production cost (~50 ms of CPU and 16 MiB each) once per distinct password and
    stored hash in a test process, instead of once per user created and per login: the suite creates
    and logs in hundreds of accounts with a handful of passwords. The real functions run (their results
    are remembered), so a wrong password still fails; only re-hashing the same text gives the same salt."""
    import functools

    from live_server import security

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "hash_password", functools.lru_cache(maxsize=None)(security.hash_password))
        patch.setattr(security, "verify_password", functools.lru_cache(maxsize=None)(security.verify_password))
        patch.setattr(security, "dummy_password_check",
                      functools.lru_cache(maxsize=None)(security.dummy_password_check))
        yield


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
        client = redis.Redis.from_url(worker_redis_url(), socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        service_missing("Redis on 127.0.0.1:6379", str(exc))
    return worker_redis_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that asks for a catalog runs once per supported backend."""
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """An empty catalog URL (no schema), once per supported backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite catalog migrated to head once per test process; tests get copies."""
    path = tmp_path_factory.mktemp("catalog") / "template.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    """A migrated catalog at ``target`` (SQLite's backup API, so a WAL file is never left behind)."""
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


@pytest.fixture
def migrated_sqlite(sqlite_template: Path, tmp_path: Path) -> Callable[[str], str]:
    """``migrated_sqlite("live.db")``: the URL of a migrated SQLite catalog of the test's own."""
    return lambda name: copy_sqlite(sqlite_template, tmp_path / name)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per test process, cloned by ``CREATE DATABASE … TEMPLATE``."""
    import psycopg

    name = f"live_template_{secrets.token_hex(4)}"
    admin = postgres_server.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrations.upgrade(f"{postgres_server.rsplit('/', 1)[0]}/{name}")
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_worker_db(postgres_server: str, postgres_template: str) -> Iterator[str]:
    """One migrated database per test process, cloned from the template once; every test that asks for
    a migrated PostgreSQL catalog gets it emptied. TRUNCATE costs milliseconds where each CREATE and
    DROP DATABASE costs a checkpoint (1-4 s per test on this machine)."""
    import psycopg

    name = f"live_work_{secrets.token_hex(4)}"
    admin = postgres_server.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield f"{postgres_server.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_postgres(url: str) -> None:
    """Every table of the catalog at ``url`` emptied and its ids restarted, the schema kept: as the
    migrations left it. Connections a previous test left open are closed first, as DROP … WITH (FORCE) did."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        conn.execute("SET lock_timeout = '10s'")
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture
def migrated_postgres(postgres_worker_db: str) -> str:
    """This process's migrated PostgreSQL catalog, emptied for the test (multi-process tests share it)."""
    empty_postgres(postgres_worker_db)
    return postgres_worker_db


@pytest.fixture
def migrated_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A catalog with the schema at head and no rows: a copy of the SQLite catalog the migrations built
    once per process, or this process's PostgreSQL database emptied."""
    if backend == "sqlite":
        return copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path / "live.db")
    return str(request.getfixturevalue("migrated_postgres"))


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Every in-process app's settings: this test's folders, then the run's HLS mode (``tests.support.PLAIN_HLS``),
    then what the test asks for."""
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "media_dir": tmp_path / "var" / "media",
            "rtmp_enabled": False,
            "port": 0,
            **hls_mode(),
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
async def aiohttp_client(loop_guard: Any, aiohttp_client: Any) -> Any:
    """pytest-aiohttp's ``aiohttp_client``, with the blocked-loop guard on every in-process app test."""
    return aiohttp_client


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[Any]:
    from live_server.app import create_app

    yield await aiohttp_client(create_app(settings))


#: Tests that use one of these fixtures run one after another on one xdist worker (``--dist loadgroup``):
#: live captions must keep up with real time, so two of them side by side on a 2-core machine would
#: measure the machine, not the code. (Other tests join with ``@pytest.mark.xdist_group(REALTIME_SPEECH)``.)
SERIAL_GROUPS = {"captioned": REALTIME_SPEECH}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((g for fixture, g in SERIAL_GROUPS.items() if fixture in names), None)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    _heavy_modules_first(items)


#: Fixtures whose tests take seconds of real media, a browser or server processes. Their modules start first,
#: so that the longest tests do not begin near the end of a run on an otherwise idle worker (xdist hands tests
#: out in collection order). A module moves as a whole: its module-scoped fixtures are made once.
_HEAVY_FIXTURES = {"browser": 1, "webrtc_browser": 1, "site": 2, "live": 2, "captioned": 2, "lms": 2, "fake_bbb": 2}


def _heavy_modules_first(items: list[pytest.Item]) -> None:
    rank: dict[str, int] = {}
    for item in items:
        names = getattr(item, "fixturenames", ())
        weight = 0 if item.get_closest_marker("xdist_group") is not None else min(
            (w for fixture, w in _HEAVY_FIXTURES.items() if fixture in names), default=3)
        module = item.nodeid.split("::", 1)[0]
        rank[module] = min(rank.get(module, 3), weight)
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])  # stable: each module's own order stays
