"""Object storage for recordings: upload time of a lecture and the cost of presigning a redirect.

    python -m bench.recording_store --seconds 60 --runs 3

Starts ``moto_server`` (the test extra's S3 HTTP server) on 127.0.0.1, makes a recording-sized
folder (``--seconds`` of 2.5 Mbps in 2 s segments, random bytes) and uploads it with
``S3RecordingStore.upload`` (``s3_upload_threads`` = 4) against the reference: the same files with
boto3's ``upload_file`` one after the other. Then the CPU cost of a redirect's presigned URL,
fresh and reused (what a crowd of viewers of one replay costs). moto is a Python server: the
upload figures are lower bounds for MinIO on the same machine; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from live_server.settings import load_settings
from tests.processes import free_port
from vod.objects import S3RecordingStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="recording length (2.5 Mbps, 2 s segments)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        settings = load_settings(environ={}, recording_storage="s3", s3_bucket="bench", s3_access_key="k",
                                 s3_secret_key="s", s3_endpoint_url=f"http://127.0.0.1:{port}")
        store = S3RecordingStore.from_settings(settings)
        for _ in range(100):
            try:
                store.client.create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.1)
        folder = Path(tempfile.mkdtemp(prefix="bench-store-"))
        segment_bytes = int(2.5e6 / 8 * 2)
        for i in range(args.seconds // 2):
            (folder / f"seg_{i:06d}.ts").write_bytes(os.urandom(segment_bytes))
        (folder / "vod.m3u8").write_text("#EXTM3U\n")
        names = sorted(p.name for p in folder.iterdir())
        total = sum((folder / n).stat().st_size for n in names)

        ours, reference = [], []
        for run in range(args.runs):
            started = time.perf_counter()
            store.upload(folder, [[n for n in names if n != "vod.m3u8"], ["vod.m3u8"]], store.location(f"ours/{run}"))
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            for name in names:
                store.client.upload_file(str(folder / name), "bench", f"reference/{run}/{name}")
            reference.append(time.perf_counter() - started)
        o, r = statistics.median(ours), statistics.median(reference)
        print(f"upload {total / 1e6:.1f} MB in {len(names)} files: ours {o:.2f} s ({total / o / 1e6:.0f} MB/s), "
              f"sequential boto3 {r:.2f} s; ratio {o / r:.2f}")

        location = store.location("ours/0")
        n = 2000
        started = time.perf_counter()
        for i in range(n):
            store._sign(location, f"seg_{i % 30:06d}.ts", None)
        fresh = (time.perf_counter() - started) / n
        started = time.perf_counter()
        for i in range(n):
            store.signed_url(location, f"seg_{i % 30:06d}.ts")
        reused = (time.perf_counter() - started) / n
        print(f"presigned URL: fresh {fresh * 1e6:.0f} µs, reused {reused * 1e6:.1f} µs of CPU per redirect")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
