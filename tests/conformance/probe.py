"""A probe server for agent conformance: it plays the server's side of the agent
conversation (docs/protocol.md) under the test's control and records what the agent sends.

It is not the Klasblik server: it holds no roster and makes no decisions; the test sends
``welcome`` and ``watch`` itself. Every message is checked with klasblik.protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from klasblik import protocol
from tests.support.timing import timeout, wait_for

__all__ = ["WATCH_OFF", "ProbeConnection", "ProbeServer", "Received", "watch_message"]

WATCH_OFF: dict[str, Any] = {
    "type": "watch",
    "mode": "off",
    "width": 0,
    "height": 0,
    "interval_ms": 0,
    "quality": 1,
    "encoding": "jpeg",
    "tabs": "none",
    "viewers": [],
}


def watch_message(mode: str, **fields: Any) -> dict[str, Any]:
    """A watch message with sensible grid defaults; ``fields`` override them."""
    msg = {
        "type": "watch",
        "mode": mode,
        "width": 400,
        "height": 225,
        "interval_ms": 1000,
        "quality": 60,
        "encoding": "jpeg",
        "tabs": "none",
        "viewers": ["T. Eacher"],
    }
    msg.update(fields)
    protocol.validate_message(msg, "server_agent")
    return msg


@dataclass
class Received:
    """One message from the agent: decoded JSON, or a frame header and its image."""

    at: float
    message: dict[str, Any] | None = None
    header: protocol.FrameHeader | None = None
    image: bytes = b""
    error: str | None = None  # a protocol error the message caused


@dataclass
class ProbeConnection:
    """One agent connection, as the probe sees it."""

    ws: ServerConnection
    received: list[Received] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def hello(self) -> dict[str, Any] | None:
        first = self.received[0] if self.received else None
        return first.message if first else None

    def messages(self, msg_type: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [
            r.message
            for r in self.received
            if r.message is not None and r.message["type"] == msg_type and r.at >= since
        ]

    def frames(self, since: float = 0.0) -> list[Received]:
        return [r for r in self.received if r.header is not None and r.at >= since]

    def errors(self) -> list[str]:
        return [r.error for r in self.received if r.error]

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(protocol.encode_message(msg, "server_agent"))

    async def welcome(self, heartbeat_s: int = 20, max_frame_bytes: int = 1 << 20) -> None:
        await self.send(
            {
                "type": "welcome",
                "protocol": 1,
                "session": "probe",
                "display_name": "Probe S.",
                "heartbeat_s": heartbeat_s,
                "max_frame_bytes": max_frame_bytes,
            }
        )

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is truthy and return it; fail naming ``what`` and what
        arrived so far after ``timeout`` seconds (scaled: pass ``timeout(...)``)."""
        return await wait_for(
            predicate,
            timeout,
            lambda: f"{what}; received {[self._describe(r) for r in self.received][-12:]}",
        )

    @staticmethod
    def _describe(r: Received) -> str:
        if r.message is not None:
            return r.message["type"]
        if r.header is not None:
            return f"frame {r.header.width}x{r.header.height}"
        return f"error {r.error}"

    def record(self, data: str | bytes) -> None:
        now = time.monotonic()
        try:
            if isinstance(data, str):
                self.received.append(Received(now, message=protocol.decode_message(data, "agent")))
            else:
                header = protocol.decode_frame(data)
                self.received.append(
                    Received(now, header=header, image=bytes(data[protocol.FRAME_HEADER_SIZE :]))
                )
        except protocol.ProtocolError as exc:
            self.received.append(Received(now, error=f"{exc.code}: {exc.message}"))


class ProbeServer:
    """Listens on 127.0.0.1 (port 0 by default) at /ws/agent; keeps every connection."""

    def __init__(self) -> None:
        self.connections: list[ProbeConnection] = []
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    async def start(self, port: int = 0) -> None:
        self._server = await serve(self._handle, "127.0.0.1", port, max_size=4 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = ProbeConnection(ws)
        self.connections.append(conn)
        try:
            async for data in ws:
                conn.record(data)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    async def next_connection(
        self, timeout: float = timeout(20), after: int = 0
    ) -> ProbeConnection:
        """The first connection with index >= ``after``, waiting for it if needed."""
        await wait_for(
            lambda: len(self.connections) > after, timeout, f"an agent to connect to {self.url}"
        )
        return self.connections[after]
