"""A stand-in for the Klasblik server's agent endpoint, for the agent's connection tests.

Not the real server: a minimal aiohttp WebSocket endpoint that records what an agent
sends (checked with ``klasblik.protocol``) and lets a test script what the server says.
The end-to-end test against the real server is tests/agent/test_agent_live_server.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from klasblik.protocol import FrameHeader, decode_frame, decode_message, encode_message
from tests.support.timing import timeout, wait_for

__all__ = ["WAIT_S", "AgentConn", "StandInServer", "standin_server"]

#: Upper bound for "soon" in these tests: generous, since two cores are shared.
WAIT_S = timeout(10.0)


@dataclass
class AgentConn:
    """One agent connection as the stand-in saw it."""

    ws: web.WebSocketResponse
    messages: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[FrameHeader, bytes, float]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_str(encode_message(msg, "server_agent"))

    async def welcome(self, heartbeat_s: int = 20, max_frame_bytes: int = 1024 * 1024) -> None:
        await self.send(
            {
                "type": "welcome",
                "protocol": 1,
                "session": "s1",
                "display_name": "Anna B.",
                "heartbeat_s": heartbeat_s,
                "max_frame_bytes": max_frame_bytes,
            }
        )

    async def watch(
        self,
        mode: str,
        width: int = 400,
        height: int = 225,
        interval_ms: int = 100,
        quality: int = 55,
        encoding: str = "jpeg",
        tabs: str = "none",
    ) -> None:
        await self.send(
            {
                "type": "watch",
                "mode": mode,
                "width": width,
                "height": height,
                "interval_ms": interval_ms,
                "quality": quality,
                "encoding": encoding,
                "tabs": tabs,
                "viewers": [] if mode == "off" else ["M. de Vries"],
            }
        )

    async def wait_for(self, cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Wait until ``cond()`` holds; fail the test after ``timeout`` (scaled) seconds."""
        await wait_for(cond, timeout, lambda: f"the condition; the agent sent {self.messages!r}")


class StandInServer:
    """Accepts agent connections on 127.0.0.1 and queues them for the test."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[AgentConn] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        conn = AgentConn(ws)
        await self.connections.put(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.messages.append(decode_message(msg.data, "agent"))
                elif msg.type == WSMsgType.BINARY:
                    header = decode_frame(msg.data)
                    conn.frames.append((header, msg.data[24:], time.monotonic()))
        finally:
            conn.closed.set()
        return ws

    async def next_connection(self, timeout: float = WAIT_S) -> AgentConn:
        return await asyncio.wait_for(self.connections.get(), timeout=timeout)


@asynccontextmanager
async def standin_server() -> AsyncIterator[StandInServer]:
    """Run the stand-in on a free port of 127.0.0.1 for the block."""
    server = StandInServer()
    app = web.Application()
    app.router.add_get("/ws/agent", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"ws://127.0.0.1:{port}/ws/agent"
    try:
        yield server
    finally:
        await runner.cleanup()
