"""Debian's Chromium for the browser tests: where it is, the flags every test starts it
with, and a clear failure when it is missing. Playwright drives it; it never downloads a
browser of its own."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.timing import timeout_ms

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "launch", "require_chromium"]

CHROMIUM = Path(os.environ.get("KLASBLIK_CHROMIUM", "/usr/bin/chromium"))
#: No sandbox (root in CI), no GPU, and nothing that calls out: this machine's network is
#: closed, and Chromium's background connections would be refused many at a time.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)


def require_chromium() -> None:
    """Fail (never skip) when Debian's Chromium or Python Playwright is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package chromium "
            "(scripts/lib/system-packages does)"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("Python Playwright is missing: scripts/lib/venv test installs it")


@contextlib.asynccontextmanager
async def launch(extra_args: Sequence[str] = ()) -> AsyncIterator[Any]:
    """A headless Chromium browser (Playwright), closed at the end."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, *extra_args],
            headless=True,
            timeout=timeout_ms(30_000),
        )
        try:
            yield browser
        finally:
            await browser.close()
