"""Who may connect and who may see whom. Every check runs on the server, from the database,
for every agent hello and every dashboard subscription, never from what a browser says."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.protocol import ErrorCode
from klasblik.server.errors import AccessDenied
from klasblik.server.storage.models import (
    SchoolClass,
    Staff,
    Student,
    class_students,
    class_teachers,
)

__all__ = [
    "ClassView",
    "StudentView",
    "agent_student",
    "authorize_class",
    "authorize_student",
    "classes_of",
    "staff_named",
]


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
    sm: async_sessionmaker[AsyncSession], staff_id: int, class_id: int
) -> ClassView:
    """The class and its active students, if this staff member may view it now."""
    async with sm() as session:
        staff = await session.get(Staff, staff_id)
        if staff is None or not staff.active:
            raise AccessDenied(ErrorCode.FORBIDDEN, "your account is not active staff")
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


async def authorize_student(
    sm: async_sessionmaker[AsyncSession], staff_id: int, student_id: int
) -> Student:
    """The student, if this staff member teaches a class the student is in."""
    async with sm() as session:
        staff = await session.get(Staff, staff_id)
        if staff is None or not staff.active:
            raise AccessDenied(ErrorCode.FORBIDDEN, "your account is not active staff")
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
