"""Where finished recordings live: the media folder (the default) or an S3-compatible object store.

Live media is always on local disk. A recording may move to object storage once it is ready
(``vod/archive.py`` uploads it); its catalog row's ``storage_url`` then says where it went
(``s3://bucket/prefix/recordings/<event>/<run>/``), and NULL means the media folder
(``media_path``). Access checks stay in the app either way: the store only answers "send these
bytes" (local disk) or "redirect here" (a short-lived presigned URL).

Every method blocks (file or network I/O): callers run them in threads, never on the event loop.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence
from urllib.parse import quote

from live_server.files import write_atomic
from recorder.storage import RecordingFiles

if TYPE_CHECKING:
    from live_server.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPES = {".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl", ".jpg": "image/jpeg",
                 ".mp4": "video/mp4", ".vtt": "text/vtt"}


class StoreUnavailable(Exception):
    """A recording lives in a store this process cannot reach (not configured, or boto3 missing)."""


class RecordingStore(Protocol):
    """What the catalog and the media route need from the place a finished recording lives.

    ``location`` is the store's own address of one recording: the folder relative to the media
    folder for local disk, an ``s3://`` URL for objects.
    """

    def location(self, media_path: str) -> str:
        """Where the recording of this media folder lives (or goes) in this store."""

    def upload(self, folder: Path, batches: Sequence[Sequence[str]], location: str) -> int:
        """Copy these files of ``folder`` in, batch after batch (playlists last); returns the bytes sent."""

    def read(self, location: str, name: str) -> bytes | None:
        """One (small) file, or None when it is not there."""

    def fetch(self, location: str, name: str, target: Path) -> None:
        """One file into a local path (the MP4 remux needs the segments on disk)."""

    def write(self, location: str, name: str, data: bytes) -> None:
        """Replace one small file (the playable playlist after a trim)."""

    def exists(self, location: str, name: str) -> bool: ...

    def remove(self, location: str, names: Sequence[str]) -> None:
        """Remove some files; missing ones are fine."""

    def delete(self, location: str) -> None:
        """Remove the whole recording."""

    def signed_url(self, location: str, name: str, download_name: str | None = None) -> str | None:
        """A URL clients may fetch the file from directly for a short while; None: the app sends it."""


class LocalDiskStore:
    """Today's behaviour: the files stay in the media folder and the app (or nginx) sends them."""

    def __init__(self, media_dir: Path) -> None:
        self.media_dir = media_dir

    def _folder(self, location: str) -> Path:
        return self.media_dir / location

    def location(self, media_path: str) -> str:
        return media_path

    def upload(self, folder: Path, batches: Sequence[Sequence[str]], location: str) -> int:
        target = self._folder(location)
        sent = 0
        if target.resolve() != folder.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in (name for batch in batches for name in batch):
                data = (folder / name).read_bytes()
                (target / name).write_bytes(data)
                sent += len(data)
        return sent

    def read(self, location: str, name: str) -> bytes | None:
        try:
            return (self._folder(location) / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def fetch(self, location: str, name: str, target: Path) -> None:
        data = self.read(location, name)
        if data is None:
            raise FileNotFoundError(name)
        target.write_bytes(data)

    def write(self, location: str, name: str, data: bytes) -> None:
        write_atomic(self._folder(location) / name, data.decode("utf-8"))

    def exists(self, location: str, name: str) -> bool:
        return (self._folder(location) / name).is_file()

    def remove(self, location: str, names: Sequence[str]) -> None:
        for name in names:
            (self._folder(location) / name).unlink(missing_ok=True)

    def delete(self, location: str) -> None:
        RecordingFiles(self._folder(location)).delete()

    def signed_url(self, location: str, name: str, download_name: str | None = None) -> str | None:
        return None


class S3RecordingStore:
    """Recordings as objects ``<prefix><media path>/<file>`` in one bucket (AWS S3, MinIO, Ceph RGW...).

    One boto3 client (thread-safe) shared by every thread; its connection pool is sized for the
    upload threads. Presigned URLs are computed locally (no request to the store), about 0.35 ms
    of CPU each: one URL per file is reused by every viewer while it has half its lifetime left,
    so a crowd watching a replay costs a signature per segment, not per request.
    """

    def __init__(self, client: Any, bucket: str, prefix: str, url_ttl_seconds: int, upload_threads: int = 4) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.url_ttl = url_ttl_seconds
        self.upload_threads = upload_threads
        self._urls: dict[tuple[str, str, str | None], tuple[float, str]] = {}

    @classmethod
    def from_settings(cls, settings: "Settings") -> "S3RecordingStore":
        """The client of the ``s3_*`` settings (blocking: boto3 loads its service model)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreUnavailable("S3 storage needs boto3: pip install 'live-server[s3]'") from None
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},  # MinIO: path-style
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=settings.s3_upload_threads + 8,
            connect_timeout=5, read_timeout=60,
        )
        secret = settings.s3_secret_key.get_secret_value()
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region or None,
            aws_access_key_id=settings.s3_access_key or None, aws_secret_access_key=secret or None, config=config,
        )
        return cls(client, settings.s3_bucket, settings.s3_prefix, settings.s3_url_ttl_seconds, settings.s3_upload_threads)

    # --- addresses ---------------------------------------------------------------------------
    def location(self, media_path: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{media_path.strip('/')}/"

    @staticmethod
    def split(location: str) -> tuple[str, str]:
        """``s3://bucket/key/prefix/`` -> (bucket, ``key/prefix/``)."""
        if not location.startswith("s3://"):
            raise ValueError(f"not an s3:// location: {location!r}")
        bucket, _, key = location[5:].partition("/")
        return bucket, key if key.endswith("/") else key + "/"

    def _key(self, location: str, name: str) -> tuple[str, str]:
        bucket, prefix = self.split(location)
        return bucket, prefix + name

    # --- RecordingStore ----------------------------------------------------------------------
    def upload(self, folder: Path, batches: Sequence[Sequence[str]], location: str) -> int:
        """The files of a batch in parallel (``s3_upload_threads``), each batch once the previous one is in."""
        sizes: list[int] = []
        with ThreadPoolExecutor(self.upload_threads, thread_name_prefix="s3-upload") as pool:
            for batch in batches:
                sizes += pool.map(lambda name: self._put_file(folder / name, location, name), batch)
        return sum(sizes)

    def _put_file(self, path: Path, location: str, name: str) -> int:
        bucket, key = self._key(location, name)
        extra = {"ContentType": _content_type(name)}
        if name.endswith(".ts"):
            extra["CacheControl"] = "max-age=31536000, immutable"
        self.client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        return os.stat(path).st_size

    def read(self, location: str, name: str) -> bytes | None:
        bucket, key = self._key(location, name)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        data: bytes = response["Body"].read()
        return data

    def fetch(self, location: str, name: str, target: Path) -> None:
        bucket, key = self._key(location, name)
        self.client.download_file(bucket, key, str(target))

    def write(self, location: str, name: str, data: bytes) -> None:
        bucket, key = self._key(location, name)
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=_content_type(name))

    def exists(self, location: str, name: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self._key(location, name)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def remove(self, location: str, names: Sequence[str]) -> None:
        bucket, prefix = self.split(location)
        self._delete_keys(bucket, [prefix + name for name in names])

    def delete(self, location: str) -> None:
        bucket, prefix = self.split(location)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        self._delete_keys(bucket, keys)

    def _delete_keys(self, bucket: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # the API's batch limit
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                raise OSError(f"the object store kept {len(errors)} objects, e.g. {errors[0].get('Key')}: "
                              f"{errors[0].get('Message') or errors[0].get('Code')}")

    def signed_url(self, location: str, name: str, download_name: str | None = None) -> str:
        cache_key = (location, name, download_name)
        now = time.monotonic()
        cached = self._urls.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        url = self._sign(location, name, download_name)
        if len(self._urls) > 20_000:
            self._urls.clear()
        self._urls[cache_key] = (now + self.url_ttl / 2, url)
        return url

    def _sign(self, location: str, name: str, download_name: str | None) -> str:
        bucket, key = self._key(location, name)
        params: dict[str, str] = {"Bucket": bucket, "Key": key}
        if download_name is not None:
            params["ResponseContentDisposition"] = (
                f"attachment; filename=\"{_ascii(download_name)}\"; filename*=UTF-8''{quote(download_name)}")
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.url_ttl)
        return url

    def check(self) -> None:
        """Is the bucket there and ours? Raises with the store's answer (logged at start)."""
        self.client.head_bucket(Bucket=self.bucket)


class StoredRecording:
    """One recording's objects: a store bound to its location, as ``recorder.storage.RemoteCopy``.

    The recording folder module names the files; the store moves the bytes.
    """

    def __init__(self, store: RecordingStore, location: str) -> None:
        self.store = store
        self.location = location

    def read(self, name: str) -> bytes | None:
        return self.store.read(self.location, name)

    def write(self, name: str, data: bytes) -> None:
        self.store.write(self.location, name, data)

    def remove(self, names: Sequence[str]) -> None:
        self.store.remove(self.location, names)

    def exists(self, name: str) -> bool:
        return self.store.exists(self.location, name)

    def fetch(self, name: str, target: Path) -> None:
        self.store.fetch(self.location, name, target)

    def upload(self, folder: Path, batches: Sequence[Sequence[str]]) -> int:
        return self.store.upload(folder, batches, self.location)

    def signed_url(self, name: str, download_name: str | None = None) -> str | None:
        return self.store.signed_url(self.location, name, download_name)


class RecordingStores:
    """The store each recording lives in (from its row), and where ready recordings go."""

    def __init__(self, local: LocalDiskStore, s3: S3RecordingStore | None = None, archive_to_s3: bool = False) -> None:
        self.local = local
        self.s3 = s3
        self.archive_to_s3 = archive_to_s3 and s3 is not None

    def of(self, storage_url: str | None) -> tuple[RecordingStore, str | None]:
        """(store, location) of a row's ``storage_url``; location None means the media folder."""
        if not storage_url:
            return self.local, None
        if storage_url.startswith("s3://"):
            if self.s3 is None:
                raise StoreUnavailable("this recording is in object storage but no s3_bucket is configured here")
            return self.s3, storage_url
        raise StoreUnavailable(f"unknown recording storage {storage_url.split(':', 1)[0]!r}")

    @property
    def target(self) -> S3RecordingStore | None:
        """Where ready recordings are uploaded (None: they stay on local disk)."""
        return self.s3 if self.archive_to_s3 else None


def build_stores(settings: "Settings") -> RecordingStores:
    """Local disk always; the S3 store when a bucket is configured (to upload, or to read what was uploaded)."""
    local = LocalDiskStore(settings.media_dir)
    if not settings.s3_bucket:
        return RecordingStores(local)
    try:
        s3 = S3RecordingStore.from_settings(settings)
    except StoreUnavailable:
        if settings.recording_storage == "s3":
            raise
        log.warning("recordings: s3_bucket is set but boto3 is not installed; recordings in object storage cannot be served")
        return RecordingStores(local)
    return RecordingStores(local, s3, archive_to_s3=settings.recording_storage == "s3")


def _content_type(name: str) -> str:
    suffix = os.path.splitext(name)[1]
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
