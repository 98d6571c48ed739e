"""What an agent socket may cost before it has said who it is.

- **Admission** (:class:`HelloGate`): sockets still in their hello phase are counted per
  address and in total; past either limit a new one is refused before the WebSocket
  upgrade, with a plain 503 (``busy``) and ``Retry-After``, at the cost of one counter.
- **An absolute deadline** (:func:`receive_hello`): the hello must be complete within
  ``auth_timeout_s`` of the upgrade, whatever comes before it: pings, pongs and the
  fragments of a message that is never finished do not move the deadline.
- **A small buffer** (:func:`hello_socket`, :func:`allow_frames`): until the hello is
  accepted the socket takes messages of at most ``MAX_HELLO_BYTES``; only an agent that
  was welcomed may send frames of ``2 * max_frame_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from aiohttp import WSMessage, web
from aiohttp.helpers import DEFAULT_CHUNK_SIZE  # what aiohttp's own queue is made with

from klasblik import protocol as p
from klasblik.server.errors import error_body
from klasblik.server.live.inbox import Inbox

__all__ = ["HelloGate", "allow_frames", "hello_socket", "receive_hello"]

log = logging.getLogger(__name__)


class HelloGate:
    """Counts the sockets in their hello phase, per address and in total."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_ip: Counter[str] = Counter()
        self.waiting = 0
        self.refused = 0

    def admit(self, ip: str) -> bool:
        """Count one more socket from ``ip``; False (nothing counted) past a limit."""
        if self.waiting >= self.total or self._by_ip[ip] >= self.per_address:
            self.refused += 1
            return False
        self._by_ip[ip] += 1
        self.waiting += 1
        return True

    def release(self, ip: str) -> None:
        """The socket from ``ip`` left its hello phase (welcomed, refused or gone)."""
        self.waiting -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]

    def busy_response(self) -> web.Response:
        return web.json_response(
            error_body(p.ErrorCode.BUSY, "too many connections are waiting; try again later"),
            status=503,
            headers={"Retry-After": "5"},
        )


def hello_socket() -> web.WebSocketResponse:
    """The agent socket before its hello: messages up to ``MAX_HELLO_BYTES``, no
    heartbeat of its own (the agent's heartbeats count), no compression."""
    return web.WebSocketResponse(
        max_msg_size=p.MAX_HELLO_BYTES, autoping=True, heartbeat=None, compress=False
    )


async def receive_hello(ws: web.WebSocketResponse, deadline_s: float) -> WSMessage:
    """The first message, within ``deadline_s`` of now in all; TimeoutError after it.

    ``ws.receive(timeout=…)`` starts its timer again after every ping it answers, so a
    client pinging every few seconds would be waited on forever; one deadline around the
    whole wait is not moved by anything the client sends."""
    async with asyncio.timeout(deadline_s):
        return await ws.receive()


def allow_frames(
    ws: web.WebSocketResponse,
    request: web.Request,
    max_bytes: int,
    handler: Callable[[WSMessage], None] | None = None,
) -> Inbox | None:
    """Let a welcomed agent's socket take messages of up to ``max_bytes``; with
    ``handler``, its frames and text messages go to it as they are parsed (an
    :class:`~klasblik.server.live.inbox.Inbox`, returned; ``ws.receive()`` then sees only
    what the protocol itself handles: pings, the close, errors, the end).

    aiohttp fixes the limit when the socket is opened, so the parser is replaced by one
    with the larger limit; between a hello and its welcome an agent sends nothing, so no
    message is part-way through the old one. (``tests/hardening/test_hello_phase.py``
    shows a full-size frame relayed after the hello, and a larger hello refused.)"""
    from aiohttp._websocket.reader import WebSocketReader

    old = ws._parser
    queue = ws._reader
    if old is None or queue is None:
        return None
    protocol = request.protocol
    inbox: Inbox | None = None
    if handler is not None and hasattr(queue, "_buffer"):  # else ws.receive() gets them all
        inbox = Inbox(protocol, DEFAULT_CHUNK_SIZE, loop=asyncio.get_running_loop())
        for message, size in queue._buffer:  # a ping, say: kept, in its order
            inbox.feed_data(message, size)
        if (exc := queue.exception()) is not None:
            inbox.set_exception(exc)
        elif queue.is_eof():
            inbox.feed_eof()
        inbox.handler = handler
        ws._reader = queue = inbox
    parser = WebSocketReader(
        queue,
        max_bytes,
        compress=False,
        decode_text=True,
    )
    protocol._payload_parser = parser
    ws._parser = parser
    return inbox
