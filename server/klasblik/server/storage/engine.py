"""The database engine (SQLAlchemy 2, async): SQLite by default, PostgreSQL for several
instances; the session factory; and the schema upgrade to Alembic's newest revision."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = [
    "create_engine",
    "ping",
    "sessionmaker",
    "upgrade_database",
    "wait_for_database",
    "with_database",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest pause between two tries while waiting for the database at start.
_RETRY_MAX_S = 5.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def with_database(
    database_url: str, job: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Run ``job`` on a migrated database and close it after (the CLI's commands)."""
    engine = create_engine(database_url)
    try:
        await upgrade_database(engine)
        return await job(sessionmaker(engine))
    finally:
        await engine.dispose()


async def upgrade_database(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision (once, even with many instances)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))

    def run(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            # Several instances may start together: one migrates, the others wait.
            sync_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243001)")
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")

    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # A table rebuild (batch migration) must not cascade deletes into the tables
            # that refer to it; foreign keys can only be switched outside a transaction.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            await conn.run_sync(run)
            if sqlite:
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    await conn.rollback()
                    raise RuntimeError(f"schema upgrade broke foreign keys: {broken[:5]}")
            await conn.commit()
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database; raises whatever the driver raises when it is down."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def wait_for_database(engine: AsyncEngine, timeout_s: float) -> None:
    """Return once the database answers; retry with growing pauses (up to 5 s) for as long
    as ``timeout_s`` allows, logging each failure, then raise the last error. A database
    that restarts, fails over or starts later than the server is no reason to exit."""
    deadline = time.monotonic() + timeout_s
    pause = 0.25
    tries = 0
    while True:
        tries += 1
        try:
            await ping(engine)
        except Exception as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error(
                    "database does not answer after %d tries: %s: %s",
                    tries,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                raise
            log.warning(
                "database does not answer (%s: %s); retrying for %.0f s more",
                type(exc).__name__,
                (str(exc).splitlines()[0] if str(exc) else "")[:200],
                left,
            )
            await asyncio.sleep(min(pause, left))
            pause = min(_RETRY_MAX_S, pause * 2)
            continue
        if tries > 1:
            log.info("database answers (after %d tries)", tries)
        return
