"""Keeps the latest thumbnail and tab list of each student in the blob store.

Writes are rate-limited per blob (``store_interval_s``) with a trailing write, so the last
state always lands without writing every frame. A failing store never blocks the caller:
the write is dropped with a log line and the store is reported degraded until a write
succeeds again.

One flusher task serves every blob: it writes, in one batch, the blobs whose interval has
passed (a store with ``put_many`` gets the whole batch in one call; others get a bounded
number of concurrent ``put`` calls). With thousands of students in view, a task and a
thread hand-off per blob would cost the live relay more than the writes themselves.

The relay offers every whole grid picture (several a second per class), so an offer is a
dictionary store and, for a name not waiting yet, one push on a heap of due times: the
flusher never scans every pending name, and the picture is copied out of the frame only
when it is written. A blob that goes with another (where a thumbnail was taken) is offered
``beside`` it: written in the same batch as its companion, but only when its content
changed or its last write is ``BESIDE_REFRESH_S`` old (so that it never ages out before
the companion it describes).

What a stored thumbnail and tab list are kept for is the last state of a device that went
offline: when it does, :meth:`flush` writes what is pending for it at once, whatever its
interval, so the interval only bounds how old the stored state may be while the device is
online (or after a crash of the server).

**Each blob on its own beat.** A class comes into view at once: its thirty students' first
pictures are written together, and with one interval for all they would be written together
again every interval, the whole school's in one burst (3,000 writes, about 0.45 s of the
writer thread's CPU at once) instead of 100 a second. So the first write of a name (or the
first after it sat unwritten for more than an interval: a device that was away, a class not
in view) is written at once and its next one waits a random extra part of an interval: the
interval stays the least time between two writes, the second write comes within two
intervals of the first, and from then on the names of a class are written spread over the
interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time

from klasblik.server.storage.blobs.base import BlobStore, BlobStoreError
from klasblik.server.tasks import cancel_and_wait

__all__ = ["BATCH_GAP_S", "BESIDE_REFRESH_S", "LatestWriter"]

log = logging.getLogger(__name__)

_CONCURRENT_PUTS = 16

#: Least time between two batches: with thousands of students in view their due times
#: are spread evenly, and a batch per due time would wake the flusher and hand off to the
#: store's thread hundreds of times a second, a blob or two each time. A blob is then
#: written at most this much after its interval.
BATCH_GAP_S = 0.25

#: A blob written beside another (a thumbnail's place) is written again after this long
#: even when unchanged: far younger than any sweep age, so the two age out together.
BESIDE_REFRESH_S = 300.0

Data = bytes | memoryview


class LatestWriter:
    def __init__(self, store: BlobStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        #: name -> (newest data, the blob to write beside it or None)
        self._pending: dict[str, tuple[Data, tuple[str, bytes] | None]] = {}
        #: name -> when it was last written (monotonic): a blob written beside another
        self._last: dict[str, float] = {}
        #: name -> when it may be written next (monotonic; see the module text)
        self._next: dict[str, float] = {}
        #: (when it may be written, name) for each pending name; entries of names written
        #: or forgotten since are skipped when they come up
        self._due: list[tuple[float, str]] = []
        #: name of a blob written beside another -> the content last written
        self._beside: dict[str, bytes] = {}
        #: pending names to write with the next batch whatever their interval (flush)
        self._urgent: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep_until = float("inf")
        self._busy = False
        self.writes = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self.last_error is not None

    def offer(self, name: str, data: Data, beside: tuple[str, bytes] | None = None) -> None:
        """Make ``data`` the next content of ``name``; written at once the first time, then
        at its next beat (within two ``interval_s`` of the write before).
        ``beside``: (name, data) of a blob written in the same batch, when it changed or
        its last write is ``BESIDE_REFRESH_S`` old. ``data`` may be a view into a frame:
        it is copied only when written."""
        pending = self._pending
        waiting = name in pending
        pending[name] = (data, beside)
        if waiting:  # its due time is on the heap already
            return
        due = self._next.get(name, float("-inf"))
        heapq.heappush(self._due, (due, name))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="latest writer")
        if due < self._sleep_until:
            self._wake.set()

    def flush(self, *names: str) -> None:
        """Write what is pending for these names in the next batch, whatever their
        interval (a device that went offline: its last state lands now)."""
        now = time.monotonic()
        hit = False
        for name in names:
            if name in self._pending and name not in self._urgent:
                self._urgent.add(name)
                heapq.heappush(self._due, (now, name))
                hit = True
        if hit:
            self._wake.set()

    def _take_due(self, now: float) -> dict[str, bytes]:
        """The pending blobs whose interval has passed (or that were flushed), and the
        blobs to write beside them."""
        heap, pending, last, interval = self._due, self._pending, self._last, self.interval_s
        nexts, urgent = self._next, self._urgent
        batch: dict[str, bytes] = {}
        while heap and heap[0][0] <= now:
            _, name = heapq.heappop(heap)
            if name not in pending:
                continue  # written or forgotten since this entry was pushed
            if name in urgent:
                urgent.discard(name)
            elif nexts.get(name, float("-inf")) > now:
                continue  # an entry from before its last write: a later one is on the heap
            data, beside = pending.pop(name)
            batch[name] = bytes(data)
            due = nexts.get(name)
            if due is None or now - due > interval:  # a first write: it finds its own beat
                nexts[name] = now + interval + random.random() * interval
            else:
                nexts[name] = now + interval
            if beside is not None:
                bname, bdata = beside
                if self._beside.get(bname) != bdata or (
                    last.get(bname, float("-inf")) + BESIDE_REFRESH_S <= now
                ):
                    batch[bname] = bdata
                    self._beside[bname] = bdata
                    last[bname] = now
        return batch

    async def _run(self) -> None:
        while self._pending:
            now = time.monotonic()
            batch = self._take_due(now)
            if batch:
                self._busy = True
                try:
                    await self._write(batch)
                finally:
                    self._busy = False
                if self._pending and self.interval_s > 0:  # the next batch not at once
                    await asyncio.sleep(min(BATCH_GAP_S, self.interval_s))
                continue
            if not self._due:  # cannot happen: every pending name has an entry
                log.error("latest writer: %d pending blobs without a due time", len(self._pending))
                self._pending.clear()
                return
            self._wake.clear()
            self._sleep_until = self._due[0][0]
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._sleep_until - now)):
                        await self._wake.wait()
            finally:
                self._sleep_until = float("inf")

    async def _write(self, batch: dict[str, bytes]) -> None:
        put_many = getattr(self.store, "put_many", None)
        if put_many is not None:
            errors: dict[str, BlobStoreError] = await put_many(batch)
        else:
            gate = asyncio.Semaphore(_CONCURRENT_PUTS)

            async def one(name: str, data: bytes) -> BlobStoreError | None:
                async with gate:
                    try:
                        await self.store.put(name, data)
                    except BlobStoreError as exc:
                        return exc
                    return None

            results = await asyncio.gather(*(one(n, d) for n, d in batch.items()))
            errors = {n: e for n, e in zip(batch, results, strict=True) if e is not None}
        for name, exc in errors.items():
            self._beside.pop(name, None)  # written again with its companion's next write
            self.failures += 1
            self.last_error = str(exc)
            log.warning("blob store write of %s dropped: %s", name, exc)
        self.writes += len(batch) - len(errors)
        if not errors:
            self.last_error = None

    def forget(self, prefix: str) -> None:
        """Drop pending writes under ``prefix`` (a student being erased)."""
        for name in [n for n in self._pending if n.startswith(prefix)]:
            del self._pending[name]
            self._urgent.discard(name)
        for name in [n for n in self._beside if n.startswith(prefix)]:
            del self._beside[name]  # erased: written again with its companion

    async def drain(self) -> None:
        """Wait for pending writes (used at shutdown and in tests)."""
        while self._pending or self._busy:
            if self._pending:
                self._wake.set()
            task = self._task
            if task is None or task.done():
                if not self._pending:
                    return
                self._task = task = asyncio.create_task(self._run(), name="latest writer")
            await asyncio.wait([task], timeout=0.05)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
