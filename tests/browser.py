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
        violations = watch_csp(instance)
        try:
            yield instance
        finally:
            await instance.close()
        assert not violations, f"Content-Security-Policy violations: {violations}"


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
