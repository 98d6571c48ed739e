"""Refused agents in the audit log, bounded: an attacker repeating refused hellos cannot grow
the database or the log without limit, and a data protection officer still reads who tried
(the account named), why it was refused, from which address, when, and how often.

Per window of ``window_s`` seconds:

- the first refusal of each (account, reason, address) is written at once, as before;
- repeats of one already written are counted and written once, at the end of the window,
  as one entry ``REASON; repeated N times between FIRST and LAST``;
- after ``max_entries`` distinct ones, the rest of the window's refusals are counted in one
  entry (actor ``(more)``): how many, of how many accounts and addresses.

So a window writes at most ``2 * max_entries + 1`` entries, whatever arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.access import audit

__all__ = ["RefusalLog"]

log = logging.getLogger(__name__)


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Repeat:
    first: dt.datetime
    last: dt.datetime
    count: int = 0


@dataclass
class _Overflow:
    count: int = 0
    accounts: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)


class RefusalLog:
    def __init__(
        self, sm: async_sessionmaker[AsyncSession], window_s: float, max_entries: int
    ) -> None:
        self.sm = sm
        self.window_s = window_s
        self.max_entries = max_entries
        self._written: dict[tuple[str, str, str], _Repeat] = {}
        self._overflow = _Overflow()
        self._task: asyncio.Task[None] | None = None
        self.entries_written = 0

    async def note(self, account: str, why: str, ip: str) -> None:
        """One refused hello. Raises nothing: a failed write is logged (it never drops or
        delays anything but this entry)."""
        key = (account.strip().lower()[:256], why, ip)
        now = dt.datetime.now(dt.UTC)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="refusal log")
        seen = self._written.get(key)
        if seen is not None:
            seen.count += 1
            seen.last = now
            return
        if len(self._written) >= self.max_entries:
            self._overflow.count += 1
            if len(self._overflow.accounts) < 10_000:  # counting, not keeping everything
                self._overflow.accounts.add(key[0])
                self._overflow.addresses.add(ip)
            return
        self._written[key] = _Repeat(now, now)
        await self._write(key[0], why, ip)

    async def _write(self, actor: str, detail: str, ip: str | None) -> None:
        try:
            await audit.record(self.sm, actor, audit.Actions.AGENT_REFUSED, "agent", detail, ip)
            self.entries_written += 1
        except Exception:
            log.exception("could not audit-log a refused agent")

    async def _run(self) -> None:
        while self._written or self._overflow.count:
            await asyncio.sleep(self.window_s)
            await self.flush()

    async def flush(self) -> None:
        """End the window: write the repeats and the overflow, start a new window."""
        written, self._written = self._written, {}
        overflow, self._overflow = self._overflow, _Overflow()
        for (actor, why, ip), rep in written.items():
            if rep.count:
                await self._write(
                    actor,
                    f"{why}; repeated {rep.count} times between {_iso(rep.first)} "
                    f"and {_iso(rep.last)}",
                    ip,
                )
        if overflow.count:
            await self._write(
                "(more)",
                f"{overflow.count} more refused agents in {self.window_s:g} s, of "
                f"{len(overflow.accounts)} accounts from {len(overflow.addresses)} addresses "
                f"(at most {self.max_entries} are logged one by one per window)",
                None,
            )

    async def close(self) -> None:
        """Write what is counted, and stop (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
