"""Reading the audit log for IT: filters, pages (newest first) and CSV. Read-only: the only
code that deletes audit entries is the retention step in ``retention.py``."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import AuditEntry, Location, SchoolClass, Staff, Student

__all__ = [
    "CSV_COLUMNS",
    "AuditFilter",
    "csv_rows",
    "entry_json",
    "iter_entries",
    "page",
    "parse_filter",
    "subject_names",
]

MAX_LIMIT = 500
CSV_COLUMNS = ("id", "at", "actor", "action", "subject", "detail", "ip")


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    #: Only entries of these schools (an IT admin's own); None: every entry (the CLI).
    #: An entry without a school counts when its actor is staff of one of them.
    school_ids: frozenset[int] | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.school_ids is not None:
            ids = sorted(self.school_ids)
            query = query.where(
                or_(
                    AuditEntry.school_id.in_(ids),
                    and_(
                        AuditEntry.school_id.is_(None),
                        AuditEntry.actor.in_(
                            select(Staff.username).where(Staff.school_id.in_(ids))
                        ),
                    ),
                )
            )
        if self.actor:
            query = query.where(AuditEntry.actor == self.actor)
        if self.action:
            if self.action.endswith("*"):
                query = query.where(AuditEntry.action.startswith(self.action[:-1], autoescape=True))
            else:
                query = query.where(AuditEntry.action == self.action)
        if self.subject:
            query = query.where(AuditEntry.subject == self.subject)
        if self.since:
            query = query.where(AuditEntry.at >= self.since)
        if self.until:
            query = query.where(AuditEntry.at < self.until)
        return query


def _when(name: str, raw: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date or time, got {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_filter(query: Mapping[str, str], school_ids: frozenset[int] | None = None) -> AuditFilter:
    """Filters from query parameters; raise ValueError naming the bad one."""
    for key in ("actor", "action", "subject"):
        if len(query.get(key, "")) > 256:
            raise ValueError(f"{key} is longer than 256 characters")
    return AuditFilter(
        actor=query.get("actor") or None,
        action=query.get("action") or None,
        subject=query.get("subject") or None,
        since=_when("since", query["since"]) if query.get("since") else None,
        until=_when("until", query["until"]) if query.get("until") else None,
        school_ids=school_ids,
    )


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _iso(e.at),
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "detail": e.detail,
        "ip": e.ip,
    }


async def page(
    sm: async_sessionmaker[AsyncSession],
    flt: AuditFilter,
    limit: int = 100,
    before_id: int | None = None,
) -> tuple[list[AuditEntry], int | None]:
    """Up to ``limit`` entries, newest first, older than ``before_id``; and the next cursor."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    query = flt.apply(select(AuditEntry))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    query = query.order_by(AuditEntry.id.desc()).limit(limit + 1)
    async with sm() as session:
        rows = list(await session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def iter_entries(
    sm: async_sessionmaker[AsyncSession], flt: AuditFilter, chunk: int = 1000
) -> AsyncIterator[AuditEntry]:
    """Every matching entry, oldest first, read in chunks."""
    last = 0
    while True:
        query = flt.apply(select(AuditEntry)).where(AuditEntry.id > last)
        async with sm() as session:
            rows = list(await session.scalars(query.order_by(AuditEntry.id).limit(chunk)))
        if not rows:
            return
        for row in rows:
            yield row
        last = rows[-1].id


def _cell(value: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def csv_rows(entries: list[AuditEntry], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for e in entries:
        j = entry_json(e)
        writer.writerow([_cell(str(j[c])) if j[c] is not None else "" for c in CSV_COLUMNS])
    return buf.getvalue()


_NAMED: dict[str, tuple[Any, str]] = {
    "student": (Student, "display_name"),
    "class": (SchoolClass, "name"),
    "location": (Location, "name"),
}


async def subject_names(
    sm: async_sessionmaker[AsyncSession], entries: list[AuditEntry]
) -> dict[str, str]:
    """Names for subjects such as ``student:5`` (the student's display name), ``class:3``
    and ``location:2``, for the audit page; a subject whose row is gone keeps no name."""
    wanted: dict[str, set[int]] = {}
    for e in entries:
        kind, _, ident = e.subject.partition(":")
        if kind in _NAMED and ident.isdigit():
            wanted.setdefault(kind, set()).add(int(ident))
    names: dict[str, str] = {}
    async with sm() as session:
        for kind, ids in wanted.items():
            model, column = _NAMED[kind]
            key: Any = model.id
            rows = await session.execute(select(key, getattr(model, column)).where(key.in_(ids)))
            for ident, name in rows:
                names[f"{kind}:{ident}"] = str(name)
    return names
