"""Headless Chromium (Debian's package) driven by Playwright, for tests that watch like a person.

One Playwright driver and one Chromium per test process (per xdist worker), launched on first use;
each test gets the browser with no context open and every context it opened is closed after it,
so tests share nothing but the process (a new context is a new profile: cookies, storage, cache).
"""

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

#: Chromium with fake camera/microphone that may use loopback ICE candidates (WHIP from the browser).
WEBRTC_ARGS = [a for a in CHROMIUM_ARGS if a != "--mute-audio"] + [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def chromium_path() -> str:
    path = os.environ.get("LIVE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is not installed (make test installs Debian's chromium) and CI=true", pytrace=False)
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    return path


class Chromiums:
    """The test process's Playwright driver and its browsers, one per argument list, launched on demand."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._manager: Any = None
        self._browsers: dict[tuple[str, ...], Any] = {}

    async def get(self, args: list[str]) -> Any:
        executable = chromium_path()
        if self._playwright is None:
            from playwright.async_api import async_playwright

            self._manager = async_playwright()
            self._playwright = await self._manager.start()
        key = tuple(args)
        browser = self._browsers.get(key)
        if browser is None or not browser.is_connected():  # first use, or it crashed in an earlier test
            browser = await self._playwright.chromium.launch(executable_path=executable, args=args)
            self._browsers[key] = browser
        return browser

    async def close(self) -> None:
        for browser in self._browsers.values():
            if browser.is_connected():
                await browser.close()
        if self._manager is not None:
            await self._manager.__aexit__(None, None, None)


@pytest.fixture(scope="session")
async def chromiums() -> AsyncIterator[Chromiums]:
    holder = Chromiums()
    try:
        yield holder
    finally:
        await holder.close()


async def fresh(browser: Any) -> AsyncIterator[Any]:
    """Hand ``browser`` to one test, then close whatever contexts (profiles) the test left open."""
    try:
        yield browser
    finally:
        if browser.is_connected():
            for context in list(browser.contexts):
                await context.close()


@pytest.fixture
async def browser(chromiums: Chromiums) -> AsyncIterator[Any]:
    async for instance in fresh(await chromiums.get(CHROMIUM_ARGS)):
        yield instance


@pytest.fixture
async def webrtc_browser(chromiums: Chromiums) -> AsyncIterator[Any]:
    """Chromium with fake camera/microphone that may use loopback ICE candidates."""
    async for instance in fresh(await chromiums.get(WEBRTC_ARGS)):
        yield instance
