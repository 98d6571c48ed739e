"""Keeps the latest thumbnail and tab list of each student in the blob store.

Writes are rate-limited per blob (``store_interval_s``) with a trailing write, so the last
state always lands without writing every frame. A failing store never blocks the caller:
the write is dropped with a log line and the store is reported degraded until a write
succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from klasblik.server.blobstore import BlobStore, BlobStoreError

__all__ = ["LatestWriter"]

log = logging.getLogger(__name__)


class LatestWriter:
    def __init__(self, store: BlobStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: dict[str, bytes] = {}
        self._last: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.writes = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self.last_error is not None

    def offer(self, name: str, data: bytes) -> None:
        """Make ``data`` the next content of ``name``; written within ``interval_s``."""
        self._pending[name] = data
        if name not in self._tasks:
            self._tasks[name] = asyncio.create_task(self._flush(name), name=f"store {name}")

    async def _flush(self, name: str) -> None:
        try:
            while name in self._pending:
                wait = self._last.get(name, float("-inf")) + self.interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                data = self._pending.pop(name, None)
                if data is None:
                    break
                self._last[name] = time.monotonic()
                try:
                    await self.store.put(name, data)
                except BlobStoreError as exc:
                    self.failures += 1
                    self.last_error = str(exc)
                    log.warning("blob store write of %s dropped: %s", name, exc)
                else:
                    self.writes += 1
                    self.last_error = None
        finally:
            self._tasks.pop(name, None)

    def forget(self, prefix: str) -> None:
        """Drop pending writes under ``prefix`` (a student being erased)."""
        for name in [n for n in self._pending if n.startswith(prefix)]:
            del self._pending[name]
        for name in [n for n in self._tasks if n.startswith(prefix)]:
            self._tasks[name].cancel()

    async def drain(self) -> None:
        """Wait for pending writes (used at shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
