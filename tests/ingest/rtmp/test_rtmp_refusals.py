"""Refused publishes are refused in words the encoder shows (issue 15), through the whole server.

ffmpeg runs with its default log level and prints a server's error status as
``Server error: <description>``; before, a refused codec showed only "Broken pipe".
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import publish_once, push_rtmp, stop

ACCEPTED = "this server accepts H.264 video with AAC audio"


async def publish(url: str, video: list[str], seconds: float = 6) -> tuple[int, str]:
    """ffmpeg with its defaults (log level included) publishing a test pattern; its exit code and stderr."""
    return await publish_once(url, seconds=seconds, video=video)


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        (["-c:v", "libx265"], f"Server error: unsupported video codec HEVC (H.265); {ACCEPTED}"),
        (["-c:v", "libsvtav1", "-preset", "12"], f"Server error: unsupported video codec AV1; {ACCEPTED}"),
    ],
)
async def test_a_refused_codec_is_told_to_the_encoder(
    live: Live, caplog: pytest.LogCaptureFixture, codec: list[str], expected: str
) -> None:
    """Enhanced RTMP (ffmpeg >= 6.1 sends HEVC and AV1 with FourCC headers) is refused with a status
    the encoder prints, sent before the close; the event does not go live."""
    caplog.set_level(logging.INFO)
    event = await live.create_event()
    key = event["stream"]["stream_key"]
    rc, err = await publish(live.publish_url(event), codec)
    assert rc != 0 and expected in err, err
    assert "Broken pipe" not in err
    assert (await live.event(event["id"]))["state"] == "scheduled"
    assert key not in caplog.text and key[12:] not in caplog.text


async def test_wrong_application_key_and_second_publisher_are_told_to_the_encoder(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = await live.create_event()
    key = event["stream"]["stream_key"]
    base = live.rtmp_base.removesuffix("/live")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast"]

    rc, err = await publish(f"{base}/lvie/{key}", h264, seconds=2)
    assert rc != 0
    assert "Server error: unknown application 'lvie'; publish to rtmp://<server>/live/<stream key>" in err, err
    # A key pasted into the application part is never echoed or logged.
    rc, err = await publish(f"{base}/{key}/x", h264, seconds=2)
    assert rc != 0 and "Server error: unknown application (not shown)" in err, err

    rc, err = await publish(f"{base}/live/{'0' * 52}", h264, seconds=2)
    assert rc != 0 and "Server error: unknown or revoked stream key" in err, err

    first = await push_rtmp(live.publish_url(event), seconds=8)
    try:
        await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
        rc, err = await publish(live.publish_url(event), h264, seconds=2)
        assert rc != 0 and "Server error: this event already has a publisher" in err, err
        assert first.returncode is None
    finally:
        await stop(first)
    assert key not in caplog.text and key[12:] not in caplog.text
    assert "0" * 20 not in caplog.text


@pytest.mark.live_settings(publish_takeover=True)
async def test_a_taken_over_encoder_is_told_why(live: Live) -> None:
    """The backup encoder takes over; the first one reads why it was stopped, not just a reset."""
    event = await live.create_event()
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10"]  # keyframes each second: live at once
    first = asyncio.create_task(publish(live.publish_url(event), h264, seconds=20))
    await wait_for(lambda: event_state_is(live, event, "live"), 10, "live")
    second = await push_rtmp(live.publish_url(event), seconds=3)
    try:
        rc, err = await asyncio.wait_for(first, 15)
        assert rc != 0
        assert "Server error: publishing stopped by the server: taken over by a newer publisher" in err, err
        assert await asyncio.wait_for(second.wait(), 20) == 0
    finally:
        await stop(second)
