"""One tile per device: the desktop agent's screen and the browser extension's tabs.

A browser extension that says ``role: "tabs"`` in its hello, with the device id of the
desktop agent on the same PC, joins that agent instead of replacing it (no 4009): frames
come from the agent, tabs from the extension, and the agent stops sending its window
title. On another device (another id) the extension's tabs are not shown on this tile.
Real server, real sockets (tests/support/live.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from klasblik import protocol as p
from tests.support.live import LiveServer, TestAgent
from tests.support.timing import timeout, wait_for
from tests.test_server import ANNA, _subscribe, frame, next_viewer_frame

DEVICE = "pc-0042"


class DeviceAgent(TestAgent):
    """A test agent with a chosen device id and role."""

    def __init__(self, server: LiveServer, account: str, device: str, role: str | None) -> None:
        super().__init__(server, account)
        self.device, self.role = device, role

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        import asyncio

        self.ws = await self.http.ws_connect(self.server.agent_url)
        hello: dict[str, Any] = {
            "type": "hello",
            "protocol": 1,
            "token": token or self.server.token,
            "account": self.account,
            "device": {"id": self.device, "kind": "desktop"},
        }
        if self.role is not None:
            hello["role"] = self.role
        await self.ws.send_str(json.dumps(hello))
        first = json.loads(await self.ws.receive_str(timeout=timeout(5)))
        if first["type"] == "welcome":
            self.welcome = first
            self._reader = asyncio.create_task(self._read())
        return first


async def _tabs_seen(ws: Any, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while len(seen) < count:
        msg = await ws.receive(timeout=timeout(5))
        if msg.type.name == "TEXT":
            m = json.loads(msg.data)
            if m["type"] == "tabs":
                seen.append(m)
    return seen


def _tabs(title: str) -> str:
    return json.dumps(
        {
            "type": "tabs",
            "tabs": [{"title": title, "url": "https://x.example/", "active": True, "window": 1}],
        }
    )


async def test_extension_beside_the_desktop_agent_merges_into_one_tile(
    live_server: LiveServer,
) -> None:
    ids = await live_server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    desktop = DeviceAgent(live_server, ANNA[0], DEVICE, None)
    browser = DeviceAgent(live_server, ANNA[0], DEVICE, "tabs")
    http = await live_server.login("teacher@school.example")
    try:
        await desktop.connect()
        assert (await browser.connect())["type"] == "welcome"
        ws = await live_server.dashboard(http)
        await _subscribe(ws, ids["class_id"])
        await wait_for(
            lambda: desktop.mode == "grid" and browser.mode == "grid", message="both watched"
        )
        assert not desktop.ws.closed and not browser.ws.closed  # no 4009 either way
        assert live_server.hub.agents[sid].device_id == DEVICE
        # the agent sends the screen only; the extension the tabs
        assert desktop.watches[-1]["tabs"] == "none" and browser.watches[-1]["tabs"] == "active"
        assert browser.watches[-1]["viewers"] == desktop.watches[-1]["viewers"] != []

        await desktop.send(frame(seq=1))
        got = await next_viewer_frame(ws)
        assert got[0] == sid
        await browser.send(frame(seq=1))  # frames of the tabs-only connection are dropped
        await desktop.send(_tabs("Word – verslag"))  # the window title: not while merged
        await browser.send(_tabs("Rekenen – blok 3"))
        [shown] = await _tabs_seen(ws, 1)
        assert shown["student_id"] == sid and shown["tabs"][0]["title"] == "Rekenen – blok 3"
        assert live_server.hub.agents[sid].frames_in == 1

        # The extension leaves: the desktop agent sends its window title again.
        await browser.close()
        await wait_for(lambda: desktop.watches[-1]["tabs"] == "active", message="title back")
    finally:
        await desktop.close()
        await browser.close()


async def test_extension_on_another_device_does_not_join_or_replace(
    live_server: LiveServer,
) -> None:
    """Another device id: no merge; its tabs never reach this tile, and it is told off."""
    ids = await live_server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    desktop = DeviceAgent(live_server, ANNA[0], DEVICE, None)
    stranger = DeviceAgent(live_server, ANNA[0], "chromebook-7", "tabs")
    http = await live_server.login("teacher@school.example")
    try:
        await desktop.connect()
        await stranger.connect()
        ws = await live_server.dashboard(http)
        await _subscribe(ws, ids["class_id"])
        await wait_for(lambda: desktop.mode == "grid", message="agent watched")
        assert stranger.mode == "off" and not desktop.ws.closed
        assert desktop.watches[-1]["tabs"] == "active"  # not merged: the title still counts
        await stranger.send(_tabs("not this tile"))
        await desktop.send(_tabs("Word – verslag"))
        [shown] = await _tabs_seen(ws, 1)
        assert shown["tabs"][0]["title"] == "Word – verslag"
        assert live_server.hub.merged(sid) is None
    finally:
        await desktop.close()
        await stranger.close()


async def test_second_extension_replaces_the_first_companion_and_agents_still_replace(
    live_server: LiveServer,
) -> None:
    await live_server.add_class("7B", [ANNA])
    one = DeviceAgent(live_server, ANNA[0], DEVICE, "tabs")
    two = DeviceAgent(live_server, ANNA[0], DEVICE, "tabs")
    a = DeviceAgent(live_server, ANNA[0], DEVICE, None)
    b = DeviceAgent(live_server, ANNA[0], "other-pc", None)
    try:
        await one.connect()
        await two.connect()
        await wait_for(lambda: one.ws.closed, message="first companion closed")
        assert one.ws.close_code == p.CloseCode.REPLACED
        await a.connect()
        await b.connect()  # a full connection still replaces the older one (as before)
        await wait_for(lambda: a.ws.closed, message="older agent closed")
        assert a.ws.close_code == p.CloseCode.REPLACED and not two.ws.closed
    finally:
        for agent in (one, two, a, b):
            await agent.close()


@pytest.mark.parametrize("role", ["screen", "", 3])
async def test_unknown_role_is_refused(live_server: LiveServer, role: Any) -> None:
    await live_server.add_class("7B", [ANNA])
    agent = DeviceAgent(live_server, ANNA[0], DEVICE, role)
    try:
        first = await agent.connect()
        assert first["type"] == "error" and first["error"]["code"] == "invalid_format"
    finally:
        await agent.close()
