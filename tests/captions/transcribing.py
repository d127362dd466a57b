"""What the transcription tests share: settings with the Korean test model and quick polling, an app on them, a video
whose sound is speech at known times, and waiting for a recording's transcription job."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import select

from live_server import accounts
from live_server.app import create_app
from live_server.db import DB
from live_server.models import User
from live_server.settings import Settings
from tests.captions.speech import Speech, speech_track
from tests.ingest.live import Live, wait_for
from tests.media import FFMPEG
from tests.support import Account, login

SPEECH_AT = 2.0


def _fast(**overrides: Any) -> dict[str, Any]:
    return {"transcription_progress_seconds": 0.2, "transcription_poll_seconds": 0.2, "transcription_retry_seconds": 0.0,
            **overrides}


async def transcribing_app(aiohttp_client: Any, settings: Settings, models: Any) -> Live:
    """A running app (no RTMP) with the Korean test model (shared by the process's apps); the lecturer
    "prof" is made once per catalog."""
    app = create_app(settings, models=models)
    client = await aiohttp_client(app)

    def lecturer(session: Any) -> Any:
        return session.scalar(select(User).where(User.username == "prof")) or accounts.create_user(
            session, "prof", "prof-password", "lecturer")

    user = app[DB].transaction(lecturer)
    account = Account(user.id, "prof", "prof-password", "lecturer")
    return Live(client, app, settings, account, await login(client, account))


@pytest.fixture
def transcribing_settings(make_settings: Callable[..., Settings], migrated_sqlite: Callable[[str], str],
                          ko_model: Path) -> Callable[..., Settings]:
    url = migrated_sqlite("live.db")
    return lambda **overrides: make_settings(database_url=url, vosk_models={"ko": str(ko_model)}, **_fast(**overrides))


def spoken_video(speech: Speech, folder: Path, seconds: float = 8.0, at: tuple[float, ...] = (SPEECH_AT,)) -> Path:
    """An H.264/AAC MP4 (test pattern) whose sound is ``speech`` said at each time of ``at``."""
    track = speech_track(speech, list(at), seconds, folder)
    video = folder / "lecture.mp4"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-i", str(track), "-map", "0:v", "-map", "1:a", "-t", f"{seconds:g}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100", str(video)],
                   check=True, timeout=60)
    return video


async def transcription_job(live: Live, recording_id: int, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        resp = await live.client.get(f"/api/v1/recordings/{recording_id}/transcription")
        body = await resp.json() if resp.status == 200 else None
        return body if body is not None and body["state"] in states else None

    return await wait_for(settled, timeout, f"the transcription to be {'/'.join(states)}")
