"""nginx (Debian's package) in front of app processes, configured from deploy/nginx/live.conf.template."""

from __future__ import annotations

import os
import shutil
import socket
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deploy" / "nginx" / "live.conf.template"

MAIN_CONF = """
worker_processes 1;
{user}
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    include {work}/live.conf;
}}
"""


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        message = "nginx is not installed (make test installs Debian's nginx-light)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true", pytrace=False)
        pytest.skip(message)
    return path


def self_signed(work: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (Debian's openssl), made once per folder: TLS for the
    HTTP/2 listener. Clients in tests skip verification."""
    cert, key = work / "tls.crt", work / "tls.key"
    if not cert.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return cert, key


def render(listen: str, web_servers: Sequence[str], media_dir: Path, work: Path, tls_listen: str | None = None) -> str:
    """The shipped template with this run's values; ``work``: where nginx may write (its cache, the test certificate)."""
    cert, key = self_signed(work)
    return string.Template(TEMPLATE.read_text()).safe_substitute(
        LIVE_LISTEN=listen,
        LIVE_TLS_LISTEN=tls_listen or f"127.0.0.1:{_free_port()}",
        LIVE_TLS_CERTIFICATE=str(cert),
        LIVE_TLS_CERTIFICATE_KEY=str(key),
        LIVE_WEB_SERVERS=" ".join(f"server {s};" for s in web_servers),
        LIVE_MEDIA_DIR=str(Path(media_dir).resolve()),
        LIVE_NGINX_CACHE_DIR=str(work / "cache"),
    )


@dataclass
class Nginx:
    port: int
    work: Path
    tls_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """The TLS listener (HTTP/2 by ALPN, HTTP/1.1 otherwise)."""
        return f"https://127.0.0.1:{self.tls_port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_nginx(work: Path, web_servers: Sequence[str], media_dir: Path) -> Iterator[Nginx]:
    binary = nginx_binary()
    work.mkdir(parents=True, exist_ok=True)
    port, tls_port = _free_port(), _free_port()
    (work / "live.conf").write_text(render(f"127.0.0.1:{port}", web_servers, media_dir, work, f"127.0.0.1:{tls_port}"))
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(MAIN_CONF.format(work=work, user=user))
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start listening")
                time.sleep(0.05)
        yield Nginx(port, work, tls_port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
