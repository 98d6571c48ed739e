"""One runner at a time for a named job, across every instance on the same database.

On PostgreSQL this is a session-level advisory lock (``pg_try_advisory_lock``) held on one
connection for the job's whole run: a second instance that tries at the same moment gets
``False`` and skips; a process that dies loses its connection and with it the lock. On
SQLite Klasblik runs as one instance, so a lock inside this process is enough.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["job_lock", "lock_key"]

#: Keeps Klasblik's advisory lock keys apart from other users of the same database.
_NAMESPACE = 0x4B4C << 32  # "KL"

_held_here: set[tuple[str, str]] = set()


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of a job name (stable across processes)."""
    return _NAMESPACE | zlib.crc32(name.encode())


@asynccontextmanager
async def job_lock(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yield True when this caller holds the lock for ``name``, False when another does."""
    if engine.dialect.name == "postgresql":
        key = lock_key(name)
        async with engine.connect() as conn:
            got = bool(
                (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            )
            await conn.commit()  # the lock is per session: no transaction stays open
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()
                    except BaseException:
                        # Never hand a connection that may still hold the lock back to the pool.
                        await conn.invalidate()
                        raise
        return
    ident = (str(engine.url), name)
    if ident in _held_here:
        yield False
        return
    _held_here.add(ident)
    try:
        yield True
    finally:
        _held_here.discard(ident)
