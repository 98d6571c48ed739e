"""Roster sync from Microsoft 365 (School Data Sync, read through Microsoft Graph).

One run, in one database transaction:

1. ``/education/classes/delta`` (from the stored delta link) tells which classes changed;
2. ``/education/schools`` gives schools (name, BRIN from ``schoolNumber``, or from
   ``externalId`` as School Data Sync v2 fills it) and locations;
3. per school, ``/users`` gives students and staff (enabled or not), ``/classes`` the
   classes; members and teachers are read for new and changed classes (all on a first run).
   A class whose term (``educationTerm.endDate``, the SDS academic session) has ended
   links nobody: its teachers and students are unlinked without reading them;
4. ``/education/users/delta`` (from its stored link) brings deleted (``@removed``) and
   disabled (``accountEnabled: false``) accounts;
5. with ``m365_admin_group`` set, ``/groups/{id}/transitiveMembers`` gives the IT admins
   (the sync owns the IT-admin flag then);
6. accounts synced earlier that Microsoft 365 no longer lists are removed (made inactive),
   and classes it no longer lists are deleted.

Every call is on the education API, so ``EduRoster.Read.All`` is the one application
permission needed (``GroupMember.Read.All`` only with an admin group). Accounts are
matched by their Microsoft 365 object id; a username only adopts a row that has no object
id yet (a CSV row). Guests (``userType`` Guest: accounts of other tenants) are never
taken in.

Only DESIGN.md's fields are kept: a student's display name (first name + surname
initial), username, school, location and classes; a staff member's name, username and
school. What the caller does with staff who lost access is in ``revocation.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.protocol.errors import KlasblikError
from klasblik.server.roster.graph import DeltaExpired, DeltaResult, GraphClient
from klasblik.server.roster.names import student_display_name
from klasblik.server.storage.models import (
    Location,
    School,
    SchoolClass,
    Staff,
    Student,
    SyncState,
    class_students,
    class_teachers,
    utcnow,
)

__all__ = [
    "GROUPS_DELTA_KEY",
    "LAST_SUCCESS_KEY",
    "USERS_DELTA_KEY",
    "SyncBusy",
    "SyncSummary",
    "class_ended",
    "sync_roster",
]

log = logging.getLogger(__name__)

USERS_DELTA_KEY = "graph.education.users.delta"
GROUPS_DELTA_KEY = "graph.education.classes.delta"
#: ``sync_state`` row written in the sync's own transaction: when the roster last
#: followed Microsoft 365 (``value`` is the ISO time)
LAST_SUCCESS_KEY = "roster.sync.ok"
USERS_DELTA = "/education/users/delta?$select=id,userPrincipalName,accountEnabled"
GROUPS_DELTA = "/education/classes/delta?$select=id,displayName"
EDU_USER_SELECT = (
    "$select=id,displayName,givenName,surname,userPrincipalName,accountEnabled,primaryRole,userType"
)
_SYNC_LOCK = 7243365
#: class member/teacher reads in flight at once
READ_CONCURRENCY = 6
_BRIN = re.compile(r"^[0-9]{2}[A-Z]{2}$")

Progress = Callable[[str], None]


class SyncBusy(KlasblikError):
    """Another instance is syncing the roster right now."""

    code = "sync_busy"
    status = 409


@dataclass
class SyncSummary:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    disabled: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    warnings: list[str] = field(default_factory=list)
    #: staff who were active before this run and are not after it
    lost_access: set[int] = field(default_factory=set)
    #: classes whose teachers or students changed
    changed_classes: set[int] = field(default_factory=set)

    def text(self) -> str:
        def part(label: str, c: Counter[str]) -> str:
            total = sum(c.values())
            if not total:
                return f"{label} 0"
            detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            return f"{label} {total} ({detail})"

        return "; ".join(
            [
                part("created", self.created),
                part("updated", self.updated),
                part("disabled", self.disabled),
                part("removed", self.removed),
                f"throttled {self.throttled}",
            ]
        )


class _Roster:
    """The rows of one run, looked up by Microsoft 365 id and by username."""

    def __init__(self, session: AsyncSession, summary: SyncSummary) -> None:
        self.s = session
        self.summary = summary
        self.students: dict[str, Student] = {}
        self.staff: dict[str, Staff] = {}
        self.by_name: dict[str, Student | Staff] = {}
        self.seen: set[str] = set()
        self.was_active: dict[int, bool] = {}
        #: ``id()`` of the staff rows created in this run
        self.fresh: set[int] = set()

    async def load(self) -> None:
        for st in await self.s.scalars(select(Student)):
            if st.m365_id:
                self.students[st.m365_id] = st
            self.by_name[st.username.lower()] = st
        for sf in await self.s.scalars(select(Staff)):
            if sf.m365_id:
                self.staff[sf.m365_id] = sf
            self.by_name[sf.username.lower()] = sf
            self.was_active[sf.id] = sf.active

    def _change(self, row: Any, kind: str, **values: Any) -> None:
        changed = False
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
                changed = True
        if changed:
            self.summary.updated[kind] += 1

    def set_active(self, row: Student | Staff, kind: str, active: bool, why: str) -> None:
        if row.active == active:
            return
        row.active = active
        if active:
            self.summary.updated[kind] += 1
        elif why == "removed":
            self.summary.removed[kind] += 1
        else:
            self.summary.disabled[kind] += 1

    async def user(
        self, u: dict[str, Any], school: School, location: Location | None
    ) -> Student | Staff | None:
        oid = str(u.get("id") or "")
        upn = str(u.get("userPrincipalName") or "").strip()
        if not oid or not upn:
            self.summary.warnings.append(
                f"user {oid or '?'} has no id or userPrincipalName; skipped"
            )
            return None
        if str(u.get("userType") or "Member").lower() == "guest":
            self.summary.warnings.append(f"{upn} is a guest of the tenant; not taken in")
            return None
        self.seen.add(oid)
        enabled = u.get("accountEnabled") is not False
        if u.get("primaryRole") == "student":
            return await self._student(u, oid, upn, enabled, school, location)
        return await self._staff(u, oid, upn, enabled, school, location)

    async def _student(
        self,
        u: dict[str, Any],
        oid: str,
        upn: str,
        enabled: bool,
        school: School,
        location: Location | None,
    ) -> Student | None:
        given = str(u.get("givenName") or "").strip()
        surname = str(u.get("surname") or "").strip()
        if not given:
            words = str(u.get("displayName") or upn.split("@")[0]).split()
            given, surname = words[0], " ".join(words[1:])
        display = student_display_name(given, surname)
        row = self.students.get(oid)
        other = self.by_name.get(upn.lower())
        if row is None and isinstance(other, Student) and not other.m365_id:
            row = other
        if row is None:
            if other is not None:
                self.summary.warnings.append(
                    f"{upn} belongs to another account in the roster "
                    f"({'staff' if isinstance(other, Staff) else 'another object id'}); skipped"
                )
                return None
            row = Student(
                username=upn,
                display_name=display,
                m365_id=oid,
                school_id=school.id,
                location_id=location.id if location else None,
                active=enabled,
            )
            self.s.add(row)
            self.summary.created["student"] += 1
        else:
            self._change(
                row,
                "student",
                username=upn,
                display_name=display,
                m365_id=oid,
                school_id=school.id,
                location_id=location.id if location else row.location_id,
            )
            self.set_active(row, "student", enabled, "disabled")
        self.students[oid] = row
        self.by_name[upn.lower()] = row
        return row

    async def _staff(
        self,
        u: dict[str, Any],
        oid: str,
        upn: str,
        enabled: bool,
        school: School,
        location: Location | None,
    ) -> Staff | None:
        name = str(u.get("displayName") or upn).strip()[:200]
        row = self.staff.get(oid)
        other = self.by_name.get(upn.lower())
        if row is None and isinstance(other, Staff) and not other.m365_id:
            # a username adopts only a row no Microsoft 365 account owns yet
            row = other
        if row is None:
            if other is not None:
                self.summary.warnings.append(
                    f"{upn} belongs to another account in the roster "
                    f"({'a student' if isinstance(other, Student) else 'another object id'}); "
                    "skipped"
                )
                return None
            row = Staff(
                username=upn,
                name=name,
                m365_id=oid,
                school_id=school.id,
                location_id=location.id if location else None,
                active=enabled,
            )
            self.s.add(row)
            self.fresh.add(id(row))
            self.summary.created["staff"] += 1
        else:
            self._change(row, "staff", username=upn, name=name, m365_id=oid, school_id=school.id)
            self.set_active(row, "staff", enabled, "disabled")
        self.staff[oid] = row
        self.by_name[upn.lower()] = row
        return row

    def account(self, oid: str) -> tuple[Student | Staff, str] | None:
        if oid in self.students:
            return self.students[oid], "student"
        if oid in self.staff:
            return self.staff[oid], "staff"
        return None


def class_ended(item: dict[str, Any], today: dt.date) -> bool:
    """True when the class's term (``educationTerm``, an SDS academic session) ended
    before ``today``. No term, or no end date, means the class runs."""
    term = item.get("term")
    if not isinstance(term, dict):
        return False
    end = term.get("endDate")
    if not isinstance(end, str) or not end:
        return False
    try:
        return dt.date.fromisoformat(end[:10]) < today
    except ValueError:
        return False


async def _school(
    s: AsyncSession, item: dict[str, Any], summary: SyncSummary
) -> tuple[School, Location] | None:
    number = re.sub(
        r"\s+", "", str(item.get("schoolNumber") or item.get("externalId") or "")
    ).upper()
    brin = number[:4]
    if not _BRIN.match(brin) or len(number) not in (4, 6):
        summary.warnings.append(
            f"school {item.get('displayName')!r} has no BRIN (schoolNumber {number!r}); skipped"
        )
        return None
    code = number if len(number) == 6 else brin + "00"
    name = str(item.get("displayName") or brin).strip()[:200]
    school = await s.scalar(select(School).where(School.brin == brin))
    if school is None:
        school = School(name=name, brin=brin)
        s.add(school)
        await s.flush()
        summary.created["school"] += 1
    elif code.endswith("00") and school.name != name:
        school.name = name
        summary.updated["school"] += 1
    sds_id = str(item.get("id") or "") or None
    loc = None
    if sds_id:
        loc = await s.scalar(select(Location).where(Location.m365_id == sds_id))
    if loc is None:
        loc = await s.scalar(select(Location).where(Location.code == code))
    if loc is None:
        loc = Location(school_id=school.id, name=name, code=code, m365_id=sds_id)
        s.add(loc)
        await s.flush()
        summary.created["location"] += 1
    elif (loc.name, loc.code, loc.m365_id, loc.school_id) != (name, code, sds_id, school.id):
        loc.name, loc.code, loc.m365_id, loc.school_id = name, code, sds_id, school.id
        summary.updated["location"] += 1
    return school, loc


async def _set_members(
    s: AsyncSession, table: Any, col: str, class_id: int, want: set[int]
) -> tuple[set[int], set[int]]:
    """Make the class's rows in ``table`` exactly ``want``; return (added, removed)."""
    have = set(
        (
            await s.execute(select(getattr(table.c, col)).where(table.c.class_id == class_id))
        ).scalars()
    )
    added, gone = want - have, have - want
    if gone:
        await s.execute(
            delete(table).where(table.c.class_id == class_id, getattr(table.c, col).in_(gone))
        )
    if added:
        await s.execute(insert(table), [{"class_id": class_id, col: i} for i in added])
    return added, gone


async def _delta(
    graph: GraphClient, start: str, link: str | None, progress: Progress
) -> DeltaResult:
    try:
        return await graph.delta(start, link)
    except DeltaExpired:
        progress(f"stored delta link of {start.split('?')[0]} expired; reading everything")
        return await graph.delta(start, None)


@dataclass
class _SchoolData:
    item: dict[str, Any]
    users: list[dict[str, Any]]
    #: (class, members, teachers); members/teachers are None when not read this run, and
    #: empty for a class whose term has ended
    classes: list[tuple[dict[str, Any], list[dict[str, Any]] | None, list[dict[str, Any]] | None]]


@dataclass
class _Snapshot:
    groups: DeltaResult
    users: DeltaResult
    schools: list[_SchoolData]
    #: object ids of the IT admin group's members; None without ``m365_admin_group``
    admins: set[str] | None = None


async def _fetch(
    graph: GraphClient,
    state: dict[str, str],
    known_classes: set[str],
    progress: Progress,
    admin_group: str = "",
    today: dt.date | None = None,
) -> _Snapshot:
    """Read everything this run needs from Graph, before any database write."""
    progress("reading class changes (classes delta)")
    groups = await _delta(graph, GROUPS_DELTA, state.get(GROUPS_DELTA_KEY), progress)
    changed = {str(g.get("id")) for g in groups.items}
    progress("reading schools")
    schools: list[_SchoolData] = []
    # a class's members and teachers are read a few classes at a time (Graph answers each
    # request in tens to hundreds of milliseconds; throttling still gets its Retry-After)
    parallel = asyncio.Semaphore(READ_CONCURRENCY)
    for item in await graph.all("/education/schools"):
        sds_id = str(item.get("id") or "")
        if not sds_id:
            continue
        label = f"{item.get('schoolNumber') or '?'} {item.get('displayName') or ''}".strip()
        progress(f"school {label}: reading users")
        users = await graph.all(f"/education/schools/{sds_id}/users?{EDU_USER_SELECT}")
        classes = await graph.all(f"/education/schools/{sds_id}/classes")
        progress(f"school {label}: {len(classes)} classes")

        async def links(gid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            async with parallel:
                members = await graph.all(f"/education/classes/{gid}/members?{EDU_USER_SELECT}")
                teachers = await graph.all(f"/education/classes/{gid}/teachers?{EDU_USER_SELECT}")
            return members, teachers

        rows: list[Any] = []
        reads: dict[int, asyncio.Task[Any]] = {}
        try:
            async with asyncio.TaskGroup() as tg:
                for c in classes:
                    gid = str(c.get("id") or "")
                    if gid and class_ended(c, today or dt.datetime.now(dt.UTC).date()):
                        rows.append((c, [], []))
                    elif gid and (groups.full or gid in changed or gid not in known_classes):
                        reads[len(rows)] = tg.create_task(links(gid))
                        rows.append((c, None, None))
                    else:
                        rows.append((c, None, None))
        except ExceptionGroup as group:
            # the first failure, as one error (the other reads were cancelled)
            raise group.exceptions[0] from None
        for i, task in reads.items():
            rows[i] = (rows[i][0], *task.result())
        schools.append(_SchoolData(item, users, rows))
    progress("reading account changes (education users delta)")
    users_delta = await _delta(graph, USERS_DELTA, state.get(USERS_DELTA_KEY), progress)
    admins: set[str] | None = None
    if admin_group:
        progress("reading the IT admin group")
        admins = {
            str(m.get("id"))
            for m in await graph.all(f"/groups/{admin_group}/transitiveMembers?$select=id")
            if m.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user"
        }
    return _Snapshot(groups, users_delta, schools, admins)


async def sync_roster(
    sm: async_sessionmaker[AsyncSession],
    graph: GraphClient,
    progress: Progress = lambda _m: None,
    *,
    admin_group: str = "",
    today: dt.date | None = None,
) -> SyncSummary:
    """Run one sync: read Graph first, then write in one short transaction (so SQLite's
    single writer is not held while Graph answers). All or nothing; raises GraphError
    (nothing changed) or SyncBusy. With ``admin_group`` the IT-admin flag of every staff
    member follows that group's members; without it, only inactive staff lose the flag."""
    summary = SyncSummary()
    async with sm() as s:
        state = {r.key: r.value for r in await s.scalars(select(SyncState))}
        known = {
            m365_id
            for m365_id in (
                await s.execute(select(SchoolClass.m365_id).where(SchoolClass.m365_id.is_not(None)))
            ).scalars()
            if m365_id is not None
        }
    snap = await _fetch(graph, state, known, progress, admin_group, today)
    progress("writing the roster")
    async with sm() as s, s.begin():
        if s.get_bind().dialect.name == "postgresql":
            got = await s.scalar(text(f"SELECT pg_try_advisory_xact_lock({_SYNC_LOCK})"))
            if not got:
                raise SyncBusy("another instance is syncing the roster now")
        roster = _Roster(s, summary)
        await roster.load()
        # new rows are flushed in batches (their ids are needed only for class links)
        by_gid = {
            c.m365_id: c
            for c in await s.scalars(select(SchoolClass).where(SchoolClass.m365_id.is_not(None)))
        }
        seen_classes: set[str] = set()
        for data in snap.schools:
            found = await _school(s, data.item, summary)
            if found is None:
                continue
            school, location = found
            for u in data.users:
                await roster.user(u, school, location)
            for c, members, teachers in data.classes:
                gid = str(c.get("id") or "")
                if not gid:
                    continue
                seen_classes.add(gid)
                name = str(c.get("displayName") or c.get("mailNickname") or gid).strip()[:120]
                cls = by_gid.get(gid)
                new = cls is None
                if cls is None:
                    cls = SchoolClass(school_id=school.id, name=name, m365_id=gid)
                    s.add(cls)
                    await s.flush()
                    by_gid[gid] = cls
                    summary.created["class"] += 1
                elif (cls.name, cls.school_id) != (name, school.id):
                    cls.name, cls.school_id = name, school.id
                    summary.updated["class"] += 1
                if members is None or teachers is None:
                    continue
                student_rows: list[Student] = []
                for u in members:
                    if u.get("primaryRole") == "student":
                        row = await roster.user(u, school, location)
                        if isinstance(row, Student):
                            student_rows.append(row)
                teacher_rows: list[Staff] = []
                for u in teachers:
                    row = await roster.user({**u, "primaryRole": "teacher"}, school, location)
                    if isinstance(row, Staff):
                        teacher_rows.append(row)
                if s.new:
                    await s.flush()
                student_ids = {r.id for r in student_rows}
                teacher_ids = {r.id for r in teacher_rows}
                a1, g1 = await _set_members(s, class_students, "student_id", cls.id, student_ids)
                a2, g2 = await _set_members(s, class_teachers, "staff_id", cls.id, teacher_ids)
                if not new and (a1 or g1 or a2 or g2):
                    summary.changed_classes.add(cls.id)
                    summary.updated["class"] += 1

        for u in snap.users.items:
            found_acc = roster.account(str(u.get("id") or ""))
            if found_acc is None:
                continue
            row, kind = found_acc
            if "@removed" in u:
                roster.set_active(row, kind, False, "removed")
            elif u.get("accountEnabled") is False:
                roster.set_active(row, kind, False, "disabled")

        # Accounts and classes synced before that Microsoft 365 no longer lists.
        for oid, row in list(roster.students.items()) + list(roster.staff.items()):
            if oid not in roster.seen:
                roster.set_active(
                    row, "student" if isinstance(row, Student) else "staff", False, "removed"
                )
        gone = (
            await s.scalars(
                select(SchoolClass).where(
                    SchoolClass.m365_id.is_not(None), SchoolClass.m365_id.not_in(seen_classes)
                )
            )
        ).all()
        for cls in gone:
            summary.changed_classes.add(cls.id)
            summary.removed["class"] += 1
            await s.delete(cls)

        for sf in roster.staff.values():
            current = bool(sf.is_admin)  # None on a row not yet inserted
            admin = bool(sf.active) and (
                current if snap.admins is None else (sf.m365_id or "") in snap.admins
            )
            if current != admin and id(sf) not in roster.fresh:
                summary.updated["it admin"] += 1
            sf.is_admin = admin

        now = utcnow()
        for key, value in (
            (GROUPS_DELTA_KEY, snap.groups.delta_link),
            (USERS_DELTA_KEY, snap.users.delta_link),
            (LAST_SUCCESS_KEY, now.isoformat()),
        ):
            await s.merge(SyncState(key=key, value=value, updated_at=now))
        summary.lost_access = {
            sf.id for sf in roster.staff.values() if roster.was_active.get(sf.id) and not sf.active
        }
    summary.throttled = graph.throttled
    return summary
