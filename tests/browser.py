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
            browser.csp_violations = watch_csp(browser)
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
    """Hand ``browser`` to one test, then close whatever contexts (profiles) the test left open; the test
    fails on any Content-Security-Policy violation of its pages."""
    violations: list[str] = browser.csp_violations
    violations.clear()
    try:
        yield browser
    finally:
        if browser.is_connected():
            for context in list(browser.contexts):
                await context.close()
    assert not violations, f"Content-Security-Policy violations: {violations}"


@pytest.fixture
async def browser(chromiums: Chromiums) -> AsyncIterator[Any]:
    async for instance in fresh(await chromiums.get(CHROMIUM_ARGS)):
        yield instance


@pytest.fixture
async def webrtc_browser(chromiums: Chromiums) -> AsyncIterator[Any]:
    """Chromium with fake camera/microphone that may use loopback ICE candidates."""
    async for instance in fresh(await chromiums.get(WEBRTC_ARGS)):
        yield instance


# Reports every violation to the console, where Chromium also writes its own "Refused to ..." lines.
_REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.documentURI} from ${e.sourceFile}:${e.lineNumber}`);
});"""


def watch_csp(browser: Any) -> list[str]:
    """Collect Content-Security-Policy violations of every page opened by ``browser`` (``new_context`` and
    ``new_page``); the ``browser`` fixture fails the test when any occurred, so every browser test checks the policy."""
    violations: list[str] = []

    def on_console(message: Any) -> None:
        text = message.text
        if "frame-ancestors" in text:
            return  # another site framing a page of ours was refused: the policy working, not a page breaking it
        if "Content Security Policy" in text or text.startswith("CSP violation"):
            violations.append(text)

    async def watched(context: Any) -> Any:
        await context.add_init_script(_REPORT_VIOLATIONS)
        context.on("page", lambda page: page.on("console", on_console))
        for page in context.pages:
            page.on("console", on_console)
        return context

    new_context, new_page = browser.new_context, browser.new_page

    async def new_context_watched(*args: Any, **kwargs: Any) -> Any:
        return await watched(await new_context(*args, **kwargs))

    async def new_page_watched(*args: Any, **kwargs: Any) -> Any:
        page = await new_page(*args, **kwargs)
        await watched(page.context)
        return page

    browser.new_context, browser.new_page = new_context_watched, new_page_watched
    browser.unwatched_new_context = new_context  # for a test that provokes a violation on purpose
    return violations
