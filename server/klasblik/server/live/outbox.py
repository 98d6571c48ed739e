"""A bounded outgoing queue per WebSocket, drained by one writer task.

Senders never await a peer: :meth:`Outbox.put` returns at once. When a peer cannot keep
up, the outbox gives up on it (``on_overflow``, once) instead of letting it slow anybody
else down: when its queue holds ``maxsize`` messages or ``max_bytes`` bytes, or when one
message has taken ``stall_s`` to be written (a peer that never reads: its send buffer
never drains, and nothing else would notice).

State that only matters in its latest version (a student's status, a tab list) goes
through :meth:`Outbox.put_latest`: one slot per key, overwritten, sent after what is
queued. A burst of a thousand status changes costs a viewer one slot per student, not a
thousand places in its queue (a reconnect storm never cuts off the teacher watching it).

A message put while nothing is queued or being written, and whose bytes the peer's
transport can take without reaching its high-water mark, is written at once by the
caller (an "eager start", as Python 3.12 calls it for tasks): aiohttp's send then returns
without waiting, and a relayed frame costs no wake-up of the writer task (one turn of the
event loop per frame per viewer, 10-15 µs here). Should the send wait after all, the
rest of it runs as a task that the writer waits for, so the order of messages holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    """A peer's outgoing queue and its writer.

    ``lazy``: the writer task exists only while there is something to write (an agent's
    outbox carries a watch command now and then: ten thousand idle agents then hold no
    task, no waiting future and no wake-up event). Otherwise one writer task lives from
    :meth:`start` to :meth:`close` (a viewer's, which carries a steady stream of frames).

    A stalled write is noticed by one timer per outbox, armed when a write starts and
    re-armed only while writes go on, never by a timeout around every message.
    """

    __slots__ = (
        "_bytes",
        "_frame",
        "_high_water",
        "_inflight",
        "_latest",
        "_lazy",
        "_queue",
        "_sending_since",
        "_started",
        "_task",
        "_transport",
        "_wake",
        "_watchdog",
        "_ws",
        "max_bytes",
        "maxsize",
        "on_overflow",
        "overflowed",
        "sent",
        "stall_s",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
        max_bytes: int | None = None,
        stall_s: float | None = None,
        *,
        lazy: bool = False,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self._ws = ws
        #: the peer's transport, for writing at once (None: always through the writer)
        self._transport: asyncio.WriteTransport | None = None
        self._high_water = 0
        limits = getattr(transport, "get_write_buffer_limits", None)
        if limits is not None and hasattr(transport, "get_write_buffer_size"):
            self._transport = transport  # type: ignore[assignment]
            self._high_water = limits()[1]
        #: aiohttp's own synchronous frame writer (header and payload in one transport
        #: write), for a message written at once: the two coroutines of ``send_bytes``
        #: that wrap it only add a drain, which a write at once never needs
        self._frame: Callable[[bytes, int, int], None] | None = None
        writer = getattr(ws, "_writer", None)
        frame = getattr(writer, "_write_websocket_frame", None)
        if self._transport is not None and frame is not None and not writer.compress:  # type: ignore[union-attr]
            self._frame = frame
        #: the rest of a write started at once that had to wait
        self._inflight: asyncio.Task[None] | None = None
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.stall_s = stall_s
        self._queue: deque[str | bytes] = deque()
        self._latest: dict[Hashable, str | bytes] = {}
        self._bytes = 0
        self._lazy = lazy
        self._wake: asyncio.Event | None = None if lazy else asyncio.Event()
        self.on_overflow = on_overflow
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._sending_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.overflowed = False
        self.sent = 0

    def start(self) -> None:
        self._started = True
        if not self._lazy:
            self._task = asyncio.create_task(self._run(), name="outbox")
        elif self._queue or self._latest:
            self._kick()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()
        elif self._started and self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox")

    def put(self, message: str | bytes) -> bool:
        """Queue a message; False (and the overflow handler once) when the peer is too slow."""
        if self.overflowed or self._ws.closed:
            return False
        size = len(message)
        if len(self._queue) >= self.maxsize or (
            self.max_bytes is not None and self._bytes + size > self.max_bytes
        ):
            self._overflow()
            return False
        if self._write_at_once(message):
            return True
        self._queue.append(message)
        self._bytes += size
        self._kick()
        return True

    def _write_at_once(self, message: str | bytes) -> bool:
        """Write ``message`` now when that keeps the order and cannot wait on the peer;
        False: it goes through the queue."""
        transport = self._transport
        if (
            transport is None
            or self._queue
            or self._latest
            or self._sending_since is not None
            or self._inflight is not None
            or not self._started
            or transport.is_closing()
            or transport.get_write_buffer_size() + len(message) > self._high_water
        ):
            return False
        ws = self._ws
        frame = self._frame
        if frame is not None:
            if ws._writer._closing:  # type: ignore[union-attr]  # a close frame went out
                return True  # the connection is going: nothing more is sent
            try:
                if isinstance(message, bytes):
                    frame(message, WSMsgType.BINARY, 0)
                else:
                    frame(message.encode(), WSMsgType.TEXT, 0)
            except ConnectionError as exc:  # the connection is going
                log.debug("outbox write stopped: %s", exc)
                return True
            self.sent += 1
            return True
        send = ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message)
        try:
            waits_on = send.send(None)
        except StopIteration:  # written: the usual case
            self.sent += 1
            return True
        except (ConnectionError, RuntimeError) as exc:  # the connection is going
            log.debug("outbox write stopped: %s", exc)
            return True
        # it waits after all: the rest is a task, and the writer waits for it
        self._inflight = asyncio.get_running_loop().create_task(
            _finish(send, waits_on), name="outbox write"
        )
        self._inflight.add_done_callback(self._finished)
        self._arm_watchdog()
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None
            self._sending_since = None
        if not task.cancelled() and task.exception() is None:
            self.sent += 1
        elif not task.cancelled():
            log.debug("outbox write stopped: %s", task.exception())
        if self._queue or self._latest:
            self._kick()

    def _arm_watchdog(self) -> None:
        if self.stall_s is None:
            return
        loop = asyncio.get_running_loop()
        self._sending_since = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._sending_since + self.stall_s, self._check_stall)

    def put_latest(self, key: Hashable, message: str | bytes) -> bool:
        """Make ``message`` the next one sent for ``key``, replacing any not sent yet."""
        if self.overflowed or self._ws.closed:
            return False
        old = self._latest.get(key)
        size = len(message) - (len(old) if old is not None else 0)
        if self.max_bytes is not None and self._bytes + size > self.max_bytes:
            self._overflow()
            return False
        self._latest[key] = message
        self._bytes += size
        self._kick()
        return True

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self._queue.clear()
        self._latest.clear()
        self._bytes = 0
        if self.on_overflow is not None:
            self.on_overflow()

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._latest)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def _next(self) -> str | bytes | None:
        if self._queue:
            return self._queue.popleft()
        if self._latest:
            key = next(iter(self._latest))
            return self._latest.pop(key)
        return None

    def _check_stall(self) -> None:
        """The watchdog: give up on a peer whose current write has taken ``stall_s``."""
        self._watchdog = None
        since = self._sending_since
        if since is None or self.stall_s is None:
            return  # idle now: the next write arms it again
        loop = asyncio.get_running_loop()
        if loop.time() - since < self.stall_s:
            self._watchdog = loop.call_at(since + self.stall_s, self._check_stall)
            return
        log.info("outbox: one message took over %g s; giving up", self.stall_s)
        self._overflow()
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()

    async def _run(self) -> None:
        ws = self._ws
        try:
            while True:
                msg = self._next()
                if msg is None:
                    if self._wake is None:  # lazy: the next put starts a new writer
                        self._task = None
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                inflight = self._inflight
                if inflight is not None:  # a write started at once is not done: first that
                    with contextlib.suppress(Exception):
                        await asyncio.shield(inflight)
                    if self._inflight is inflight:  # its done callback has not run yet
                        self._inflight = None
                self._bytes -= len(msg)
                if ws.closed or self.overflowed:
                    return
                self._arm_watchdog()
                try:
                    if isinstance(msg, bytes):
                        await ws.send_bytes(msg)
                    else:
                        await ws.send_str(msg)
                finally:
                    self._sending_since = None
                self.sent += 1
        except (ConnectionError, RuntimeError) as exc:
            log.debug("outbox writer stopped: %s", exc)

    async def close(self) -> None:
        """Stop the writer; what is still queued is dropped."""
        self._queue.clear()
        self._latest.clear()
        self._bytes = 0
        self._started = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        inflight, self._inflight = self._inflight, None
        task, self._task = self._task, None
        for t in (inflight, task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def _finish(send: Coroutine[Any, Any, None], waits_on: Any) -> None:
    """Go on with a coroutine that was started by hand and is waiting for ``waits_on``
    (a future, or None for a bare yield), as the task running it would: wait until that is
    done, however it ended (the coroutine reads the outcome itself), then resume it."""
    try:
        while True:
            if waits_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([waits_on])
            waits_on = send.send(None)
    except StopIteration:
        return
    except BaseException:
        send.close()
        raise
