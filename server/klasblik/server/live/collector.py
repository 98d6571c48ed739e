"""Keeps Python's garbage collector from pausing the relay.

With ten thousand agents, a process holds a million or more container objects for its
connections (sockets, protocol state, tasks, queues). A full collection walks all of them:
0.3–0.5 s during which no frame moves. Those objects live as long as their connections;
walking them again and again finds nothing. So they are moved out of the collector's way
with ``gc.freeze()``:

- after a burst of connects (the storm of a school starting its day), once it settles;
- every ``FREEZE_EVERY_S`` otherwise, so that what survives the young collections never
  piles up into a long full collection.

Frozen objects are never collected, so connections that ended leave their cyclic garbage
behind until the frozen set is collected again: ``gc.unfreeze()`` and one full collection,
done only while no dashboard is connected (then a pause delays nobody's picture), at most
every ``CLEANUP_EVERY_S``; or, if dashboards stay connected all that time, once the frozen
set has grown past ``CLEANUP_GROWTH`` times its size after the last clean-up.

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
TICK_S = 1.0
#: Freeze at least this often while anything new survived (seconds).
FREEZE_EVERY_S = 30.0
#: A full clean-up of the frozen set at most this often (seconds), while nobody watches.
CLEANUP_EVERY_S = 900.0
#: ... or, with dashboards connected throughout, once the frozen set grew this much.
CLEANUP_GROWTH = 2.0


@dataclass(slots=True)
class CollectorPolicy:
    """What to do on each tick: ``"freeze"``, ``"cleanup"`` or None. Pure, for tests."""

    last_connects: int = 0
    frozen_connects: int = 0
    last_freeze: float = 0.0
    last_cleanup: float = 0.0
    frozen_after_cleanup: int = 0

    def decide(self, now: float, connects: int, viewers: int, frozen: int) -> str | None:
        burst_over = connects == self.last_connects and connects != self.frozen_connects
        self.last_connects = connects
        if (
            viewers == 0
            and now - self.last_cleanup >= CLEANUP_EVERY_S
            and frozen > self.frozen_after_cleanup
        ) or (
            self.frozen_after_cleanup
            and frozen > CLEANUP_GROWTH * self.frozen_after_cleanup
            and now - self.last_cleanup >= CLEANUP_EVERY_S
        ):
            self.last_cleanup = self.last_freeze = now
            self.frozen_connects = connects
            return "cleanup"
        if burst_over or now - self.last_freeze >= FREEZE_EVERY_S:
            self.last_freeze = now
            self.frozen_connects = connects
            return "freeze"
        return None

    def cleaned(self, frozen: int) -> None:
        self.frozen_after_cleanup = frozen


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
    viewers: Callable[[], int],
    policy: CollectorPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    policy = policy or CollectorPolicy(last_cleanup=clock(), last_freeze=clock())
    while True:
        await asyncio.sleep(TICK_S)
        action = policy.decide(clock(), connects(), viewers(), gc.get_freeze_count())
        if action == "freeze":
            freeze()
        elif action == "cleanup":
            started = time.perf_counter()
            cleanup()
            policy.cleaned(gc.get_freeze_count())
            log.info(
                "collector: frozen objects collected with nobody watching (%.0f ms)",
                1000 * (time.perf_counter() - started),
            )


async def collector_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    freeze()  # what start-up made (modules, settings, the app) lives as long as the process
    task = asyncio.create_task(
        run(lambda: hub.connects, lambda: len(hub.viewers)), name="collector"
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)
