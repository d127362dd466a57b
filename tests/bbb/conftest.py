"""BigBlueButton tests: the running app of the ingest tests (a lecturer logged in, RTMP on a free port) and a
BigBlueButton API server written from BBB's documentation (tests/bbb/fake_bbb.py)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.bbb.fake_bbb import SECRET, FakeBbb, make_lecture_mp4
from tests.ingest.live import live  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def lecture_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lecture_mp4(tmp_path_factory.mktemp("bbb") / "video-0.m4v")


@pytest.fixture
async def fake_bbb(lecture_mp4: Path) -> AsyncIterator[FakeBbb]:
    server = await FakeBbb(SECRET, lecture_mp4).start()
    try:
        yield server
    finally:
        await server.close()
