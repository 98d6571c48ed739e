"""Retention: the blob sweep (nothing stored older than 48 hours) and the nightly purge.

The sweep deletes every blob whose store timestamp is older than ``sweep_max_age_h``. The
purge removes, in this order, each step in committed batches so that an interrupted run
leaves nothing inconsistent and the next run finishes the work:

1. expired dashboard sessions;
2. audit entries older than ``audit_retention_months``, and remote-lesson periods that ended
   before that (they are a record of the same kind);
3. student records (their blobs first, then the rows) and teacher records created before
   the end of the last school year (and then the roster's delta links, so that the next
   Microsoft 365 sync lists those who continue afresh);
4. orphaned blobs (of students that no longer exist);
5. the sweep (which also removes ``.tmp-*`` leftovers of writes that were cut off).

Every function takes ``now``, a callable returning an aware UTC datetime, so tests can move
time. ``dry_run`` collects what would go without deleting anything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import (
    BlobStore,
    student_prefix,
    tabs_name,
    thumbnail_name,
    thumbnail_place_name,
)
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.storage.models import (
    AuditEntry,
    RemoteMode,
    Staff,
    Student,
    SyncState,
    WebSession,
    utcnow,
)

__all__ = [
    "BATCH",
    "Clock",
    "Progress",
    "PurgeReport",
    "months_before",
    "purge",
    "school_year_boundary",
    "sweep",
]

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
#: Called after each batch: (step name, items done so far in that step).
Progress = Callable[[str, int], None]

#: Rows or blobs per committed batch.
BATCH = 1000
#: Blob delete batches in flight at once during a sweep.
_PARALLEL_DELETES = 2
_STUDENT_BLOB = re.compile(r"^students/(\d+)/")
#: Listed blobs per orphan check: one query with this many ids, built and read on the
#: event loop, stays a few milliseconds (a thousand took tens).
_ORPHAN_CHUNK = 250
#: A temporary file of a write older than this was cut off (a write takes milliseconds).
TEMP_LEFTOVER_AGE = dt.timedelta(minutes=10)


@dataclass
class PurgeReport:
    """What a purge removed (or, in a dry run, would remove)."""

    dry_run: bool = False
    sessions: int = 0
    audit_entries: int = 0
    remote_modes: int = 0
    students: list[str] = field(default_factory=list)
    staff: list[str] = field(default_factory=list)
    student_blobs: int = 0
    orphaned_blobs: list[str] = field(default_factory=list)
    expired_blobs: list[str] = field(default_factory=list)
    expired_blob_count: int = 0
    school_year_boundary: dt.datetime | None = None
    audit_cutoff: dt.datetime | None = None

    def counts(self) -> dict[str, int]:
        """What was removed, by kind (for ``/metrics``)."""
        return {
            "sessions": self.sessions,
            "audit_entries": self.audit_entries,
            "students": len(self.students),
            "staff": len(self.staff),
            "student_blobs": self.student_blobs,
            "orphaned_blobs": len(self.orphaned_blobs),
            "expired_blobs": self.expired_blob_count,
        }

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb}: {self.sessions} expired session(s), {self.audit_entries} audit "
            f"entr{'y' if self.audit_entries == 1 else 'ies'}, {self.remote_modes} ended "
            f"remote-lesson period(s), {len(self.students)} student "
            f"record(s) with {self.student_blobs} blob(s), {len(self.staff)} staff record(s), "
            f"{len(self.orphaned_blobs)} orphaned blob(s), {self.expired_blob_count} blob(s) "
            f"past the sweep age"
        )


def _noop(_step: str, _done: int) -> None:
    return None


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day and time ``months`` calendar months earlier (clamped to month end)."""
    total = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


def school_year_boundary(now: dt.datetime, year_end: str, tz_name: str) -> dt.datetime | None:
    """The start (UTC) of the day after the last school-year end that has passed, or None.

    ``year_end`` is ``MM-DD`` (every year) or ``YYYY-MM-DD`` (one date). Records created
    before the returned moment belong to an ended school year.
    """
    tz = zoneinfo.ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    if len(year_end) == 5:
        month, day = int(year_end[:2]), int(year_end[3:])
        end = _date_or_last(today.year, month, day)
        if end >= today:
            end = _date_or_last(today.year - 1, month, day)
    else:
        end = dt.date.fromisoformat(year_end)
        if end >= today:
            return None
    start = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return start.astimezone(dt.UTC)


def _date_or_last(year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:  # 02-29 outside a leap year
        return dt.date(year, month, day - 1)


async def sweep(
    store: BlobStore,
    now: Clock,
    max_age: dt.timedelta,
    *,
    dry_run: bool = False,
    progress: Progress = _noop,
    names: list[str] | None = None,
) -> int:
    """Delete every blob whose store timestamp is older than ``max_age``; return how many.

    Deletes run while the listing goes on, a few batches at a time. With ``names`` given, the
    names of the (would-be) deleted blobs are appended to it.
    """
    cutoff = now() - max_age
    done = 0
    pending: set[asyncio.Task[int]] = set()
    batch: list[str] = []

    async def flush(chunk: list[str]) -> None:
        nonlocal done
        if dry_run:
            done += len(chunk)
            progress("expired blobs", done)
            return
        while len(pending) >= _PARALLEL_DELETES:
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                pending.discard(task)
                done += task.result()
                progress("expired blobs", done)
        pending.add(asyncio.ensure_future(store.delete(chunk)))

    try:
        async for info in store.list(""):
            if info.last_modified < cutoff:
                batch.append(info.name)
                if names is not None:
                    names.append(info.name)
                if len(batch) >= BATCH:
                    await flush(batch)
                    batch = []
        if batch:
            await flush(batch)
        for task in asyncio.as_completed(list(pending)):
            done += await task
            progress("expired blobs", done)
        pending.clear()
        leftovers = getattr(store, "sweep_temporaries", None)
        if leftovers is not None and not dry_run:
            done += await leftovers(now() - TEMP_LEFTOVER_AGE)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return done


async def purge(
    sm: async_sessionmaker[AsyncSession],
    store: BlobStore,
    settings: Settings,
    now: Clock = utcnow,
    *,
    dry_run: bool = False,
    progress: Progress = _noop,
    latest: LatestWriter | None = None,
) -> PurgeReport:
    """Run every retention step once; see the module text for the order and why."""
    report = PurgeReport(dry_run=dry_run)
    moment = now()
    report.sessions = await _purge_sessions(sm, moment, settings, dry_run)
    progress("expired sessions", report.sessions)
    report.audit_cutoff = months_before(moment, settings.audit_retention_months)
    report.audit_entries = await _purge_audit(sm, report.audit_cutoff, dry_run, progress)
    report.remote_modes = await _purge_remote_modes(sm, report.audit_cutoff, dry_run)
    boundary = school_year_boundary(moment, settings.school_year_end, settings.timezone)
    report.school_year_boundary = boundary
    if boundary is not None:
        await _purge_students(sm, store, boundary, report, dry_run, progress, latest)
        await _purge_staff(sm, boundary, report, dry_run, progress)
        if (report.students or report.staff) and not dry_run:
            await _restart_roster_sync(sm)
    await _purge_orphans(sm, store, report, dry_run, progress)
    report.expired_blob_count = await sweep(
        store,
        lambda: moment,
        dt.timedelta(hours=settings.sweep_max_age_h),
        dry_run=dry_run,
        progress=progress,
        names=report.expired_blobs,
    )
    return report


async def _purge_sessions(
    sm: async_sessionmaker[AsyncSession], moment: dt.datetime, settings: Settings, dry_run: bool
) -> int:
    idle = moment - dt.timedelta(seconds=settings.session_idle_s)
    expired = or_(WebSession.expires_at <= moment, WebSession.last_used_at <= idle)
    async with sm() as session, session.begin():
        ids = list(await session.scalars(select(WebSession.id).where(expired)))
        if ids and not dry_run:
            await session.execute(delete(WebSession).where(WebSession.id.in_(ids)))
    return len(ids)


async def _purge_audit(
    sm: async_sessionmaker[AsyncSession], cutoff: dt.datetime, dry_run: bool, progress: Progress
) -> int:
    """The only path that deletes audit entries: those past the retention period."""
    done = 0
    last_id = 0
    while True:
        async with sm() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(AuditEntry.id)
                    .where(AuditEntry.at < cutoff, AuditEntry.id > last_id)
                    .order_by(AuditEntry.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                return done
            if not dry_run:
                await session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
        last_id = ids[-1]
        done += len(ids)
        progress("audit entries", done)


async def _purge_remote_modes(
    sm: async_sessionmaker[AsyncSession], cutoff: dt.datetime, dry_run: bool
) -> int:
    """Remote-lesson periods that ended (or ran out) before the audit cutoff."""
    old = or_(
        RemoteMode.ended_at < cutoff,
        (RemoteMode.ended_at.is_(None)) & (RemoteMode.until < cutoff),
    )
    async with sm() as session, session.begin():
        ids = list(await session.scalars(select(RemoteMode.id).where(old)))
        if ids and not dry_run:
            await session.execute(delete(RemoteMode).where(RemoteMode.id.in_(ids)))
    return len(ids)


async def _purge_students(
    sm: async_sessionmaker[AsyncSession],
    store: BlobStore,
    boundary: dt.datetime,
    report: PurgeReport,
    dry_run: bool,
    progress: Progress,
    latest: LatestWriter | None,
) -> None:
    """Blobs before rows, batch by batch: a run cut off between the two leaves rows whose
    blobs are already gone, and the next run deletes those rows."""
    last_id = 0
    while True:
        async with sm() as session:
            rows = (
                await session.execute(
                    select(Student.id, Student.username)
                    .where(Student.created_at < boundary, Student.id > last_id)
                    .order_by(Student.id)
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        ids = [r[0] for r in rows]
        report.students.extend(r[1] for r in rows)
        if not dry_run:
            if latest is not None:
                for sid in ids:
                    latest.forget(student_prefix(sid))
            names = [
                n
                for sid in ids
                for n in (thumbnail_name(sid), thumbnail_place_name(sid), tabs_name(sid))
            ]
            report.student_blobs += await store.delete(names)
            async with sm() as session, session.begin():
                await session.execute(delete(Student).where(Student.id.in_(ids)))
        progress("student records", len(report.students))


async def _purge_staff(
    sm: async_sessionmaker[AsyncSession],
    boundary: dt.datetime,
    report: PurgeReport,
    dry_run: bool,
    progress: Progress,
) -> None:
    last_id = 0
    while True:
        async with sm() as session, session.begin():
            rows = (
                await session.execute(
                    select(Staff.id, Staff.username)
                    .where(Staff.created_at < boundary, Staff.id > last_id)
                    .order_by(Staff.id)
                    .limit(BATCH)
                )
            ).all()
            if not rows:
                return
            if not dry_run:
                await session.execute(delete(Staff).where(Staff.id.in_([r[0] for r in rows])))
        last_id = rows[-1][0]
        report.staff.extend(r[1] for r in rows)
        progress("staff records", len(report.staff))


async def _restart_roster_sync(sm: async_sessionmaker[AsyncSession]) -> None:
    """Forget the roster's Graph delta links, so that the next sync reads every class and
    its members afresh and lists the students and teachers who continue."""
    from klasblik.server.roster.sync import GROUPS_DELTA_KEY, USERS_DELTA_KEY

    async with sm() as session, session.begin():
        await session.execute(
            delete(SyncState).where(SyncState.key.in_([GROUPS_DELTA_KEY, USERS_DELTA_KEY]))
        )


async def _purge_orphans(
    sm: async_sessionmaker[AsyncSession],
    store: BlobStore,
    report: PurgeReport,
    dry_run: bool,
    progress: Progress,
) -> None:
    """Delete blobs under ``students/`` whose student does not exist (any more)."""
    chunk: list[tuple[str, int | None]] = []

    async def settle(items: list[tuple[str, int | None]]) -> None:
        wanted = {sid for _, sid in items if sid is not None}
        async with sm() as session:
            existing = (
                set(await session.scalars(select(Student.id).where(Student.id.in_(wanted))))
                if wanted
                else set()
            )
        orphans = [name for name, sid in items if sid is None or sid not in existing]
        if orphans and not dry_run:
            await store.delete(orphans)
        report.orphaned_blobs.extend(orphans)
        if orphans:
            progress("orphaned blobs", len(report.orphaned_blobs))

    async for info in store.list("students/"):
        m = _STUDENT_BLOB.match(info.name)
        chunk.append((info.name, int(m.group(1)) if m else None))
        if len(chunk) >= _ORPHAN_CHUNK:
            await settle(chunk)
            chunk = []
    if chunk:
        await settle(chunk)
