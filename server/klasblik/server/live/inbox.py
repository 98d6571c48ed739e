"""An agent socket's incoming messages, handed over as the parser completes them.

aiohttp puts every message it parses in a queue, and a task waiting in ``ws.receive()``
takes it out: per message a future is made and resolved, the task is woken through the
event loop, three coroutines resume and three are made again for the next wait. For a
relay that is most of what a frame costs beyond reading and writing it, and every one of
those objects is alive when the collector's clock comes (``collector.py``): 8 container
objects per agent that sent something in the last quarter second, walked for nothing.

:class:`Inbox` is that queue with a handler: a frame or a text message goes to the
handler at once, inside the parser's own call, unless something is queued before it (a
ping, a close), which keeps the order. Everything else (ping, pong, close, errors, the
end of the stream) goes into the queue as before, where ``ws.receive()`` answers pings
and sees the close. The handler must not raise: an exception would end up in the parser,
which fails the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from aiohttp import WSMessage, WSMsgType
from aiohttp._websocket.models import WSMessageTextBytes
from aiohttp._websocket.reader import WebSocketDataQueue

__all__ = ["Inbox"]

_BINARY = WSMsgType.BINARY
_TEXT = WSMsgType.TEXT


class Inbox(WebSocketDataQueue):
    """A WebSocket message queue whose frames and text messages go to ``handler``."""

    handler: Callable[[WSMessage], None] | None = None

    def feed_data(self, data: WSMessage | WSMessageTextBytes, size: int) -> None:
        handler = self.handler
        kind = data[0]
        if handler is not None and (kind is _BINARY or kind is _TEXT) and not self._buffer:
            handler(cast(WSMessage, data))  # text decoded: the agent socket's setting
        else:
            super().feed_data(data, size)
