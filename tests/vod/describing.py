"""What the audio-description tests share: an imported lecture with a steady programme tone, the descriptions
and when espeak-ng speaks them, the requests that make a track, and the loudness read with ffmpeg's astats."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from tests.ingest.live import Live, wait_for
from tests.media import FFMPEG

TONE_HZ = 6000  # the programme: a steady tone away from most of the voice's energy, so its level can be read apart
SECONDS = 8
DESCRIPTIONS = """WEBVTT

1
00:00:01.000 --> 00:00:03.000
A red square appears in the middle of the screen.

2
00:00:05.000 --> 00:00:07.000
The lecturer points at the board.
"""
SHORT = "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nA red square.\n\n00:00:02.500 --> 00:00:03.500\nIt turns.\n"
SPOKEN = ((1.0, "A red square appears in the middle of the screen."), (5.0, "The lecturer points at the board."))


def _video(path: Path, seconds: float = SECONDS) -> Path:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=44100,volume=0.5", "-t", str(seconds),
                    "-c:v", "libx264", "-g", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(path)], check=True)
    return path


def speech_seconds(text: str) -> float:
    """How long espeak-ng says a description (the same voice and speed as the server)."""
    out = subprocess.run(["espeak-ng", "-v", "en", "-s", "165", "--stdout", text], capture_output=True, check=True).stdout
    return (len(out) - 44) / 2 / 22050


async def imported(live: Live, tmp_path: Path, visibility: str = "public", seconds: float = SECONDS) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("visibility", visibility)
    form.add_field("file", _video(tmp_path / "lecture.mp4", seconds).read_bytes(), filename="lecture.mp4")
    resp = await live.client.post("/api/v1/recordings/import", data=form, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 202, await resp.text()
    rid = (await resp.json())["id"]

    async def ready() -> dict[str, Any] | None:
        body = await (await live.client.get(f"/api/v1/recordings/{rid}")).json()
        assert body["state"] != "failed", body
        return body if body["state"] == "ready" else None

    return await wait_for(ready, 60, "the import")


async def describe(live: Live, ref: Any, language: str = "en", descriptions: str | None = DESCRIPTIONS,
                   audio: bytes | None = None) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("language", language)
    if descriptions is not None:
        form.add_field("descriptions", descriptions.encode(), filename="descriptions.vtt", content_type="text/vtt")
    if audio is not None:
        form.add_field("file", audio, filename="described.m4a", content_type="audio/mp4")
    return await live.client.post(f"/api/v1/recordings/{ref}/audio-description", data=form,
                                  headers={"X-CSRF-Token": live.csrf})


async def settled(live: Live, ref: Any, language: str = "en") -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await (await live.client.get(f"/api/v1/recordings/{ref}/audio-description")).json()
        track = next((t for t in body["tracks"] if t["language"] == language), None)
        return track if track is not None and track["state"] != "pending" else None

    return await wait_for(done, 90, "the audio description")


def durations(playlist: str) -> list[float]:
    return [float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", playlist)]


def levels(segments: list[Path], band: bool) -> list[tuple[float, float]]:
    """(time on the segments' clock, RMS level in dB) of each 0.25 s of the joined segments' audio; ``band``: of the
    programme tone's band only (a narrow band-pass)."""
    window = 11025
    chain = f"bandpass=f={TONE_HZ}:width_type=q:width=8," if band else ""
    out = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-copyts", "-i", "concat:" + "|".join(map(str, segments)),
                          "-map", "0:a:0", "-af", f"aformat=sample_rates=44100,{chain}asetnsamples=n={window}:p=0,"
                          "astats=metadata=1:reset=1,ametadata=print:key=lavfi.astats.Overall.RMS_level",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    times = [float(t) for t in re.findall(r"pts_time:([0-9.]+)", out)]
    values = [float(v) if v not in ("-inf", "inf") else -120.0 for v in re.findall(r"RMS_level=(\S+)", out)]
    return list(zip(times, values))


def mean_between(series: list[tuple[float, float]], start: float, end: float) -> float:
    picked = [v for t, v in series if start <= t and t + 0.25 <= end]
    assert picked, (start, end, series)
    return sum(picked) / len(picked)


def tone_audio(path: Path, seconds: float) -> bytes:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(seconds), "-c:a", "aac", str(path)], check=True)
    return path.read_bytes()


def assert_described(before_all: list[tuple[float, float]], after_all: list[tuple[float, float]],
                     before_tone: list[tuple[float, float]], after_tone: list[tuple[float, float]], label: str) -> None:
    """Where each description is spoken the described sound is louder than the programme alone and the programme
    is lowered under the voice (ducking); before the first and between them (after the compressor's release)
    the programme is as it was. Levels as :func:`levels` gives them, on the video's clock."""
    spoken = [(start, start + speech_seconds(text)) for start, text in SPOKEN]
    for start, end in spoken:
        louder = mean_between(after_all, start + 0.25, end - 0.25) - mean_between(before_all, start + 0.25, end - 0.25)
        ducked = mean_between(before_tone, start + 0.25, end - 0.25) - mean_between(after_tone, start + 0.25, end - 0.25)
        print(f"{label} at {start:.2f}-{end:.2f} s: {louder:+.1f} dB overall, programme ducked by {ducked:.1f} dB")
        assert louder >= 3.0, (start, louder, after_all)
        assert ducked >= 6.0, (start, ducked, after_tone)
    for start, end in ((0.0, spoken[0][0]), (spoken[0][1] + 0.75, spoken[1][0])):
        difference = abs(mean_between(before_all, start, end) - mean_between(after_all, start, end))
        assert difference <= 1.5, (start, end, difference)


async def pick_description_with_keyboard(page: Any) -> None:
    """Keyboard only: Tab from the video reaches the Sound menu, and an arrow picks the description (track 1)."""
    await page.focus("#replay")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "audio-track":
            break
    assert await page.evaluate("document.activeElement.id") == "audio-track"
    await page.keyboard.press("ArrowDown")
    await page.wait_for_function("document.getElementById('audio-track').value === '1'")
