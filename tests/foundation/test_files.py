"""Replacing a file atomically: readers see the old or the new version, never half."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from live_server.files import write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "live.m3u8"
    write_atomic(target, "one\n")
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert os.listdir(tmp_path) == ["live.m3u8"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "live.m3u8"
    versions = ["A" * 200_000 + "\n", "B" * 300_000 + "\n"]
    write_atomic(target, versions[0])
    stop = threading.Event()
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            seen.add(len(target.read_text()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            write_atomic(target, versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen <= {len(v) for v in versions}


def test_write_atomic_cleans_up_on_failure(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "live.m3u8", "x")
    (tmp_path / "dir.m3u8").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "dir.m3u8", "x")
    assert sorted(os.listdir(tmp_path)) == ["dir.m3u8"]
