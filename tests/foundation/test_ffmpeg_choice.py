"""The ffmpeg the server runs does not change behind the operator's back (issue 15).

An ffmpeg that appears earlier on PATH (Debian's, installed for something else) must not replace
the bundled one; the configured binary wins; PATH is used only when the setting asks for it; the
choice, its version and its origin are logged at start and shown by `live-server config`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio_ffmpeg
import pytest

from live_server.ffmpeg import FfmpegNotFound, resolve_ffmpeg
from tests.processes import BIN, ServerProcess, base_env, cli, cli_in_process, free_port

FAKE_VERSION = "5.1.8-0+deb12u1"


@pytest.fixture
def fake_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working-looking `ffmpeg` first on PATH, as `apt-get install ffmpeg` would put in /usr/bin."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "ffmpeg"
    fake.write_text(f"#!/bin/sh\necho 'ffmpeg version {FAKE_VERSION} Copyright (c) 2000-2025 the FFmpeg developers'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    return fake


def test_the_bundled_ffmpeg_wins_over_one_on_path(fake_on_path: Path) -> None:
    chosen = resolve_ffmpeg("")
    assert Path(chosen.path).resolve().is_relative_to(Path(imageio_ffmpeg.__file__).resolve().parent)
    assert chosen.version != FAKE_VERSION and chosen.version
    assert chosen.origin == f"the bundled imageio-ffmpeg {imageio_ffmpeg.__version__} wheel"


def test_imageio_environment_override_does_not_switch_it(fake_on_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """imageio-ffmpeg itself honours IMAGEIO_FFMPEG_EXE; the server's rule does not."""
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake_on_path))
    assert resolve_ffmpeg("").version != FAKE_VERSION


def test_the_configured_binary_wins(fake_on_path: Path, tmp_path: Path) -> None:
    configured = tmp_path / "opt-ffmpeg"
    configured.write_text("#!/bin/sh\necho 'ffmpeg version 7.1-custom Copyright (c) the FFmpeg developers'\n")
    configured.chmod(0o755)
    chosen = resolve_ffmpeg(str(configured))
    assert (chosen.path, chosen.version, chosen.origin) == (str(configured), "7.1-custom", "the setting ffmpeg (LIVE_FFMPEG)")


def test_path_only_when_asked(fake_on_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = resolve_ffmpeg("ffmpeg")
    assert (chosen.path, chosen.version, chosen.origin) == (str(fake_on_path), FAKE_VERSION, "PATH (ffmpeg = 'ffmpeg')")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FfmpegNotFound, match="asks for 'ffmpeg' on PATH, and there is none"):
        resolve_ffmpeg("ffmpeg")


def test_config_names_version_and_origin(fake_on_path: Path, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "LIVE_DATA_DIR": str(tmp_path)}
    out = cli_in_process(env, "config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    version = resolve_ffmpeg("").version
    assert f'effective_ffmpeg_version = "{version}"' in out.stdout
    assert f'effective_ffmpeg_origin = "the bundled imageio-ffmpeg {imageio_ffmpeg.__version__} wheel"' in out.stdout
    asked = cli_in_process({**env, "LIVE_FFMPEG": "ffmpeg"}, "config", "--json", cwd=tmp_path)
    data = json.loads(asked.stdout)
    assert (data["effective_ffmpeg"], data["effective_ffmpeg_version"]) == (str(fake_on_path), FAKE_VERSION)
    assert data["effective_ffmpeg_origin"] == "PATH (ffmpeg = 'ffmpeg')"


async def test_run_logs_ffmpeg_and_where_rtmp_listens(fake_on_path: Path, tmp_path: Path) -> None:
    """`live-server run` (what `make run` starts) logs the ffmpeg and its origin, and RTMP on the HTTP host."""
    rtmp_port = free_port()
    env = {**base_env(tmp_path, rtmp_port=rtmp_port), "PATH": os.environ["PATH"]}
    cli(env, "db", "upgrade")
    server = ServerProcess(env, free_port(), tmp_path / "server.log")
    await server.start()
    try:
        log = server.log.read_text()
    finally:
        server.signal()
        await server.wait(30)
    version = resolve_ffmpeg("").version
    assert f"using ffmpeg {version} from the bundled imageio-ffmpeg {imageio_ffmpeg.__version__} wheel" in log
    assert f"RTMP ingest will listen on 127.0.0.1:{rtmp_port}" in log
    assert f"RTMP ingest listening on 127.0.0.1:{rtmp_port}" in log
    assert FAKE_VERSION not in log and "Traceback" not in log
    assert (BIN / "live-server").exists()
