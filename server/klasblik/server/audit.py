"""The audit log: appended, never edited. Writing the entry for a view is part of opening
the view: if it cannot be written, the caller must not open the view."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.db import AuditEntry

__all__ = ["record", "record_remote_lesson", "Actions"]


class Actions:
    VIEW_GRID_START = "view.grid.start"
    VIEW_GRID_END = "view.grid.end"
    VIEW_FOCUS_START = "view.focus.start"
    VIEW_FOCUS_END = "view.focus.end"
    VIEW_REFUSED = "view.refused"
    AGENT_REFUSED = "agent.refused"
    SIGN_IN = "auth.sign_in"
    SIGN_IN_REFUSED = "auth.sign_in.refused"
    SIGN_OUT = "auth.sign_out"
    REMOTE_LESSON_ON = "remote_lesson.on"
    REMOTE_LESSON_OFF = "remote_lesson.off"
    STUDENT_EXPORT = "student.export"
    STUDENT_ERASE = "student.erase"
    AUDIT_EXPORT = "audit.export"
    ADMIN_REFUSED = "admin.refused"
    PURGE = "purge.run"


async def record(
    sm: async_sessionmaker[AsyncSession],
    actor: str,
    action: str,
    subject: str = "",
    detail: str = "",
    ip: str | None = None,
) -> None:
    """Append one entry and commit it; raises when the database refuses."""
    async with sm() as session, session.begin():
        session.add(
            AuditEntry(actor=actor[:256], action=action, subject=subject[:256], detail=detail, ip=ip)
        )


async def record_remote_lesson(
    sm: async_sessionmaker[AsyncSession],
    actor: str,
    location_code: str,
    until: dt.datetime | None,
    ip: str | None = None,
    reason: str = "",
) -> None:
    """Record a remote-lesson change: on until ``until`` (aware UTC), or off (``None``).

    Call it before the change takes effect; when it raises, do not make the change.
    """
    if until is not None and until.tzinfo is None:
        raise ValueError("until must be an aware datetime")
    if until is None:
        action, detail = Actions.REMOTE_LESSON_OFF, reason
    else:
        stamp = until.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        action, detail = Actions.REMOTE_LESSON_ON, f"until {stamp}" + (f"; {reason}" if reason else "")
    await record(sm, actor, action, f"location:{location_code}", detail, ip)
