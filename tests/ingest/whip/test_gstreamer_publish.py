"""GStreamer's webrtcbin publishing over WHIP: a second, independent WebRTC stack next to ffmpeg and Chromium.

webrtcbin signs DTLS with an RSA certificate and offers ``a=setup:actpass``; it is run by Debian's
python3 (python3-gi) as a subprocess, doing the WHIP POST itself (tests/ingest/whip/gst_whip_client.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest.whip.handlers import WHIP
from tests.ingest.live import Live, event_state_is, wait_for
from tests.ingest.whip.ffmpeg_whip import WHIP_SETTINGS
from tests.ingest.whip.media import listed_segment, stream_codecs
from tests.media import count_video_frames, decode_errors
from tests.support import service_missing

CLIENT = Path(__file__).parent / "gst_whip_client.py"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"


def _gstreamer_missing() -> str | None:
    probe = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstWebRTC','1.0');"
             "from gi.repository import Gst; Gst.init(None);"
             "missing=[e for e in 'webrtcbin x264enc opusenc rtph264pay rtpopuspay nicesrc dtlsenc'.split()"
             " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return str(exc)
    if out.returncode != 0:
        return out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    return f"GStreamer elements missing: {out.stdout.strip()}" if out.stdout.strip() else None


@pytest.fixture(scope="module")
def gstreamer() -> None:
    """Skip with the reason locally; under CI=true a missing GStreamer is a failure (as for Chromium)."""
    missing = _gstreamer_missing()
    if missing is not None:
        service_missing("GStreamer webrtcbin via python3-gi (make system-deps installs it)", missing)


async def run_gstreamer(url: str, token: str, *extra: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON, str(CLIENT), url, token, *extra,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = stdout.decode().strip().splitlines()
    assert lines, stderr.decode()[-3000:]
    summary: dict[str, Any] = json.loads(lines[-1])
    summary["returncode"] = process.returncode
    summary["stderr"] = stderr.decode()[-3000:]
    return summary


@pytest.mark.parametrize(("bundle_policy", "offer_setup"), [
    ("max-compat", None),  # W3C "balanced" for one track per kind (1.22 has no "balanced"); actpass: server is DTLS server
    ("max-bundle", None),  # audio m-line is port 0 + a=bundle-only
    ("max-compat", "passive"),  # the server must be DTLS client against GStreamer's RSA certificate
])
@pytest.mark.live_settings(**WHIP_SETTINGS)
async def test_gstreamer_webrtcbin_publishes_video_and_audio(gstreamer: None, live: Live, bundle_policy: str,
                                                              offer_setup: str | None, tmp_path: Path) -> None:
    event = await live.create_event(dvr=True)
    extra = ["--bundle-policy", bundle_policy, "--seconds", "5", "--host-address", "127.0.0.1"]
    if offer_setup:
        extra += ["--offer-setup", offer_setup]
    went_live: list[bool] = []

    async def watch_live() -> None:
        await wait_for(lambda: event_state_is(live, event, "live"), 30, "the event to go live from GStreamer")
        went_live.append(True)

    watcher = asyncio.ensure_future(watch_live())
    summary = await run_gstreamer(str(live.client.make_url("/whip")), event["stream"]["whip_bearer_token"], *extra)
    assert summary["result"] == "ok" and summary["returncode"] == 0, summary
    answer = summary["answer"]
    expected_setup = "a=setup:active" if offer_setup == "passive" else "a=setup:passive"
    assert set(re.findall(r"a=setup:\w+", answer)) == {expected_setup}, answer
    assert not re.search(r"^m=(audio|video) 0 ", answer, re.M), answer  # both tracks accepted
    if bundle_policy == "max-bundle":
        assert re.search(r"^m=audio 0 .*\r?\n(?:.*\r?\n)*?a=bundle-only", summary["offer"], re.M), summary["offer"]
    assert summary["delete_status"] == 200
    await asyncio.wait_for(watcher, 30)
    assert went_live == [True]
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end after the grace period")
    assert live.app[WHIP].sessions == {}

    source = live.folder(event["id"]) / "source"
    dvr = source / "dvr.m3u8"
    last = listed_segment(dvr, -1, tmp_path)
    assert {"video:h264", "audio:aac"} <= set(stream_codecs(last)), stream_codecs(last)
    assert count_video_frames(dvr) >= 15  # ≥ 1 s of the 15 fps pattern
    assert decode_errors(dvr) == ""
