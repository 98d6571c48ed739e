"""Closes agents that stopped talking: silent for three heartbeat periods means offline.

One sweep over the hub's agents a few times per period, instead of a timer armed and
cancelled for every message an agent sends (with ten thousand agents, that timer churn was
a measurable share of the relay's time).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.keys import HUB, SETTINGS
from klasblik.server.live.hub import AgentConn, Hub
from klasblik.server.tasks import TaskOwner, cancel_and_wait

__all__ = ["silence_ctx", "sweep"]

log = logging.getLogger(__name__)


def sweep(hub: Hub, silence_s: float) -> list[AgentConn]:
    """The agents last heard from more than ``silence_s`` ago."""
    limit = time.monotonic() - silence_s
    aside = (c for conns in hub.contested.values() for c in conns)
    return [conn for conn in (*hub.agents.values(), *aside) if conn.heard < limit]


async def _close(conn: AgentConn, silence_s: float) -> None:
    log.info("agent of student %s silent for %ss; closing", conn.student_id, silence_s)
    try:
        async with asyncio.timeout(5):
            await conn.ws.close(code=p.CloseCode.GOING_AWAY, message=b"no heartbeat")
    except (TimeoutError, ConnectionError, RuntimeError):
        pass


async def silence_ctx(app: web.Application) -> AsyncIterator[None]:

    silence_s = 3 * app[SETTINGS].heartbeat_s

    closing: weakref.WeakSet[AgentConn] = weakref.WeakSet()
    closers = TaskOwner("silence sweep")

    async def run() -> None:
        while True:
            await asyncio.sleep(max(0.05, silence_s / 6))
            for conn in sweep(app[HUB], silence_s):
                if conn not in closing:
                    closing.add(conn)
                    closers.spawn(_close(conn, silence_s), f"close silent agent {conn.student_id}")

    task = asyncio.create_task(run(), name="silence sweep")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await closers.close()
