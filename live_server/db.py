"""Database access: one engine per process, work run in a small thread pool.

We use SQLAlchemy's synchronous ORM with proven drivers (sqlite3, psycopg) and keep it off the
event loop by running each unit of work in a worker thread, inside one transaction: a request
that fails writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from aiohttp import web
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Pick the driver we ship for each backend (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def private_sqlite_file(url: str) -> None:
    """A SQLite catalog holds password hashes and sealed stream keys: its file is created 0600 (SQLite gives
    its -wal and -shm files the same mode) in a folder created 0700; one found readable by others is tightened."""
    from live_server.security import private_data_dir

    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    private_data_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
                log.warning("%s was readable by other users; now 0600", file)


class Database:
    """The catalog connection of one process; ``run`` executes a unit of work in a thread."""

    def __init__(self, url: str, workers: int = 4, stream_key_cipher: Any = None) -> None:
        """``stream_key_cipher`` (security.StreamKeyCipher): stream keys are sealed with the server secret;
        sessions carry it in ``Session.info`` for the events service. Without it, stream keys cannot be used."""
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        info = {"stream_key_cipher": stream_key_cipher} if stream_key_cipher is not None else {}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, synchronously (CLI, startup, tests)."""
        with self.sessions.begin() as session:
            return work(session)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction on a worker thread: committed if it returns, rolled back if it raises."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.transaction, work)

    async def ping(self) -> None:
        def _ping(session: Session) -> None:
            session.execute(text("SELECT 1"))

        await self.run(_ping)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()


DB = web.AppKey("db", Database)  # the app's catalog, for tests and the CLI
