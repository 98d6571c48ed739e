"""A bounded outgoing queue per WebSocket, drained by one writer task.

Senders never await a peer: :meth:`Outbox.put` returns at once. When a peer cannot keep
up and its queue is full, the outbox gives up on it (``on_overflow``) instead of letting
it slow anybody else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["Outbox"]

log = logging.getLogger(__name__)

_CLOSE = object()


class Outbox:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        self.overflowed = False
        self.sent = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    def put(self, message: str | bytes) -> bool:
        """Queue a message; False (and the overflow handler once) when the peer is too slow."""
        if self.overflowed or self._ws.closed:
            return False
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        ws = self._ws
        try:
            while True:
                msg = await self._queue.get()
                if msg is _CLOSE:
                    return
                if ws.closed:
                    return
                if isinstance(msg, bytes):
                    await ws.send_bytes(msg)
                else:
                    await ws.send_str(msg)
                self.sent += 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("outbox writer stopped: %s", exc)

    async def close(self) -> None:
        """Stop the writer; what is still queued is dropped."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
