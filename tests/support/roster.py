"""Small roster rows for storage tests: a school, students, staff, classes, audit entries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import AuditEntry, Location, School, SchoolClass, Staff, Student

__all__ = ["add_audit", "add_staff", "add_student", "seed_school"]


async def seed_school(sm: async_sessionmaker[AsyncSession], brin: str = "12AB") -> int:
    async with sm() as session, session.begin():
        school = await session.scalar(select(School).where(School.brin == brin))
        if school is None:
            school = School(name=f"School {brin}", brin=brin)
            session.add(school)
            await session.flush()
            session.add(Location(school_id=school.id, name="Main", code=brin + "00"))
        return school.id


async def add_student(
    sm: async_sessionmaker[AsyncSession],
    username: str,
    created_at: dt.datetime | None = None,
    class_name: str | None = None,
    **fields: Any,
) -> int:
    school_id = await seed_school(sm)
    async with sm() as session, session.begin():
        loc = await session.scalar(select(Location).where(Location.school_id == school_id))
        st = Student(
            school_id=school_id,
            location_id=loc.id if loc else None,
            username=username,
            display_name=fields.pop("display_name", username.split("@")[0].title()[:1] + "."),
            **fields,
        )
        if created_at is not None:
            st.created_at = created_at
        session.add(st)
        await session.flush()
        if class_name:
            cls = await session.scalar(select(SchoolClass).where(SchoolClass.name == class_name))
            if cls is None:
                cls = SchoolClass(school_id=school_id, name=class_name)
                session.add(cls)
                await session.flush()
            await session.refresh(cls, ["students"])
            cls.students.append(st)
        return st.id


async def add_staff(
    sm: async_sessionmaker[AsyncSession],
    username: str,
    created_at: dt.datetime | None = None,
    **fields: Any,
) -> int:
    school_id = await seed_school(sm)
    async with sm() as session, session.begin():
        row = Staff(school_id=school_id, username=username, name=username.split("@")[0], **fields)
        if created_at is not None:
            row.created_at = created_at
        session.add(row)
        await session.flush()
        return row.id


async def add_audit(
    sm: async_sessionmaker[AsyncSession],
    at: dt.datetime,
    action: str = "view.grid.start",
    subject: str = "class:1",
    actor: str = "teacher@school.example",
) -> int:
    async with sm() as session, session.begin():
        row = AuditEntry(
            at=at, actor=actor, action=action, subject=subject, detail="", ip="127.0.0.1"
        )
        session.add(row)
        await session.flush()
        return row.id
