"""Conformance checks every Klasblik agent must pass (docs/protocol.md), run against a
probe server for each agent driver in drivers.DRIVERS."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from klasblik import protocol
from tests.support.timing import timeout

from .drivers import DRIVERS, AgentDriver
from .probe import WATCH_OFF, ProbeConnection, ProbeServer, watch_message

pytestmark = pytest.mark.browser

TOKEN = "conformance-token"
ACCOUNT = "anna.bakker@school.example"
#: How long an agent may take to act on a watch (a capture pipeline is a few hundred ms);
#: a tolerance, so it scales with the timeouts.
SETTLE_S = timeout(1.0)


@pytest.fixture(params=DRIVERS, ids=lambda d: d.name)
def driver(request: pytest.FixtureRequest) -> AgentDriver:
    return request.param


@pytest.fixture
async def probe() -> AsyncIterator[ProbeServer]:
    server = ProbeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def conn(
    driver: AgentDriver, probe: ProbeServer, tmp_path: Path
) -> AsyncIterator[ProbeConnection]:
    """An agent connected to the probe, welcomed (heartbeat_s=1) and told mode off."""
    async with driver.run(tmp_path, probe.url, TOKEN, ACCOUNT):
        c = await probe.next_connection(timeout=timeout(30))
        await c.wait_for(lambda: c.received, timeout(10), "the first message")
        await c.welcome(heartbeat_s=1)
        await c.send(WATCH_OFF)
        yield c


def _decode(image: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(image))
    img.load()
    return img


async def test_hello_is_first_and_well_formed(conn: ProbeConnection) -> None:
    """The first message is a valid hello with our token and account, protocol 1."""
    first = conn.received[0]
    assert first.message is not None, f"first message was not text: {first}"
    hello = first.message
    assert hello["type"] == "hello"
    assert hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["token"] == TOKEN
    assert hello["account"] == ACCOUNT
    assert hello["device"]["kind"] in ("desktop", "chromebook")
    assert conn.errors() == []


async def test_heartbeats_arrive_and_nothing_else_while_off(conn: ProbeConnection) -> None:
    """With mode off the agent sends heartbeats (every heartbeat_s) and no frames or tabs."""
    start = time.monotonic()
    await conn.wait_for(
        lambda: len(conn.messages("heartbeat", start)) >= 3, timeout(8), "3 heartbeats"
    )
    assert conn.frames() == []
    assert conn.messages("tabs") == []
    assert conn.errors() == []


async def test_grid_frames_are_valid_and_within_size(conn: ProbeConnection) -> None:
    """After a grid watch, frames have a valid header, decode, fit the size and say grid."""
    await conn.send(watch_message("grid", width=320, height=200, quality=50))
    frames = await conn.wait_for(conn.frames, timeout(15), "a grid frame")
    first = frames[0]
    assert first.header is not None
    assert first.header.kind == protocol.FrameKind.GRID
    img = _decode(first.image)
    assert img.size == (first.header.width, first.header.height)
    assert 1 <= img.width <= 320 and 1 <= img.height <= 200
    assert img.width == 320 or img.height == 200, f"{img.size} should fill the box"
    assert conn.errors() == []


async def test_no_frames_after_going_back_to_off(conn: ProbeConnection) -> None:
    """Once mode is off again, no frame arrives (after a short settling time)."""
    await conn.send(watch_message("grid", interval_ms=500))
    await conn.wait_for(conn.frames, timeout(15), "a grid frame")
    await conn.send(WATCH_OFF)
    await asyncio.sleep(SETTLE_S)  # a capture under way at "off" may still arrive
    after = time.monotonic()
    await asyncio.sleep(3)  # idle: heartbeats (every 1 s) but no frame may come
    assert conn.frames(since=after) == []
    assert conn.messages("heartbeat", since=after), "heartbeats go on while off"


async def test_tabs_sent_only_when_asked(conn: ProbeConnection) -> None:
    """tabs never arrive with tabs 'none'; with 'active' a valid one-tab list arrives."""
    await conn.send(watch_message("grid", tabs="none"))
    await conn.wait_for(conn.frames, timeout(15), "a grid frame")
    await asyncio.sleep(2)  # idle: two grid intervals, and no tabs may come with them
    assert conn.messages("tabs") == []
    asked = time.monotonic()
    await conn.send(watch_message("grid", tabs="active"))
    tabs = await conn.wait_for(lambda: conn.messages("tabs", asked), timeout(10), "a tabs message")
    listed = tabs[0]["tabs"]
    assert len(listed) == 1 and listed[0]["active"] is True
    assert isinstance(listed[0]["title"], str)
