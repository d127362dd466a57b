"""Headless Chromium (Debian's package) driven by Playwright, for tests that watch like a person."""

from __future__ import annotations

import os
import shutil
from typing import Any, AsyncIterator

import pytest

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
]


def chromium_path() -> str:
    path = os.environ.get("LIVE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is not installed (make test installs Debian's chromium) and CI=true", pytrace=False)
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    executable = chromium_path()
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
