"""Who may connect and who may see whom. Every check runs on the server, from the database,
for every agent hello and every dashboard subscription, never from what a browser says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.protocol import ErrorCode
from klasblik.server.errors import AccessDenied
from klasblik.server.settings import Settings
from klasblik.server.storage.models import (
    SchoolClass,
    Staff,
    Student,
    SyncState,
    class_students,
    class_teachers,
)

__all__ = [
    "ClassView",
    "StudentView",
    "agent_student",
    "authorize_class",
    "authorize_student",
    "class_access",
    "classes_of",
    "roster_max_age_s",
    "staff_named",
]

#: ``sync_state`` row the roster sync writes in its own transaction when it succeeds
ROSTER_SYNC_OK_KEY = "roster.sync.ok"


def roster_max_age_s(settings: Settings) -> float:
    """Seconds a roster from Microsoft 365 may go without a successful sync before viewing
    is refused; 0 (no limit) without a tenant or with ``roster_max_age_h`` 0."""
    if not settings.m365_tenant_id:
        return 0.0
    return float(settings.roster_max_age_h * 3600)


async def _roster_fresh(session: AsyncSession, max_age_s: float) -> None:
    """AccessDenied(roster_stale) when the last successful sync is older than
    ``max_age_s`` (or there never was one). ``max_age_s`` 0: no check."""
    if max_age_s <= 0:
        return
    row = await session.get(SyncState, ROSTER_SYNC_OK_KEY)
    if row is None:
        raise AccessDenied(
            ErrorCode.ROSTER_STALE,
            "the roster has never been synced from Microsoft 365: nothing can be viewed "
            "until a sync succeeds (ask IT)",
        )
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=dt.UTC)
    age = (dt.datetime.now(dt.UTC) - at).total_seconds()
    if age > max_age_s:
        raise AccessDenied(
            ErrorCode.ROSTER_STALE,
            f"the roster was last synced from Microsoft 365 {age / 3600:.0f} hours ago: "
            "access can no longer be shown to follow it, so nothing can be viewed until a "
            "sync succeeds (ask IT)",
        )


@dataclass(frozen=True, slots=True)
class StudentView:
    id: int
    display_name: str
    last_seen_iso: str | None = None


@dataclass(frozen=True, slots=True)
class ClassView:
    id: int
    name: str
    school_id: int
    students: tuple[StudentView, ...]


async def staff_named(sm: async_sessionmaker[AsyncSession], username: str) -> Staff | None:
    """The staff member with this username (as stored), or None."""
    async with sm() as session:
        found: Staff | None = await session.scalar(select(Staff).where(Staff.username == username))
    return found


async def agent_student(sm: async_sessionmaker[AsyncSession], account: str) -> Student:
    """The active student behind an agent's account, or AccessDenied (with the protocol
    code: ``not_a_student`` for staff, ``unknown_account`` otherwise)."""
    username = account.strip().lower()
    async with sm() as session:
        student = await session.scalar(
            select(Student).where(func.lower(Student.username) == username)
        )
        if student is not None and student.active:
            return student
        staff = await session.scalar(select(Staff).where(func.lower(Staff.username) == username))
    if staff is not None:
        raise AccessDenied(
            ErrorCode.NOT_A_STUDENT, "this is a staff account: staff screens are never viewed"
        )
    if student is not None:
        raise AccessDenied(ErrorCode.UNKNOWN_ACCOUNT, "this account is disabled in the roster")
    raise AccessDenied(ErrorCode.UNKNOWN_ACCOUNT, "this account is not in the school's roster")


async def classes_of(
    sm: async_sessionmaker[AsyncSession], staff: Staff
) -> list[tuple[SchoolClass, int]]:
    """The classes a staff member teaches at their school, with student counts."""
    if not staff.active:
        return []
    async with sm() as session:
        count = (
            select(func.count())
            .select_from(class_students)
            .where(class_students.c.class_id == SchoolClass.id)
            .scalar_subquery()
        )
        rows = await session.execute(
            select(SchoolClass, count)
            .join(class_teachers, class_teachers.c.class_id == SchoolClass.id)
            .where(class_teachers.c.staff_id == staff.id, SchoolClass.school_id == staff.school_id)
            .order_by(SchoolClass.name)
        )
        return [(cls, int(n)) for cls, n in rows.all()]


async def authorize_class(
    sm: async_sessionmaker[AsyncSession],
    staff_id: int,
    class_id: int,
    *,
    roster_max_age_s: float = 0.0,
) -> ClassView:
    """The class and its active students, if this staff member may view it now (and the
    roster is fresh enough: ``roster_max_age_s``, see :func:`roster_max_age_s`)."""
    async with sm() as session:
        staff = await session.get(Staff, staff_id)
        if staff is None or not staff.active:
            raise AccessDenied(ErrorCode.FORBIDDEN, "your account is not active staff")
        await _roster_fresh(session, roster_max_age_s)
        cls = await session.get(SchoolClass, class_id)
        if cls is None:
            raise AccessDenied(ErrorCode.NOT_FOUND, f"class {class_id} does not exist", 404)
        teaches = await session.scalar(
            select(func.count())
            .select_from(class_teachers)
            .where(class_teachers.c.class_id == class_id, class_teachers.c.staff_id == staff_id)
        )
        if not teaches or cls.school_id != staff.school_id:
            raise AccessDenied(ErrorCode.FORBIDDEN, "you do not teach this class")
        students = await session.scalars(
            select(Student)
            .join(class_students, class_students.c.student_id == Student.id)
            .where(class_students.c.class_id == class_id, Student.active.is_(True))
            .order_by(Student.display_name)
        )
        views = tuple(
            StudentView(
                s.id,
                s.display_name,
                s.last_seen.isoformat().replace("+00:00", "Z") if s.last_seen else None,
            )
            for s in students
        )
        return ClassView(cls.id, cls.name, cls.school_id, views)


async def class_access(
    sm: async_sessionmaker[AsyncSession],
    pairs: Iterable[tuple[int, int]],
    *,
    roster_max_age_s: float = 0.0,
) -> dict[tuple[int, int], AccessDenied | frozenset[int]]:
    """For each (staff id, class id): the ids of the class's active students if that staff
    member may view it now, else the AccessDenied :func:`authorize_class` would raise.

    The same rule as :func:`authorize_class` for many views at once, in five queries
    whatever their number (the periodic re-check of every open view)."""
    pairs = set(pairs)
    if not pairs:
        return {}
    staff_ids = {s for s, _ in pairs}
    class_ids = {c for _, c in pairs}
    async with sm() as session:
        try:
            await _roster_fresh(session, roster_max_age_s)
            stale: AccessDenied | None = None
        except AccessDenied as exc:
            stale = exc
        staff = {
            row.id: row
            for row in await session.execute(
                select(Staff.id, Staff.active, Staff.school_id).where(Staff.id.in_(staff_ids))
            )
        }
        found = await session.execute(
            select(SchoolClass.id, SchoolClass.school_id).where(SchoolClass.id.in_(class_ids))
        )
        schools: dict[int, int] = {class_id: school_id for class_id, school_id in found}
        found = await session.execute(
            select(class_teachers.c.staff_id, class_teachers.c.class_id).where(
                class_teachers.c.class_id.in_(class_ids),
                class_teachers.c.staff_id.in_(staff_ids),
            )
        )
        teaches = {(staff_id, class_id) for staff_id, class_id in found}
        members: dict[int, set[int]] = {c: set() for c in class_ids}
        for class_id, student_id in await session.execute(
            select(class_students.c.class_id, class_students.c.student_id)
            .join(Student, Student.id == class_students.c.student_id)
            .where(class_students.c.class_id.in_(class_ids), Student.active.is_(True))
        ):
            members[class_id].add(student_id)
    out: dict[tuple[int, int], AccessDenied | frozenset[int]] = {}
    for staff_id, class_id in pairs:
        who = staff.get(staff_id)
        if who is None or not who.active:
            out[staff_id, class_id] = AccessDenied(
                ErrorCode.FORBIDDEN, "your account is not active staff"
            )
        elif stale is not None:
            out[staff_id, class_id] = stale
        elif class_id not in schools:
            out[staff_id, class_id] = AccessDenied(
                ErrorCode.NOT_FOUND, f"class {class_id} does not exist", 404
            )
        elif (staff_id, class_id) not in teaches or schools[class_id] != who.school_id:
            out[staff_id, class_id] = AccessDenied(
                ErrorCode.FORBIDDEN, "you do not teach this class"
            )
        else:
            out[staff_id, class_id] = frozenset(members[class_id])
    return out


async def authorize_student(
    sm: async_sessionmaker[AsyncSession],
    staff_id: int,
    student_id: int,
    *,
    roster_max_age_s: float = 0.0,
) -> Student:
    """The student, if this staff member teaches a class the student is in (and the roster
    is fresh enough)."""
    async with sm() as session:
        staff = await session.get(Staff, staff_id)
        if staff is None or not staff.active:
            raise AccessDenied(ErrorCode.FORBIDDEN, "your account is not active staff")
        await _roster_fresh(session, roster_max_age_s)
        student = await session.get(Student, student_id)
        if student is None or not student.active:
            raise AccessDenied(ErrorCode.NOT_FOUND, f"student {student_id} does not exist", 404)
        shared = await session.scalar(
            select(func.count())
            .select_from(class_students)
            .join(class_teachers, class_teachers.c.class_id == class_students.c.class_id)
            .where(
                class_students.c.student_id == student_id,
                class_teachers.c.staff_id == staff_id,
            )
        )
        if not shared or student.school_id != staff.school_id:
            raise AccessDenied(ErrorCode.FORBIDDEN, "this student is not in a class you teach")
        return student
