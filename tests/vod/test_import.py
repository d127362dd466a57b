"""Importing existing lecture videos: remux H.264/AAC, transcode the rest, refuse what is not a video."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ingest.live import Live, live, wait_for  # noqa: F401 (fixture)
from tests.media import FFMPEG, count_video_frames, decode_errors


def _make(path: Path, video: list[str], audio: list[str], seconds: int = 6) -> Path:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=10", "-f", "lavfi", "-i", "sine=frequency=300",
                    "-t", str(seconds), *video, *audio, str(path)], check=True)
    return path


async def _import(live: Live, path: Path, **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
    return await live.client.post("/api/v1/recordings/import", data=form, headers={"X-CSRF-Token": live.csrf})


async def _settled(live: Live, recording_id: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await (await live.client.get(f"/api/v1/recordings/{recording_id}")).json()
        return body if body["state"] in ("ready", "failed") else None

    return await wait_for(done, 60, "the import to finish")


@pytest.mark.live_settings(max_request_bytes=100_000)
async def test_an_h264_mp4_is_remuxed_and_plays_at_once(live: Live, tmp_path: Path) -> None:
    source = _make(tmp_path / "capture.mp4", ["-c:v", "libx264", "-b:v", "2M", "-g", "20", "-pix_fmt", "yuv420p"],
                   ["-c:a", "aac"])
    assert source.stat().st_size > live.settings.max_request_bytes  # streamed, not buffered like API bodies
    resp = await _import(live, source, title="Lecture 3 (captured in room B)", visibility="unlisted")
    assert resp.status == 202, await resp.text()
    created = await resp.json()
    assert created["state"] == "processing" and created["title"] == "Lecture 3 (captured in room B)"
    body = await _settled(live, created["id"])
    assert body["state"] == "ready", body
    assert body["visibility"] == "unlisted" and abs(body["duration_seconds"] - 6.0) <= 0.5
    folder = live.settings.media_dir / "recordings" / "imported" / str(created["id"])
    vod = (folder / "vod.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod and vod.rstrip().endswith("#EXT-X-ENDLIST")
    assert count_video_frames(folder / "vod.m3u8") == 60 and decode_errors(folder / "vod.m3u8") == ""
    assert (folder / "thumbnail.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert list((live.settings.media_dir / "imports").iterdir()) == []  # the upload is gone
    master = await live.client.get(f"/vod/{created['id']}/master.m3u8")
    assert master.status == 200


async def test_other_codecs_are_transcoded_and_garbage_fails_clearly(live: Live, tmp_path: Path) -> None:
    webm = _make(tmp_path / "talk.webm", ["-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime"], ["-c:a", "libopus"],
                 seconds=4)
    resp = await _import(live, webm)
    assert resp.status == 202
    body = await _settled(live, (await resp.json())["id"])
    assert body["state"] == "ready" and body["title"] == "talk"
    folder = live.settings.media_dir / "recordings" / "imported" / str(body["id"])
    assert count_video_frames(folder / "vod.m3u8") == 40 and decode_errors(folder / "vod.m3u8") == ""

    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    resp = await _import(live, junk)
    body = await _settled(live, (await resp.json())["id"])
    assert body["state"] == "failed"
    assert not (live.settings.media_dir / "recordings" / "imported" / str(body["id"])).exists()


@pytest.mark.live_settings(import_max_bytes=50_000)
async def test_refusals(live: Live, tmp_path: Path) -> None:
    big = _make(tmp_path / "big.mp4", ["-c:v", "libx264", "-b:v", "1M", "-pix_fmt", "yuv420p"], ["-c:a", "aac"])
    resp = await _import(live, big)
    assert resp.status == 413
    assert list((live.settings.media_dir / "imports").iterdir()) == []
    resp = await _import(live, big, visibility="password")
    assert resp.status in (413, 422)
    resp = await live.client.post("/api/v1/recordings/import", json={"file": "x"}, headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 400
    async with aiohttp.ClientSession() as anonymous:
        form = aiohttp.FormData()
        form.add_field("file", b"x", filename="a.mp4")
        resp2 = await anonymous.post(live.client.make_url("/api/v1/recordings/import"), data=form)
        assert resp2.status in (401, 403)


@pytest.mark.live_settings(max_request_bytes=100_000)
async def test_playlists_and_manifests_that_name_other_files_are_refused(live: Live, tmp_path: Path) -> None:
    """An ffconcat list (or an HLS/DASH manifest) would make ffmpeg read the files it names: someone else's upload
    waiting in the same folder, here. Only the allowed container formats are read, and only the uploaded file."""
    secret = _make(tmp_path / "secret.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ["-c:a", "aac"], seconds=2)
    imports = live.settings.media_dir / "imports"
    imports.mkdir(parents=True, exist_ok=True)
    (imports / "someone-else.upload").write_bytes(secret.read_bytes())
    concat = tmp_path / "lecture.mp4"
    concat.write_text("ffconcat version 1.0\nfile 'someone-else.upload'\n")
    hls = tmp_path / "lecture.m3u8"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nsomeone-else.upload\n#EXT-X-ENDLIST\n")
    dash = tmp_path / "lecture.mpd"
    dash.write_text('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period><AdaptationSet>'
                    '<Representation id="1" bandwidth="1"><BaseURL>someone-else.upload</BaseURL></Representation>'
                    '</AdaptationSet></Period></MPD>')
    for manifest in (concat, hls, dash):
        resp = await _import(live, manifest)
        assert resp.status == 202
        body = await _settled(live, (await resp.json())["id"])
        assert body["state"] == "failed", (manifest.name, body)
        assert not (live.settings.media_dir / "recordings" / "imported" / str(body["id"])).exists()
