"""Data-subject rights for one student, named by Microsoft 365 username: an export of
everything held about them as one zip archive, and an erasure of it all.

The archive holds ``data.json`` (the student record, their classes, the audit entries about
them, grid views included, a list of who watched when, and ``about``: the purposes,
categories, recipients, retention periods, source and rights, in Dutch and English) and,
only when IT states a reason (which is logged), ``thumbnail.<ext>`` (the latest stored
screenshot) and ``tabs.json`` (the latest stored tab list).

An IT administrator acts only on students of their own school (``school_id``); the command
line, run by whoever runs the server, is not limited.

Erasure deletes the blobs first, then the rows (the student and their class memberships), and
appends an audit entry that says an erasure happened: the student's number, no name.
Audit entries already written about the student stay until the audit retention ends them:
they record who looked, which the school must be able to show, and the log is never edited.
The erased username goes on the do-not-view list (``access/no_view.py``), so the next roster
sync cannot bring the student back into view until IT clears it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from klasblik.protocol.errors import KlasblikError
from klasblik.server.access import audit, no_view
from klasblik.server.access.audit_query import AuditFilter, entry_json, iter_entries
from klasblik.server.retention.art15 import about
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import BlobStore, student_prefix, tabs_name, thumbnail_name
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.storage.models import (
    AgentDevice,
    GoogleAccount,
    Location,
    School,
    Student,
    SyncState,
    class_students,
)

__all__ = [
    "STUDENT_FIELDS",
    "VIEW_ACTIONS",
    "ErasureResult",
    "UnknownStudent",
    "erase_student",
    "export_student",
    "find_student",
]

#: The student fields an export carries: everything the database holds about a student.
STUDENT_FIELDS = (
    "id",
    "username",
    "display_name",
    "m365_id",
    "active",
    "last_ip",
    "last_seen",
    "created_at",
    "school",
    "location",
)
#: Audit actions that are a view of the student (the "who watched when" list).
VIEW_ACTIONS = (
    audit.Actions.VIEW_GRID_START,
    audit.Actions.VIEW_FOCUS_START,
    audit.Actions.VIEW_STORED,
)
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


class UnknownStudent(KlasblikError, LookupError):
    """No student has that username."""

    code = "not_found"
    status = 404

    def __init__(self, username: str) -> None:
        super().__init__(f"no student with username {username!r}")
        self.username = username


@dataclass(frozen=True)
class ErasureResult:
    student_id: int
    blobs_deleted: int
    class_memberships: int


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


async def find_student(
    sm: async_sessionmaker[AsyncSession], username: str, school_ids: frozenset[int] | None = None
) -> Student:
    """The student of that username; with ``school_ids``, only one of those schools (a
    student of another school is answered like an unknown one: no oracle)."""
    username = username.strip()
    if not username or len(username) > 256:
        raise ValueError("a student username (Microsoft 365 sign-in name) is needed")
    async with sm() as session:
        student = await session.scalar(
            select(Student)
            .where(Student.username == username)
            .options(selectinload(Student.classes))
        )
    if student is None or (school_ids is not None and student.school_id not in school_ids):
        raise UnknownStudent(username)
    return student


async def _roster_source(sm: async_sessionmaker[AsyncSession]) -> str:
    async with sm() as session:
        synced = await session.scalar(select(SyncState.key).limit(1))
    return "microsoft365" if synced else "csv"


async def export_student(
    sm: async_sessionmaker[AsyncSession],
    store: BlobStore,
    username: str,
    actor: str,
    ip: str | None = None,
    now: dt.datetime | None = None,
    *,
    settings: Settings,
    latest_reason: str | None = None,
    school_ids: frozenset[int] | None = None,
) -> bytes:
    """The zip archive of everything held about the student; the export is audit-logged
    first (no log entry, no export). The stored screenshot and tab list are included only
    with ``latest_reason``, which goes into the audit entry."""
    student = await find_student(sm, username, school_ids)
    subject = f"student:{student.id}"
    reason = (latest_reason or "").strip()
    detail = "export archive" + (
        f"; screenshot and tabs included, reason: {reason}" if reason else ""
    )
    await audit.record(
        sm, actor, audit.Actions.STUDENT_EXPORT, subject, detail, ip, school_id=student.school_id
    )
    async with sm() as session:
        school = await session.get(School, student.school_id)
        location = await session.get(Location, student.location_id) if student.location_id else None
        devices = (
            await session.scalars(select(AgentDevice).where(AgentDevice.student_id == student.id))
        ).all()
        google = (
            await session.scalars(
                select(GoogleAccount.email).where(GoogleAccount.student_id == student.id)
            )
        ).all()
    record: dict[str, Any] = {
        "id": student.id,
        "username": student.username,
        "display_name": student.display_name,
        "m365_id": student.m365_id,
        "active": student.active,
        "last_ip": student.last_ip,
        "last_seen": _iso(student.last_seen),
        "created_at": _iso(student.created_at),
        "school": {"name": school.name, "brin": school.brin} if school else None,
        "location": {"name": location.name, "code": location.code} if location else None,
    }
    assert tuple(record) == STUDENT_FIELDS
    entries = [entry_json(e) async for e in iter_entries(sm, AuditFilter(subject=subject))]
    blocked = await no_view.entry(sm, student.username)
    files: dict[str, Any] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if reason:
            thumb = await store.get(thumbnail_name(student.id))
            tabs = await store.get(tabs_name(student.id))
            if thumb is not None:
                name = "thumbnail." + _EXTENSIONS.get(thumb.content_type, "bin")
                zf.writestr(name, thumb.data)
                files["thumbnail"] = {"file": name, "stored_at": _iso(thumb.last_modified)}
            if tabs is not None:
                zf.writestr("tabs.json", tabs.data)
                files["tabs"] = {"file": "tabs.json", "stored_at": _iso(tabs.last_modified)}
        else:
            files["not_included"] = (
                "the stored screenshot and tab list are included only when IT states a reason"
            )
        data = {
            "exported_at": _iso(now or dt.datetime.now(dt.UTC)),
            "student": record,
            "classes": sorted(c.name for c in student.classes),
            "do_not_view": (
                {"source": blocked.source, "since": _iso(blocked.set_at)} if blocked else None
            ),
            # agent identity: the enrolled devices' public keys and the Google addresses
            "devices": [
                {
                    "device_id": d.device_id,
                    "public_key": d.public_key,
                    "created_at": _iso(d.created_at),
                    "last_proven_at": _iso(d.last_proven_at),
                }
                for d in devices
            ],
            "google_addresses": sorted(google),
            "latest": files,
            "audit": entries,
            "views": [
                {"at": e["at"], "by": e["actor"], "how": e["action"], "from": e["ip"]}
                for e in entries
                if e["action"] in VIEW_ACTIONS
            ],
            "about": about(settings, await _roster_source(sm)),
        }
        zf.writestr("data.json", json.dumps(data, ensure_ascii=False, indent=2))
    return buf.getvalue()


async def erase_student(
    sm: async_sessionmaker[AsyncSession],
    store: BlobStore,
    username: str,
    actor: str,
    ip: str | None = None,
    latest: LatestWriter | None = None,
    *,
    school_ids: frozenset[int] | None = None,
) -> ErasureResult:
    """Erase the student's blobs and rows; return what went. Safe to run again after an
    interruption: blobs go first, and a second run finds the rest. The username stays on
    the do-not-view list until IT clears it."""
    student = await find_student(sm, username, school_ids)
    sid = student.id
    await no_view.block(sm, student.username, student.school_id, "erased", actor)
    if latest is not None:
        latest.forget(student_prefix(sid))
    names = [thumbnail_name(sid), tabs_name(sid)]
    names += [b.name async for b in store.list(student_prefix(sid)) if b.name not in names]
    blobs = await store.delete(names)
    async with sm() as session, session.begin():
        links = await session.execute(
            delete(class_students).where(class_students.c.student_id == sid)
        )
        await session.execute(delete(AgentDevice).where(AgentDevice.student_id == sid))
        await session.execute(delete(GoogleAccount).where(GoogleAccount.student_id == sid))
        await session.execute(delete(Student).where(Student.id == sid))
        memberships = int(links.rowcount or 0)  # type: ignore[attr-defined]
    # A frame that was on its way while the rows went may have been stored: clear again.
    if latest is not None:
        latest.forget(student_prefix(sid))
    blobs += await store.delete([b.name async for b in store.list(student_prefix(sid))])
    await audit.record(
        sm,
        actor,
        audit.Actions.STUDENT_ERASE,
        f"student:{sid}",
        f"erased on request: record, {memberships} class membership(s), {blobs} stored blob(s)",
        ip,
        school_id=student.school_id,
    )
    return ErasureResult(sid, blobs, memberships)
