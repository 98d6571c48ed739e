"""The audit log: appended, never edited. Writing the entry for a view is part of opening
the view: if it cannot be written, the caller must not open the view."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import AuditEntry

__all__ = ["Actions", "Entry", "record", "record_many"]


class Actions:
    VIEW_GRID_START = "view.grid.start"
    VIEW_GRID_END = "view.grid.end"
    VIEW_FOCUS_START = "view.focus.start"
    VIEW_FOCUS_END = "view.focus.end"
    VIEW_REFUSED = "view.refused"
    AGENT_REFUSED = "agent.refused"
    AGENT_CONTESTED = "agent.contested"
    SIGN_IN = "auth.sign_in"
    SIGN_IN_REFUSED = "auth.sign_in.refused"
    SIGN_OUT = "auth.sign_out"
    STUDENT_EXPORT = "student.export"
    STUDENT_ERASE = "student.erase"
    AUDIT_EXPORT = "audit.export"
    ADMIN_REFUSED = "admin.refused"
    PURGE = "purge.run"
    LOCATION_SAVED = "location.saved"
    REMOTE_MODE_ON = "remote_mode.on"
    REMOTE_MODE_OFF = "remote_mode.off"
    REMOTE_MODE_EXPIRED = "remote_mode.expired"
    #: a stored screenshot or tab list was fetched (subject: the student)
    VIEW_STORED = "view.stored"
    AUDIT_READ = "audit.read"
    PURGE_MANUAL = "purge.manual"
    NO_VIEW_SET = "no_view.set"
    NO_VIEW_CLEAR = "no_view.clear"
    BREACH_EXPORT = "audit.breach_export"
    PRIVACY_DOCUMENTS = "privacy.documents"
    ROSTER_SYNC = "roster.sync"


#: (actor, action, subject, detail, ip, school_id) of one entry for :func:`record_many`.
Entry = tuple[str, str, str, str, str | None, int | None]


async def record(
    sm: async_sessionmaker[AsyncSession],
    actor: str,
    action: str,
    subject: str = "",
    detail: str = "",
    ip: str | None = None,
    *,
    school_id: int | None = None,
) -> None:
    """Append one entry and commit it; raises when the database refuses."""
    await record_many(sm, [(actor, action, subject, detail, ip, school_id)])


async def record_many(sm: async_sessionmaker[AsyncSession], entries: list[Entry]) -> None:
    """Append several entries in one transaction (all or none); raises when refused."""
    async with sm() as session, session.begin():
        session.add_all(
            AuditEntry(
                actor=actor[:256],
                action=action,
                subject=subject[:256],
                detail=detail,
                ip=ip,
                school_id=school_id,
            )
            for actor, action, subject, detail, ip, school_id in entries
        )
