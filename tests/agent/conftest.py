"""Fixtures for the desktop agent tests: a real X screen (Xvfb) to capture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.agent_xscreen import XPainter, Xvfb, XvfbMissing, start_xvfb


@pytest.fixture
def xvfb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Xvfb]:
    """An Xvfb screen of 1280×720×24 on a free display, stopped after the test.

    DISPLAY names it for the test, so the agent's watched indicator appears on it.
    """
    try:
        with start_xvfb(1280, 720) as screen:
            monkeypatch.setenv("DISPLAY", screen.display)
            yield screen
    except XvfbMissing as exc:
        pytest.fail(f"the desktop agent tests need Xvfb: {exc}")


@pytest.fixture
def painter(xvfb: Xvfb) -> Iterator[XPainter]:
    """Draws known images on the Xvfb screen."""
    try:
        p = XPainter(xvfb.display)
    except XvfbMissing as exc:
        pytest.fail(str(exc))
    yield p
    p.close()
