"""The Chromebook agent in headless Chromium, against the probe server: what it captures,
what it shows the student, and how it behaves when things go wrong."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import expect

from klasblik import protocol

from ..conformance.probe import WATCH_OFF, ProbeConnection, ProbeServer, watch_message
from ..support.timing import timeout
from .extension import EXTENSION_ID, ChromeAgent, running_agent
from .pages import serve_pages, solid_page_html

pytestmark = pytest.mark.browser

ACCOUNT = "sem.devries@school.example"
RED = "#d01010"
BLUE = "#1030d0"


@dataclass
class Rig:
    agent: ChromeAgent
    probe: ProbeServer
    conn: ProbeConnection
    base: str


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The extension connected to a probe server, welcomed, mode off, a red page open."""
    probe = ProbeServer()
    await probe.start()
    pages = {
        "/red": solid_page_html("Rood vlak", RED),
        "/blue": solid_page_html("Blauw vlak", BLUE),
    }
    try:
        async with serve_pages(pages) as base:
            async with running_agent(
                tmp_path, server_url=probe.url, token="tok", account=ACCOUNT
            ) as agent:
                await agent.open_page(base + "/red")
                conn = await probe.next_connection(timeout=timeout(30))
                await conn.wait_for(lambda: conn.hello, timeout(10), "hello")
                await conn.welcome(heartbeat_s=2)
                await conn.send(WATCH_OFF)
                yield Rig(agent, probe, conn, base)
    finally:
        await probe.stop()


def centre_colour(image: bytes) -> tuple[int, int, int]:
    img = Image.open(io.BytesIO(image)).convert("RGB")
    return img.getpixel((img.width // 2, img.height // 2))  # type: ignore[return-value]


def close_to(rgb: tuple[int, int, int], hex_colour: str, tol: int = 40) -> bool:
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=False))


async def test_thumbnail_shows_the_page_and_tabs_list_it(rig: Rig) -> None:
    """A grid watch brings a JPEG thumbnail of the red page and a tab list naming it."""
    await rig.conn.send(watch_message("grid", width=400, height=225, tabs="all"))
    frames = await rig.conn.wait_for(rig.conn.frames, timeout(15), "a frame")
    header = frames[0].header
    assert header is not None and header.encoding == protocol.Encoding.JPEG
    assert close_to(centre_colour(frames[0].image), RED), centre_colour(frames[0].image)
    lists = await rig.conn.wait_for(lambda: rig.conn.messages("tabs"), timeout(10), "tabs")
    tabs = lists[-1]["tabs"]
    red = [t for t in tabs if t["url"] == rig.base + "/red"]
    assert red and red[0]["title"] == "Rood vlak" and red[0]["active"] is True
    assert all(isinstance(t["window"], int) for t in tabs)


async def test_webp_and_focus_frames(rig: Rig) -> None:
    """Focus mode sends kind 2 frames in WebP when asked, larger than the grid size."""
    await rig.conn.send(
        watch_message("focus", width=1280, height=720, interval_ms=500, encoding="webp", quality=70)
    )
    frames = await rig.conn.wait_for(rig.conn.frames, timeout(15), "a focus frame")
    header = frames[0].header
    assert header is not None
    assert (header.kind, header.encoding) == (protocol.FrameKind.FOCUS, protocol.Encoding.WEBP)
    assert header.width > 400 and header.width <= 1280 and header.height <= 720
    assert close_to(centre_colour(frames[0].image), RED)


async def test_unchanged_screen_sends_no_new_frame(rig: Rig) -> None:
    """A static page yields one frame; a change on screen yields the next one."""
    await rig.conn.send(watch_message("grid", interval_ms=500))
    await rig.conn.wait_for(rig.conn.frames, timeout(15), "a frame")
    await asyncio.sleep(3)  # idle: six capture intervals of a static page send nothing new
    assert len(rig.conn.frames()) == 1
    page = rig.agent.context.pages[-1]
    await page.evaluate(f"document.body.style.background = {BLUE!r}")
    frames = await rig.conn.wait_for(
        lambda: rig.conn.frames()[1:], timeout(10), "a frame after the change"
    )
    assert close_to(centre_colour(frames[0].image), BLUE)
    assert frames[0].header is not None and frames[0].header.seq == 1


async def test_badge_shows_while_watched(rig: Rig) -> None:
    """The toolbar badge says ON and names the viewers while watched, and clears at off."""
    assert (await rig.agent.badge())["text"] == ""
    await rig.conn.send(watch_message("grid", viewers=["M. de Vries", "J. Jansen"]))
    await rig.agent.wait_status(lambda s: s["mode"] == "grid")
    badge = await rig.agent.badge()
    assert badge["text"] == "ON"
    assert "M. de Vries" in badge["title"] and "J. Jansen" in badge["title"]
    await rig.conn.send(WATCH_OFF)
    await rig.agent.wait_status(lambda s: s["mode"] == "off")
    assert (await rig.agent.badge())["text"] == ""


async def test_options_page_shows_status(rig: Rig) -> None:
    """The options page says configured, connected and who is watching."""
    await rig.conn.send(watch_message("grid", viewers=["M. de Vries"]))
    await rig.agent.wait_status(lambda s: s["mode"] == "grid")
    page = await rig.agent.open_page(f"chrome-extension://{EXTENSION_ID}/options.html")
    await page.wait_for_function("document.getElementById('watched').textContent.startsWith('yes')")
    assert (await page.text_content("#configured") or "").startswith("yes")
    assert (await page.text_content("#account")) == ACCOUNT
    assert "Probe S." in (await page.text_content("#connected") or "")
    assert "M. de Vries" in (await page.text_content("#watched") or "")


async def test_popup_says_who_is_watching(rig: Rig) -> None:
    """The toolbar popup names who watches (from _locales through chrome.i18n), and says
    nobody does once the watch ends; the tooltip is worded from _locales too."""
    await rig.conn.send(watch_message("focus", viewers=["M. de Vries"]))
    await rig.agent.wait_status(lambda s: s["mode"] == "focus")
    page = await rig.agent.open_page(f"chrome-extension://{EXTENSION_ID}/popup.html")
    state = page.locator("#state")  # polled by Playwright: extension pages forbid eval
    await expect(state).to_have_text("M. de Vries is looking at your screen closely now.")
    assert (await rig.agent.badge())["title"] == "Klasblik: M. de Vries viewing your screen closely"
    await rig.conn.send(WATCH_OFF)
    await expect(state).to_have_text(re.compile(r"^Nobody is watching"))
    assert (await page.get_attribute("html", "lang")) == "en"


@pytest.mark.parametrize(
    "url", ["chrome://version/", f"chrome-extension://{EXTENSION_ID}/options.html"]
)
async def test_uncapturable_page_sends_capture_error(rig: Rig, url: str) -> None:
    """On a page Chrome will not capture, the agent says so instead of sending frames."""
    await rig.agent.open_page(url)
    await rig.conn.send(watch_message("grid", interval_ms=500))
    errors = await rig.conn.wait_for(
        lambda: rig.conn.messages("capture_error"), timeout(10), "capture_error"
    )
    assert (errors[0]["reason"], errors[0]["code"]) == ("page cannot be captured", "page")
    await asyncio.sleep(2)  # idle: four capture intervals, with no frame and no second error
    assert rig.conn.frames() == []
    assert len(rig.conn.messages("capture_error")) == 1, "the same reason is not repeated"


async def test_reconnects_when_the_server_comes_back(rig: Rig) -> None:
    """The server going away and coming back on the same port: the agent says hello again."""
    port = rig.probe.port
    await rig.probe.stop()
    down = await rig.agent.wait_status(lambda s: not s["connected"], timeout=timeout(10))
    assert (await rig.agent.badge())["text"] == ""
    await rig.agent.wait_status(  # an attempt that fails while the server is down
        lambda s: s["lastClose"]["at"] > down["lastClose"]["at"], timeout=timeout(10)
    )
    await rig.probe.start(port)
    started = time.monotonic()
    conn = await rig.probe.next_connection(timeout=timeout(30), after=1)
    hello = await conn.wait_for(lambda: conn.hello, timeout(10), "hello after reconnect")
    assert hello["account"] == ACCOUNT
    assert rig.conn.hello is not None
    assert hello["device"]["id"] == rig.conn.hello["device"]["id"], "device id is stable"
    assert time.monotonic() - started < timeout(30)


async def test_without_managed_config_it_does_nothing(tmp_path: Path) -> None:
    """Without serverUrl/enrollmentToken policy the extension opens no connection and says why."""
    async with running_agent(tmp_path, server_url=None, token=None, account=ACCOUNT) as agent:
        status = await agent.wait_status(lambda s: s["configError"] is not None)
        assert status["configured"] is False
        assert "not configured" in status["configError"]
        page = await agent.open_page(f"chrome-extension://{EXTENSION_ID}/options.html")
        await page.wait_for_function(
            "document.getElementById('configured').textContent.startsWith('no')"
        )
        assert "not configured" in (await page.text_content("#configured") or "")
        assert (await agent.badge())["text"] == ""


async def test_worker_stopped_by_chrome_comes_back(rig: Rig) -> None:
    """If Chrome stops the service worker, the next browser event (or the keepalive alarm)
    restarts it and it connects again."""
    alarm = await rig.agent.evaluate("chrome.alarms.get('klasblik-keepalive')")
    assert alarm is not None and alarm["periodInMinutes"] == 1
    page = rig.agent.context.pages[-1]
    cdp = await rig.agent.context.new_cdp_session(page)
    await cdp.send("ServiceWorker.enable")
    await cdp.send("ServiceWorker.stopAllWorkers")
    await rig.conn.wait_for(
        rig.conn.closed.is_set, timeout(10), "the socket to close with the worker"
    )
    await rig.agent.open_page(rig.base + "/blue")  # tabs.onCreated wakes the worker
    conn = await rig.probe.next_connection(timeout=timeout(20), after=1)
    hello = await conn.wait_for(lambda: conn.hello, timeout(10), "hello from the restarted worker")
    assert rig.conn.hello is not None
    assert hello["device"]["id"] == rig.conn.hello["device"]["id"]


async def test_close_codes_decide_when_to_reconnect(rig: Rig) -> None:
    """After 1001 it reconnects within seconds; after 4003 (staff account) it waits an hour."""
    await rig.conn.ws.close(1001, "server shutting down")
    second = await rig.probe.next_connection(timeout=timeout(15), after=1)
    await second.wait_for(lambda: second.hello, timeout(10), "hello after 1001")
    await second.welcome()
    await rig.agent.wait_status(lambda s: s["connected"])
    await second.ws.close(4003, "not_a_student")
    status = await rig.agent.wait_status(
        lambda s: s["lastClose"] and s["lastClose"]["code"] == 4003
    )
    wait_s = (status["nextAttemptAt"] - status["lastClose"]["at"]) / 1000
    assert 3600 <= wait_s <= 3601, wait_s
    stored = await rig.agent.evaluate("chrome.storage.local.get('forbiddenUntil')")
    assert stored["forbiddenUntil"] == status["nextAttemptAt"], "the wait survives a worker restart"
    await asyncio.sleep(3)  # idle: after 4003 no reconnection may come (1001 took about 1 s)
    assert len(rig.probe.connections) == 2


async def test_changed_managed_config_takes_effect(rig: Rig) -> None:
    """When IT changes serverUrl/enrollmentToken, the extension moves to the new server."""
    other = ProbeServer()
    await other.start()
    try:
        rig.agent.set_managed({"serverUrl": other.url, "enrollmentToken": "new-token"})
        # Chromium re-reads policy files after ~5 s
        conn = await other.next_connection(timeout=timeout(30))
        hello = await conn.wait_for(lambda: conn.hello, timeout(10), "hello at the new server")
        assert hello["token"] == "new-token"
        await rig.conn.wait_for(rig.conn.closed.is_set, timeout(5), "the old connection to close")
    finally:
        await other.stop()
