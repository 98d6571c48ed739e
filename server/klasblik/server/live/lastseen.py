"""Writes each student's last IP address and last-seen time in batches.

An agent connecting or leaving notes its student here and goes on at once; a background
task writes what was noted, at most once per ``interval_s``, as one UPDATE per batch. A
school's morning (thousands of agents connecting within minutes) then costs a handful of
transactions instead of two per agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import Student, utcnow
from klasblik.server.tasks import cancel_and_wait

__all__ = ["LastSeenWriter"]

log = logging.getLogger(__name__)


class LastSeenWriter:
    def __init__(self, sm: async_sessionmaker[AsyncSession], interval_s: float = 1.0) -> None:
        self.sm = sm
        self.interval_s = interval_s
        self._pending: dict[int, tuple[str, dt.datetime]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def note(self, student_id: int, ip: str) -> None:
        """Remember that the student was seen now, from ``ip`` (written shortly)."""
        self._pending[student_id] = (ip, utcnow())
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="last-seen writer")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval_s)

    async def flush(self) -> None:
        """Write everything noted so far (a failure is logged; the next note retries)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        rows = [{"sid": sid, "ip": ip, "seen": seen} for sid, (ip, seen) in batch.items()]
        try:
            async with self.sm() as session, session.begin():
                await session.connection()
                await session.execute(
                    update(Student.__table__)  # type: ignore[arg-type]
                    .where(Student.__table__.c.id == bindparam("sid"))
                    .values(last_ip=bindparam("ip"), last_seen=bindparam("seen")),
                    rows,
                )
            self.batches += 1
        except Exception:  # a database hiccup must not drop live agents
            log.exception("could not record last-seen of %d students", len(rows))

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()
