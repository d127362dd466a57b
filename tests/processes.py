"""Server processes started the way operators start them (``live-server run``), for multi-process tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import aiohttp

from tests.support import hls_mode

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    """An operator's command (users, events, db) for a test's set-up: run in process (see ``cli_in_process``)."""
    done = cli_in_process(env, *args)
    assert done.returncode == 0, f"live-server {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def base_env(workdir: Path, **settings: Any) -> dict[str, str]:
    """Environment for a server on its own catalog and media folder, in the run's HLS mode
    (``tests.support.PLAIN_HLS``); ``settings`` become LIVE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update({"LIVE_DATA_DIR": str(workdir), "LIVE_MEDIA_DIR": str(workdir / "media"), "LIVE_LOG_LEVEL": "INFO",
                "LIVE_SECRET_KEY": "test-secret-key-shared-by-all-workers-0123456789"})
    env.update({f"LIVE_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in {**hls_mode(), **settings}.items()})
    return env


@dataclass
class ServerProcess:
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> "ServerProcess":
        self.process = subprocess.Popen(
            [str(BIN / "live-server"), "run", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server did not start:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.2)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not exit within {timeout} s")
            await asyncio.sleep(0.1)
        return self.process.returncode

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def stop_all(servers: "Iterable[ServerProcess]") -> None:
    """Stop several servers at once: each is asked to stop (SIGTERM) before any is waited for, so their
    shutdowns overlap instead of adding up (a fixture's teardown of a cluster)."""
    servers = list(servers)
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        if server.process is not None:
            try:
                server.process.wait(20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(5)


def create_event(env: dict[str, str], owner: str, title: str, *extra: str) -> dict[str, Any]:
    return json.loads(cli(env, "events", "create", "--title", title, "--owner", owner, "--json", *extra))


def cli_in_process(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``live-server <args>`` through the same ``main()`` in this process, with ``env`` as the only LIVE_*
    variables: what a subprocess would print and return, without paying ~1 s of interpreter start and
    imports per command. Tests of the console script itself, of ``run`` and of files' modes keep a real process."""
    import contextlib
    import io

    from live_server.cli import main

    import logging

    saved = dict(os.environ)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    folder = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)  # where a relative live.toml or var/ would be looked for
        for key in [k for k in os.environ if k.startswith("LIVE_")]:
            del os.environ[key]
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(saved)
        root.handlers[:], root.level = handlers, level  # main() configures logging for a process of its own
    return subprocess.CompletedProcess(["live-server", *args], code, out.getvalue(), err.getvalue())
