"""Private use is spared on the desktop too: while the active window's title carries a word
of the school's list, the desktop agent (real capture under Xvfb, real server) grabs
nothing, sends no title, and the tile says "private page"; back to a lesson window, frames
flow again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from klasblik.agent.capture import ScreenGrabber
from klasblik.agent.private import PrivateWatch, is_private_title
from tests.agent.agent_xscreen import XPainter, Xvfb
from tests.agent.test_agent_live_server import (
    ANNA,
    WAIT_S,
    CountingGrabber,
    Dashboard,
    _agent,
    _quadrants,
)
from tests.support.live import start_live_server
from tests.support.timing import timeout, wait_for


def test_title_words_match_without_regard_to_case() -> None:
    words = ("Gmail", "Mijn ING")
    assert is_private_title("Inbox (3) - anna@gmail.com - GMAIL - Chromium", words)
    assert is_private_title("mijn ing - overzicht", words)
    assert not is_private_title("Rekenen – blok 3", words)
    assert not is_private_title(None, words)
    assert not is_private_title("Gmail", ())
    watch = PrivateWatch()
    assert [watch.update(v) for v in (False, True, True, False)] == [None, True, None, False]


@pytest.mark.xvfb
async def test_private_window_is_never_captured(
    xvfb: Xvfb, painter: XPainter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", xvfb.display)
    server = await start_live_server(tmp_path, private_titles=("Mijn Bank",))
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    painter.show(_quadrants((230, 30, 40)))
    painter.set_active_window_title("Mijn Bank – saldo en betalen")
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    _client, stop, task = _agent(server, tmp_path, ANNA[0], grabber)
    dash: Dashboard | None = None
    try:
        await wait_for(lambda: sid in server.hub.agents, WAIT_S, "agent attached")
        http = await server.login("teacher@school.example")
        dash = Dashboard(await server.dashboard(http))
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"] is True
        await wait_for(
            lambda: any(
                e["type"] == "status" and e["state"].get("private_page") for e in dash.events
            ),
            WAIT_S,
            "the tile told 'private page'",
        )
        await asyncio.sleep(timeout(1.0))  # several grid intervals
        assert grabber.grabs == 0, "a private window is never grabbed"
        assert dash.frames == []
        assert not any("Bank" in t.get("title", "") for tabs in dash.tabs() for t in tabs)
        painter.set_active_window_title("Rekenen – blok 3")
        await wait_for(lambda: dash.frames, WAIT_S, "frames again after the private window")
        assert grabber.grabs > 0
        assert "private_page" not in server.hub.status(sid)
    finally:
        if dash is not None:
            await dash.close()
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        await server.stop()
