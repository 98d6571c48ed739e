"""Roster lookups of agents saying hello, coalesced into one query per batch.

When a school's devices start (or an instance dies and its agents move), thousands of
agents say hello within seconds. Each would cost a database session of its own; here the
accounts waiting at the same moment are looked up with one query, and the next batch
collects while that query runs. Anything but an active student found this way is looked
up again by :func:`klasblik.server.access.rules.agent_student`, so refusals keep their exact
reason.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.access.rules import agent_student
from klasblik.server.storage.models import Student
from klasblik.server.tasks import cancel_and_wait

__all__ = ["StudentLookup"]

log = logging.getLogger(__name__)

_MAX_BATCH = 500


class StudentLookup:
    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self.sm = sm
        self._waiting: dict[str, list[asyncio.Future[Student | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0

    async def student(self, account: str) -> Student:
        """The active student behind ``account``, or AccessDenied (see ``agent_student``)."""
        username = account.strip().lower()
        fut: asyncio.Future[Student | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(username, []).append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="student lookup")
        found = await fut
        if found is None:
            return await agent_student(self.sm, account)
        return found

    async def _run(self) -> None:
        while self._waiting:
            names = list(self._waiting)[:_MAX_BATCH]
            batch = {name: self._waiting.pop(name) for name in names}
            try:
                async with self.sm() as session:
                    rows = await session.scalars(
                        select(Student).where(func.lower(Student.username).in_(names))
                    )
                    found = {r.username.lower(): r for r in rows.all() if r.active}
                self.queries += 1
            except Exception as exc:
                for futs in batch.values():
                    for fut in futs:
                        if not fut.done():
                            fut.set_exception(exc)
                continue
            for name, futs in batch.items():
                for fut in futs:
                    if not fut.done():
                        fut.set_result(found.get(name))

    async def close(self) -> None:
        """Stop the batch task (at shutdown); hellos still waiting get ``CancelledError``."""
        await cancel_and_wait(self._task)
        for futs in self._waiting.values():
            for fut in futs:
                fut.cancel()
        self._waiting.clear()
