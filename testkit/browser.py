"""A real Chromium for the viewer's tests and benchmark, driven by Playwright for Python.

Playwright's own browser download is not needed: it launches the system's Chromium (Debian's
``chromium`` package, ``apt-get install chromium``) by path. ``GRAMLOGS_CHROMIUM`` names another
binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator

from playwright.async_api import Browser, async_playwright

__all__ = ["chromium_path", "launch"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The Chromium to drive, or None when this machine has none."""
    named = os.environ.get("GRAMLOGS_CHROMIUM")
    if named:
        return named
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.asynccontextmanager
async def launch() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on the way out."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: apt-get install chromium, or set GRAMLOGS_CHROMIUM")
    async with async_playwright() as playwright:
        # --no-sandbox: these machines run tests as root, where Chromium's sandbox refuses to start.
        browser = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
