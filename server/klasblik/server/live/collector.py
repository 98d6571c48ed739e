"""Keeps Python's garbage collector from pausing the relay.

With ten thousand agents, a process holds a million or more container objects for its
connections (sockets, protocol state, tasks, queues). A full collection walks all of them:
0.3–0.5 s during which no frame moves. Those objects live as long as their connections;
walking them again and again finds nothing.

Python's own trigger does not help either. A young collection comes when 700 more
container objects were made than freed; a relay makes a few for every message it waits for
(the receive call, its future, the message) and frees those of the message before, old by
then: the two balance, the count hardly moves, and the young generation grows to tens of
thousands of live objects before one collection walks them all (20–60 ms at 10,000 agents).

So while the server runs, Python's automatic collector is off and this module collects on
a clock: every ``TICK_S`` the young generations are collected (what the last quarter of a
second made and still holds) and what survives is moved out of the collector's way with
``gc.freeze()``. Nothing is walked twice, and a pause is as long as a quarter second's
worth of new objects. What an agent's message leaves alive is small, too: frames and text
are handed to the endpoint as they are parsed (``inbox.py``), so no agent holds a fresh
receive call, future and message at every tick (those were 8 objects per agent that sent
something, 10,000-20,000 at the target load, 5-13 ms a tick).

Frozen objects are still freed when nothing refers to them; only garbage in reference
cycles that outlived a tick waits (connections that ended, mostly) until the frozen set is
collected again: ``gc.unfreeze()`` and one full collection, done only while no dashboard is
connected (then a pause delays nobody's picture), at most every ``CLEANUP_EVERY_S``; or, if
dashboards stay connected all that time, once ``CLEANUP_GROWTH`` times the connected agents
have connected since the last clean-up.

bench/server_load.py measures the pauses (a ``gc.callbacks`` hook, ``bench/gc_probe.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from klasblik.server.keys import HUB
from klasblik.server.tasks import cancel_and_wait

__all__ = ["CollectorPolicy", "collector_ctx"]

log = logging.getLogger(__name__)

#: How often the young generations are collected and the survivors frozen (seconds).
TICK_S = 0.25
#: A full clean-up of the frozen set at most this often (seconds), while nobody watches.
CLEANUP_EVERY_S = 900.0
#: ... or, with dashboards connected throughout, once this many times the connected
#: agents have connected since the last clean-up (a whole school reconnecting twice).
CLEANUP_GROWTH = 2.0


@dataclass(slots=True)
class CollectorPolicy:
    """What to do on each tick: ``"cleanup"`` (see the module text) or ``"freeze"``. Pure,
    for tests. It never counts the frozen set (``gc.get_freeze_count`` walks it: 14 ms for
    1.5 million objects), only the connections made."""

    cleanup_connects: int = 0
    last_cleanup: float = 0.0

    def decide(self, now: float, connects: int, agents: int, viewers: int) -> str:
        since_cleanup = connects - self.cleanup_connects
        due = now - self.last_cleanup >= CLEANUP_EVERY_S
        if (
            due
            and since_cleanup > 0
            and (viewers == 0 or since_cleanup >= CLEANUP_GROWTH * max(agents, 1))
        ):
            self.last_cleanup = now
            self.cleanup_connects = connects
            return "cleanup"
        return "freeze"


def freeze() -> None:
    """Collect the young generations (garbage is not worth freezing), then freeze."""
    gc.collect(1)
    gc.freeze()


def cleanup() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def run(
    connects: Callable[[], int],
    agents: Callable[[], int],
    viewers: Callable[[], int],
    policy: CollectorPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    policy = policy or CollectorPolicy(last_cleanup=clock())
    while True:
        await asyncio.sleep(TICK_S)
        if policy.decide(clock(), connects(), agents(), viewers()) == "freeze":
            freeze()
        else:
            started = time.perf_counter()
            cleanup()
            log.info(
                "collector: the frozen objects collected (%.0f ms, %d dashboards connected)",
                1000 * (time.perf_counter() - started),
                viewers(),
            )


async def collector_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    automatic = gc.isenabled()
    gc.disable()  # collections on this module's clock instead (see the module text)
    freeze()  # what start-up made (modules, settings, the app) lives as long as the process
    task = asyncio.create_task(
        run(lambda: hub.connects, lambda: len(hub.agents), lambda: len(hub.viewers)),
        name="collector",
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)
        gc.unfreeze()  # the process goes on (tests, an embedding program): collect as usual
        if automatic:
            gc.enable()
