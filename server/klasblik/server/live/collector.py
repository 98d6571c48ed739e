"""Keeps Python's garbage collector from pausing the relay.

With ten thousand agents, a process holds a million or more container objects for its
connections (sockets, protocol state, tasks, queues). A full collection walks all of them:
0.3–0.5 s during which no frame moves. Those objects live as long as their connections;
walking them again and again finds nothing. So they are moved out of the collector's way
with ``gc.freeze()``:

- four times a second while agents connect (the storm of a school starting its day), so the
  storm never piles up into one long full collection;
- every ``FREEZE_EVERY_S`` otherwise, so that what survives the young collections stays a
  small set to walk.

Frozen objects are never collected, so connections that ended leave their cyclic garbage
behind until the frozen set is collected again: ``gc.unfreeze()`` and one full collection,
done only while no dashboard is connected (then a pause delays nobody's picture), at most
every ``CLEANUP_EVERY_S``; or, if dashboards stay connected all that time, once
``CLEANUP_GROWTH`` times the connected agents have connected since the last clean-up.

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

#: How often the policy looks (seconds).
TICK_S = 0.25
#: Freeze at least this often (seconds), connects or not: what survives the young
#: collections in between stays a small set for the collector to walk.
FREEZE_EVERY_S = 5.0
#: A full clean-up of the frozen set at most this often (seconds), while nobody watches.
CLEANUP_EVERY_S = 900.0
#: ... or, with dashboards connected throughout, once this many times the connected
#: agents have connected since the last clean-up (a whole school reconnecting twice).
CLEANUP_GROWTH = 2.0


@dataclass(slots=True)
class CollectorPolicy:
    """What to do on each tick: ``"freeze"``, ``"cleanup"`` or None. Pure, for tests.

    Freezes on every tick with new connections (a storm of connects never piles up into
    one long full collection) and every ``FREEZE_EVERY_S`` otherwise; cleans up as the
    module text says. It never counts the frozen set (``gc.get_freeze_count`` walks it:
    14 ms for 1.5 million objects), only the connections made."""

    frozen_connects: int = 0
    cleanup_connects: int = 0
    last_freeze: float = 0.0
    last_cleanup: float = 0.0

    def decide(self, now: float, connects: int, agents: int, viewers: int) -> str | None:
        since_cleanup = connects - self.cleanup_connects
        due = now - self.last_cleanup >= CLEANUP_EVERY_S
        if (
            due
            and since_cleanup > 0
            and (viewers == 0 or since_cleanup >= CLEANUP_GROWTH * max(agents, 1))
        ):
            self.last_cleanup = self.last_freeze = now
            self.frozen_connects = self.cleanup_connects = connects
            return "cleanup"
        if connects != self.frozen_connects or now - self.last_freeze >= FREEZE_EVERY_S:
            self.last_freeze = now
            self.frozen_connects = connects
            return "freeze"
        return None


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
    policy = policy or CollectorPolicy(last_cleanup=clock(), last_freeze=clock())
    while True:
        await asyncio.sleep(TICK_S)
        action = policy.decide(clock(), connects(), agents(), viewers())
        if action == "freeze":
            freeze()
        elif action == "cleanup":
            started = time.perf_counter()
            cleanup()
            log.info(
                "collector: the frozen objects collected (%.0f ms, %d dashboards connected)",
                1000 * (time.perf_counter() - started),
                viewers(),
            )


async def collector_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
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
