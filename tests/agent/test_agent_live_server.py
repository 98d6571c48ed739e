"""End to end: the desktop agent, capturing a real Xvfb screen, against the real server.

The teacher side is a real dashboard WebSocket of a signed-in staff member; frames are
checked as the dashboard receives them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from klasblik import protocol as p
from klasblik.agent.capture import CaptureWorker, Grab, ScreenGrabber
from klasblik.agent.client import AgentClient
from klasblik.agent.pacing import Backoff
from klasblik.agent.settings import load_agent_settings
from tests.agent.agent_xscreen import XPainter, Xvfb
from tests.support.live import LiveServer
from tests.support.tiles import apply_frame
from tests.support.timing import timeout, wait_for

pytestmark = pytest.mark.xvfb

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
WAIT_S = timeout(10.0)  # generous: two shared cores


class CountingGrabber:
    def __init__(self, inner: ScreenGrabber) -> None:
        self.inner = inner
        self.grabs = 0

    def grab(self) -> Grab:
        self.grabs += 1
        return self.inner.grab()

    def close(self) -> None:
        self.inner.close()


class NoScreen:
    """For agents that must never get as far as capturing."""

    def grab(self) -> Grab:
        raise AssertionError("this agent must not capture")

    def close(self) -> None:
        pass


class Dashboard:
    """A signed-in dashboard socket that records frames and events in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[int, p.FrameHeader, bytes]] = []
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())
        self._id = 0

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(p.decode_viewer_frame(msg.data))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))

    async def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send_str(json.dumps({"type": kind, "id": self._id, **fields}))
        msg_id = self._id
        await wait_for(
            lambda: any(e["type"] == "result" and e["id"] == msg_id for e in self.events),
            WAIT_S,
            f"answer to {kind}",
        )
        return next(e for e in self.events if e["type"] == "result" and e["id"] == msg_id)

    def tabs(self) -> list[list[dict[str, Any]]]:
        return [e["tabs"] for e in self.events if e["type"] == "tabs"]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self._task], timeout=timeout(2))


def _quadrants(tl: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", (1280, 720), tl)
    img.paste((20, 180, 60), (640, 0, 1280, 360))
    img.paste((30, 60, 220), (0, 360, 640, 720))
    img.paste((250, 240, 30), (640, 360, 1280, 720))
    return img


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 16) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def _agent(
    live_server: LiveServer,
    tmp_path: Path,
    account: str,
    grabber: Any,
    backoff: Backoff | None = None,
) -> tuple[AgentClient, asyncio.Event, asyncio.Task[None]]:
    settings = load_agent_settings(
        {
            "server": live_server.agent_url,
            "token": live_server.token,
            "account": account,
            "state_dir": str(tmp_path / "agent"),
        },
        env={},
    )
    client = AgentClient(settings, CaptureWorker(grabber), backoff=backoff)
    stop = asyncio.Event()
    return client, stop, asyncio.create_task(client.run(stop))


async def test_agent_serves_a_real_teacher_view(
    live_server: LiveServer,
    xvfb: Xvfb,
    painter: XPainter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody watching: no capture; grid: the screen's thumbnail and window title reach the
    teacher; unchanged screen: no frames; focus: larger focus frames; teacher leaves: capture stops."""
    monkeypatch.setenv("DISPLAY", xvfb.display)
    ids = await live_server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    painter.show(_quadrants((230, 30, 40)))
    painter.set_active_window_title("Rekenen – blok 3")
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    _client, stop, task = _agent(live_server, tmp_path, ANNA[0], grabber)
    dash: Dashboard | None = None
    try:
        await wait_for(lambda: sid in live_server.hub.agents, WAIT_S, "agent attached")
        await asyncio.sleep(0.5)  # idle: nobody watches, so nothing may be grabbed
        assert grabber.grabs == 0, "nobody watches: the agent must not capture"

        http = await live_server.login("teacher@school.example")
        dash = Dashboard(await live_server.dashboard(http))
        result = await dash.command("subscribe", class_id=ids["class_id"])
        assert result["success"] is True
        await wait_for(lambda: dash.frames, WAIT_S, "a grid frame")
        ref, header, image = dash.frames[0]
        s = live_server.settings
        assert ref == sid and header.kind == p.FrameKind.GRID
        assert (header.width, header.height) == (400, 225) == (s.grid_width, s.grid_height)
        thumb = Image.open(io.BytesIO(image)).convert("RGB")
        for xy, colour in {
            (50, 50): (230, 30, 40),
            (350, 50): (20, 180, 60),
            (50, 180): (30, 60, 220),
            (350, 180): (250, 240, 30),
        }.items():
            assert _close(thumb.getpixel(xy), colour), (xy, thumb.getpixel(xy))
        await wait_for(lambda: dash.tabs(), WAIT_S, "the window title as a tab")
        assert dash.tabs()[0] == [
            {"title": "Rekenen – blok 3", "url": "", "active": True, "window": 1}
        ]

        # Unchanged screen: the agent keeps looking but sends nothing new.
        count, grabs = len(dash.frames), grabber.grabs
        await wait_for(lambda: grabber.grabs >= grabs + 4, WAIT_S, "four more grabs")
        assert len(dash.frames) == count

        painter.show(_quadrants((240, 240, 240)))
        await wait_for(lambda: len(dash.frames) > count, WAIT_S, "a frame after the screen changed")
        picture = None  # what the teacher sees: key frames with the deltas painted on them
        for _, header, body in dash.frames:
            picture = apply_frame(picture, header, body)
        assert picture is not None
        assert _close(picture.getpixel((50, 50)), (240, 240, 240))
        assert _close(picture.getpixel((350, 180)), (250, 240, 30))
        # only the changed quarter travelled, as a delta
        assert dash.frames[-1][1].encoding == p.Encoding.TILES

        assert (await dash.command("focus", student_id=sid))["success"] is True
        await wait_for(
            lambda: any(h.kind == p.FrameKind.FOCUS for _, h, _ in dash.frames),
            WAIT_S,
            "a focus frame",
        )
        focus = next(h for _, h, _ in dash.frames if h.kind == p.FrameKind.FOCUS)
        assert (focus.width, focus.height) == (1280, 720)  # the whole 1280x720 screen, not upscaled

        assert (await dash.command("unsubscribe", class_id=ids["class_id"]))["success"] is True
        await wait_for(lambda: live_server.hub.agents[sid].mode == "off", WAIT_S, "mode off")
        await asyncio.sleep(timeout(0.5))  # a grab already under way may finish
        grabs, frames_in = grabber.grabs, live_server.hub.agents[sid].frames_in
        painter.show(_quadrants((10, 10, 10)))
        await asyncio.sleep(1.5)  # idle: a changed screen, but off: no grab, no frame
        assert grabber.grabs == grabs, "mode off: no capture at all"
        assert live_server.hub.agents[sid].frames_in == frames_in
        assert not task.done()
    finally:
        if dash is not None:
            await dash.close()
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def test_unknown_account_is_logged_and_retried(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's unknown_account refusal is logged with its code; the agent keeps retrying."""
    caplog.set_level(logging.INFO, "klasblik.agent")
    await live_server.add_class("7B", [ANNA])
    client, stop, task = _agent(
        live_server,
        tmp_path,
        "nobody@school.example",
        NoScreen(),
        backoff=Backoff(start_s=0.1, max_s=0.2, rng=random.Random(1)),
    )
    try:
        await wait_for(lambda: client.backoff.attempts >= 2, WAIT_S, "two attempts")
        assert "server error unknown_account" in caplog.text
        assert "code 4001" in caplog.text
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def test_staff_account_is_refused_like_an_unknown_one(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A staff account's agent gets the very answer an unknown account gets (unknown_account,
    close 4001: the server is no oracle of who is staff) and retries with backoff."""
    caplog.set_level(logging.INFO, "klasblik.agent")
    await live_server.add_class("7B", [ANNA], teacher="teacher@school.example")
    client, stop, task = _agent(
        live_server,
        tmp_path,
        "teacher@school.example",
        NoScreen(),
        backoff=Backoff(start_s=0.1, max_s=0.2, rng=random.Random(1)),
    )
    try:
        await wait_for(lambda: client.backoff.attempts >= 2, WAIT_S, "two attempts")
        assert "server error unknown_account" in caplog.text and "code 4001" in caplog.text
        assert "not_a_student" not in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
