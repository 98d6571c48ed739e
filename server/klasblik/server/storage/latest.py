"""Keeps the latest thumbnail and tab list of each student in the blob store.

Writes are rate-limited per blob (``store_interval_s``) with a trailing write, so the last
state always lands without writing every frame. A failing store never blocks the caller:
the write is dropped with a log line and the store is reported degraded until a write
succeeds again.

One flusher task serves every blob: it writes, in one batch, the blobs whose interval has
passed (a store with ``put_many`` gets the whole batch in one call; others get a bounded
number of concurrent ``put`` calls). With thousands of students in view, a task and a
thread hand-off per blob would cost the live relay more than the writes themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from klasblik.server.storage.blobs.base import BlobStore, BlobStoreError
from klasblik.server.tasks import cancel_and_wait

__all__ = ["LatestWriter"]

log = logging.getLogger(__name__)

_CONCURRENT_PUTS = 16


class LatestWriter:
    def __init__(self, store: BlobStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: dict[str, bytes] = {}
        self._last: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._busy = False
        self.writes = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self.last_error is not None

    def offer(self, name: str, data: bytes) -> None:
        """Make ``data`` the next content of ``name``; written within ``interval_s``."""
        self._pending[name] = data
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="latest writer")
        if self._last.get(name, float("-inf")) + self.interval_s <= time.monotonic():
            self._wake.set()

    async def _run(self) -> None:
        while self._pending:
            now = time.monotonic()
            interval = self.interval_s
            due = [n for n in self._pending if self._last.get(n, float("-inf")) + interval <= now]
            if due:
                batch = {n: self._pending.pop(n) for n in due}
                for n in due:
                    self._last[n] = now
                self._busy = True
                try:
                    await self._write(batch)
                finally:
                    self._busy = False
                continue
            wait = min(self._last[n] for n in self._pending) + interval - now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, wait))

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
