"""The do-not-view list: students who must not be viewed (an objection or restriction under
the AVG, or an erasure on request). A listed student's device is told to stop capturing at
once and is never asked again; the tile says why. The list is keyed by the lower-case
Microsoft 365 username, so an erased student stays blocked when the next roster sync
lists them again, until IT clears the entry."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import CaptureBlock, Student

__all__ = ["SOURCES", "block", "blocked", "blocked_ids", "clear", "entry", "not_to_capture"]

#: Who put a student on the list.
SOURCES = ("it", "roster", "erased")


async def block(
    sm: async_sessionmaker[AsyncSession],
    username: str,
    school_id: int | None,
    source: str,
    set_by: str,
    reason: str = "",
) -> None:
    """Put ``username`` on the list (or update why it is there)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    key = username.strip().lower()
    async with sm() as session, session.begin():
        row = await session.get(CaptureBlock, key)
        if row is None:
            session.add(
                CaptureBlock(
                    username=key,
                    school_id=school_id,
                    source=source,
                    reason=reason[:2000],
                    set_by=set_by[:256],
                )
            )
        else:
            row.source, row.reason, row.set_by = source, reason[:2000], set_by[:256]
            row.school_id = row.school_id or school_id


async def clear(sm: async_sessionmaker[AsyncSession], username: str) -> bool:
    """Take ``username`` off the list; True when it was on it."""
    async with sm() as session, session.begin():
        result = await session.execute(
            delete(CaptureBlock).where(CaptureBlock.username == username.strip().lower())
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def entry(sm: async_sessionmaker[AsyncSession], username: str) -> CaptureBlock | None:
    async with sm() as session:
        return await session.get(CaptureBlock, username.strip().lower())


async def blocked(sm: async_sessionmaker[AsyncSession], usernames: list[str]) -> set[str]:
    """The lower-case usernames of ``usernames`` that are on the list."""
    keys = sorted({u.strip().lower() for u in usernames})
    if not keys:
        return set()
    async with sm() as session:
        rows = await session.scalars(
            select(CaptureBlock.username).where(CaptureBlock.username.in_(keys))
        )
        return set(rows)


async def blocked_ids(sm: async_sessionmaker[AsyncSession], student_ids: list[int]) -> set[int]:
    """The ids of ``student_ids`` whose student is on the list."""
    if not student_ids:
        return set()
    async with sm() as session:
        rows = await session.scalars(
            select(Student.id)
            .join(CaptureBlock, CaptureBlock.username == func.lower(Student.username))
            .where(Student.id.in_(sorted(set(student_ids))))
        )
        return set(rows)


async def not_to_capture(sm: async_sessionmaker[AsyncSession], student_ids: list[int]) -> set[int]:
    """The ids of ``student_ids`` that no device may capture: on the list, or no longer a
    student at all (erased on another instance while its agent was connected here)."""
    if not student_ids:
        return set()
    wanted = sorted(set(student_ids))
    async with sm() as session:
        existing = set(await session.scalars(select(Student.id).where(Student.id.in_(wanted))))
    return (set(wanted) - existing) | await blocked_ids(sm, sorted(existing))
