"""The agent's conversation with a server, against the protocol stand-in (tests/agent).

Frames come from a real Xvfb screen; the server side is agent_standin_server.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from klasblik.agent.capture import CaptureError, CaptureWorker, Grab, ScreenGrabber
from klasblik.agent.client import AgentClient
from klasblik.agent.pacing import Backoff
from klasblik.agent.settings import AgentSettings, load_agent_settings
from klasblik.protocol import Encoding, FrameKind
from tests.agent.agent_standin_server import WAIT_S, StandInServer, standin_server
from tests.agent.agent_xscreen import XPainter, Xvfb
from tests.support.timing import timeout, wait_for

pytestmark = pytest.mark.xvfb


class CountingGrabber:
    """A real grabber that counts its grabs (to prove "off" means no capture at all)."""

    def __init__(self, inner: ScreenGrabber) -> None:
        self.inner = inner
        self.grabs = 0

    def grab(self) -> Grab:
        self.grabs += 1
        return self.inner.grab()

    def close(self) -> None:
        self.inner.close()


class FailingGrabber:
    """A screen that cannot be captured, for a given list of reasons in turn."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        self.grabs = 0

    def grab(self) -> Grab:
        reason = self.reasons[min(self.grabs, len(self.reasons) - 1)]
        self.grabs += 1
        raise CaptureError(reason)

    def close(self) -> None:
        pass


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with standin_server() as s:
        yield s


def _settings(server: StandInServer, tmp_path: Path, **extra: str) -> AgentSettings:
    return load_agent_settings(
        {
            "server": server.url,
            "token": "tok",
            "account": "anna@school.example",
            "state_dir": str(tmp_path),
            "capture_retry_s": "1",
            **extra,
        },
        env={},
    )


class Running:
    """An AgentClient running in a task, stopped at the end of the test."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(client.run(self.stop))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=WAIT_S)


@pytest.fixture
def screen(xvfb: Xvfb, painter: XPainter) -> Iterator[tuple[Xvfb, XPainter]]:
    page = Image.new("RGB", (1280, 720), "white")
    ImageDraw.Draw(page).text((100, 100), "Opdracht 1: 3/4 + 1/8 =", fill="black")
    painter.show(page)
    yield xvfb, painter


async def test_hello_first_then_heartbeats(server: StandInServer, tmp_path: Path) -> None:
    """The first message is a valid hello with token, account and device; heartbeats follow welcome."""
    agent = Running(AgentClient(_settings(server, tmp_path), CaptureWorker(FailingGrabber(["x"]))))
    try:
        conn = await server.next_connection()
        await conn.wait_for(lambda: len(conn.messages) >= 1)
        hello = conn.messages[0]
        assert hello["type"] == "hello" and hello["protocol"] == 1
        assert hello["token"] == "tok" and hello["account"] == "anna@school.example"
        assert hello["device"]["kind"] == "desktop"
        assert hello["device"]["id"] == (tmp_path / "device-id").read_text().strip()
        assert conn.of_type("heartbeat") == []
        await conn.welcome(heartbeat_s=1)
        await conn.watch("off")
        await conn.wait_for(lambda: len(conn.of_type("heartbeat")) >= 2)
        seqs = [m["seq"] for m in conn.of_type("heartbeat")]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert conn.frames == [] and conn.of_type("capture_error") == []
    finally:
        await agent.finish()


async def test_grid_frames_then_focus_then_off(
    server: StandInServer, tmp_path: Path, screen: tuple[Xvfb, XPainter]
) -> None:
    """grid gives thumbnails, focus larger frames (JPEG by default); an unchanged screen and off give none."""
    xvfb, painter = screen
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    agent = Running(AgentClient(_settings(server, tmp_path), CaptureWorker(grabber)))
    try:
        conn = await server.next_connection()
        await conn.welcome(heartbeat_s=1)
        await conn.watch("off")
        await asyncio.sleep(0.5)  # idle: with mode off nothing may be grabbed
        assert grabber.grabs == 0, "mode off must not capture at all"

        await conn.watch("grid", 400, 225, interval_ms=200, quality=55)
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        header, image, _ = conn.frames[0]
        assert (header.kind, header.encoding) == (FrameKind.GRID, Encoding.JPEG)
        assert Image.open(io.BytesIO(image)).size == (header.width, header.height) == (400, 225)
        # The screen does not change: grabs go on, frames do not.
        grabs = grabber.grabs
        await conn.wait_for(lambda: grabber.grabs >= grabs + 4)
        assert len(conn.frames) == 1

        page = Image.new("RGB", (1280, 720), (30, 90, 200))
        painter.show(page)
        await conn.wait_for(lambda: len(conn.frames) >= 2)
        assert (
            Image.open(io.BytesIO(conn.frames[1][1])).convert("RGB").getpixel((200, 100))[2] > 150
        )

        await conn.watch("focus", 1280, 720, interval_ms=300, quality=70)
        await conn.wait_for(lambda: any(h.kind == FrameKind.FOCUS for h, _, _ in conn.frames))
        focus = [(h, t) for h, _, t in conn.frames if h.kind == FrameKind.FOCUS]
        assert (focus[0][0].width, focus[0][0].height, focus[0][0].encoding) == (
            1280,
            720,
            Encoding.JPEG,
        )
        # The interval (200 ms, then 300 ms) holds between the grabs of any two frames.
        times = [h.captured_at_ms for h, _, _ in conn.frames]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 198, gaps

        await conn.watch("off")
        await asyncio.sleep(timeout(0.3))  # a grab already running may finish, and is dropped
        count, grabs = len(conn.frames), grabber.grabs
        painter.show(Image.new("RGB", (1280, 720), (200, 10, 10)))
        await asyncio.sleep(1.0)  # idle: a changed screen, but off: no grab, no frame
        assert len(conn.frames) == count
        assert grabber.grabs == grabs
        seqs = [h.seq for h, _, _ in conn.frames]
        assert seqs == sorted(set(seqs))
    finally:
        await agent.finish()


async def test_window_title_sent_as_one_tab_when_changed(
    server: StandInServer, tmp_path: Path, screen: tuple[Xvfb, XPainter]
) -> None:
    """With tabs active the window title goes out as one tab, once per change; with none never."""
    xvfb, _ = screen
    titles = iter(["Word – verslag"] * 3 + ["Rekenen – blok 3"] * 100)
    client = AgentClient(
        _settings(server, tmp_path),
        CaptureWorker(ScreenGrabber(display=xvfb.display)),
        window_title=lambda: next(titles),
    )
    agent = Running(client)
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("grid", interval_ms=100, tabs="none")
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        await asyncio.sleep(0.3)  # idle: three intervals with tabs "none", so no tabs
        assert conn.of_type("tabs") == []
        await conn.watch("grid", interval_ms=100, tabs="active")
        await conn.wait_for(lambda: len(conn.of_type("tabs")) >= 2)
        await asyncio.sleep(0.5)  # idle: the title stays, so no third tabs message
        tabs = conn.of_type("tabs")
        assert [t["tabs"] for t in tabs] == [
            [{"title": "Word – verslag", "url": "", "active": True, "window": 1}],
            [{"title": "Rekenen – blok 3", "url": "", "active": True, "window": 1}],
        ]
    finally:
        await agent.finish()


async def test_capture_error_once_per_reason(
    server: StandInServer, tmp_path: Path, xvfb: Xvfb
) -> None:
    """A screen that cannot be captured gives one capture_error per distinct reason, and retries."""
    grabber = FailingGrabber(["no display to capture (DISPLAY not set)"] * 2 + ["screen is locked"])
    agent = Running(AgentClient(_settings(server, tmp_path), CaptureWorker(grabber)))
    try:
        conn = await server.next_connection()
        await conn.welcome(heartbeat_s=1)
        await conn.watch("grid", interval_ms=100)
        await conn.wait_for(lambda: len(conn.of_type("capture_error")) >= 2)
        await asyncio.sleep(1.5)  # idle: a retry (every 1 s) with the same reason, not reported
        reasons = [m["reason"] for m in conn.of_type("capture_error")]
        assert reasons == ["no display to capture (DISPLAY not set)", "screen is locked"]
        assert grabber.grabs >= 3
        assert not agent.task.done()
    finally:
        await agent.finish()


async def test_refused_account_is_logged_and_retried_with_backoff(
    server: StandInServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An error + close 4001 is logged with its code and message; the agent comes back later."""
    caplog.set_level(logging.INFO, "klasblik.agent")
    backoff = Backoff(start_s=0.2, rng=random.Random(4))
    agent = Running(
        AgentClient(
            _settings(server, tmp_path), CaptureWorker(FailingGrabber(["x"])), backoff=backoff
        )
    )
    try:
        conn = await server.next_connection()
        await conn.send(
            {
                "type": "error",
                "error": {
                    "code": "unknown_account",
                    "message": "anna@school.example is not in the roster",
                },
            }
        )
        await conn.ws.close(code=4001)
        again = await server.next_connection()
        await again.wait_for(lambda: len(again.messages) >= 1)
        assert again.messages[0]["type"] == "hello"
        text = caplog.text
        assert "unknown_account" in text and "is not in the roster" in text
        assert backoff.attempts >= 1
    finally:
        await agent.finish()


async def test_staff_refusal_waits_an_hour(
    server: StandInServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After close 4003 the agent does not come back soon (it waits at least an hour)."""
    caplog.set_level(logging.INFO, "klasblik.agent")
    agent = Running(
        AgentClient(
            _settings(server, tmp_path),
            CaptureWorker(FailingGrabber(["x"])),
            backoff=Backoff(start_s=0.05),
        )
    )
    try:
        conn = await server.next_connection()
        await conn.send({"type": "error", "error": {"code": "not_a_student", "message": "staff"}})
        await conn.ws.close(code=4003)
        with pytest.raises(TimeoutError):  # idle: 1.5 s without a reconnection (not scaled)
            await server.next_connection(timeout=1.5)
        assert "close 4003" in caplog.text and "minutes" in caplog.text
        assert not agent.task.done()
    finally:
        await agent.finish()


async def test_dropped_connection_and_missing_server_do_not_crash(tmp_path: Path) -> None:
    """No server at all, then a server that drops the socket: the agent keeps trying."""
    async with standin_server() as first:
        url = first.url
    settings = load_agent_settings(
        {"server": url, "token": "tok", "account": "a@b.example", "state_dir": str(tmp_path)},
        env={},
    )
    backoff = Backoff(start_s=0.05, max_s=0.2)
    agent = Running(AgentClient(settings, CaptureWorker(FailingGrabber(["x"])), backoff=backoff))
    try:
        await wait_for(lambda: backoff.attempts >= 3, WAIT_S, "connection refused three times")
        assert not agent.task.done()
        async with standin_server() as server:
            agent.client.settings = load_agent_settings(
                {
                    "server": server.url,
                    "token": "tok",
                    "account": "a@b.example",
                    "state_dir": str(tmp_path),
                },
                env={},
            )
            conn = await server.next_connection()
            await conn.welcome()
            transport = conn.ws._req.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()  # the network goes away without a close frame
            conn2 = await server.next_connection()
            await conn2.wait_for(lambda: len(conn2.messages) >= 1)
            assert conn2.messages[0]["type"] == "hello"
        assert not agent.task.done()
    finally:
        await agent.finish()


async def test_encoding_server_follows_the_watch(
    server: StandInServer, tmp_path: Path, screen: tuple[Xvfb, XPainter]
) -> None:
    """With encoding=server the agent sends what the watch asks: WebP, then JPEG."""
    xvfb, _painter = screen
    client = AgentClient(
        _settings(server, tmp_path, encoding="server"),
        CaptureWorker(ScreenGrabber(display=xvfb.display)),
    )
    agent = Running(client)
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("grid", interval_ms=100, encoding="webp")
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        assert conn.frames[0][1][:4] == b"RIFF" and conn.frames[0][0].encoding == Encoding.WEBP
        await conn.watch("grid", interval_ms=100, encoding="jpeg")
        await conn.wait_for(lambda: len(conn.frames) >= 2)
        assert conn.frames[-1][0].encoding == Encoding.JPEG
    finally:
        await agent.finish()


class TruncatedGrabber:
    """A grab whose buffer is too short for its size (what a broken driver might give)."""

    def grab(self) -> Grab:
        return Grab(bytearray(16), 1920, 1080, 0)

    def close(self) -> None:
        pass


async def test_unusable_grab_is_a_capture_error(
    server: StandInServer, tmp_path: Path, xvfb: Xvfb
) -> None:
    """A grab Pillow cannot use becomes a capture_error naming the problem; the agent goes on."""
    agent = Running(AgentClient(_settings(server, tmp_path), CaptureWorker(TruncatedGrabber())))
    try:
        conn = await server.next_connection()
        await conn.welcome(heartbeat_s=1)
        await conn.watch("grid", interval_ms=100)
        await conn.wait_for(lambda: len(conn.of_type("capture_error")) >= 1)
        reason = conn.of_type("capture_error")[0]["reason"]
        assert reason.startswith(
            "could not process the screen image: grab of 16 bytes is too small"
        )
        await conn.wait_for(lambda: len(conn.of_type("heartbeat")) >= 1)
        assert not agent.task.done()
    finally:
        await agent.finish()


async def test_replaced_connection_keeps_backing_off(server: StandInServer, tmp_path: Path) -> None:
    """After close 4009 (replaced) the backoff is not reset, so two devices do not flap."""
    backoff = Backoff(start_s=0.05, max_s=0.2, rng=random.Random(2))
    agent = Running(
        AgentClient(
            _settings(server, tmp_path), CaptureWorker(FailingGrabber(["x"])), backoff=backoff
        )
    )
    try:
        for expected in (1, 2):
            conn = await server.next_connection()
            await conn.welcome()
            await conn.wait_for(
                lambda: agent.client.session is not None and agent.client.session.welcomed.is_set()
            )
            await conn.ws.close(code=4009)
            await conn.wait_for(lambda expected=expected: backoff.attempts >= expected)
        conn = await server.next_connection()
        await conn.welcome()
        await conn.ws.close(code=1001)  # an ordinary close after a welcome starts afresh
        await conn.wait_for(lambda: backoff.attempts == 1)
    finally:
        await agent.finish()
