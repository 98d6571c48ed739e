"""Roster-sync health: when the roster last followed Microsoft 365, the last failure, and
whether the app token carries the permissions Klasblik needs (no more, no fewer).

The times live in the database (``sync_state``: ``roster.sync.ok`` is written in the
sync's own transaction, ``roster.sync.error`` after a failed run), so every instance and
``klasblik roster sync`` from cron report the same. The permission check reads the
``roles`` claim of the app token the process last got (``M365Client.app_roles``).

:func:`roster_health` is the one function ``/healthz`` and the admin page call.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.access.rules import ROSTER_SYNC_OK_KEY
from klasblik.server.settings import Settings
from klasblik.server.storage.models import SyncState, utcnow

__all__ = [
    "LAST_ERROR_KEY",
    "PermissionReport",
    "needed_permissions",
    "permission_report",
    "record_failure",
    "roster_health",
]

log = logging.getLogger(__name__)

LAST_ERROR_KEY = "roster.sync.error"

#: Every Graph call of the sync is on the education API: Microsoft's permission tables
#: name EduRoster.Read.All (application) for a class's members and teachers and a
#: school's users and classes (educationclass-list-members, educationclass-list-teachers);
#: the two delta functions need less (EduRoster.ReadBasic.All), so Read.All covers them.
EDU_ROSTER = "EduRoster.Read.All"
#: Only with ``m365_admin_group``: ``/groups/{id}/transitiveMembers``.
GROUP_MEMBERS = "GroupMember.Read.All"
#: Higher permissions that also do the job (they work, but are more than needed).
_COVERED_BY: dict[str, frozenset[str]] = {
    EDU_ROSTER: frozenset({"EduRoster.ReadWrite.All"}),
    GROUP_MEMBERS: frozenset(
        {"Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
    ),
}


def needed_permissions(settings: Settings) -> frozenset[str]:
    """The application permissions this configuration needs, and nothing else."""
    return frozenset({EDU_ROSTER, *([GROUP_MEMBERS] if settings.m365_admin_group else [])})


@dataclass(frozen=True)
class PermissionReport:
    granted: frozenset[str]
    missing: frozenset[str]
    superfluous: frozenset[str]

    @property
    def ok(self) -> bool:
        return not self.missing

    def text(self) -> str:
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(sorted(self.missing)))
        if self.superfluous:
            parts.append("superfluous " + ", ".join(sorted(self.superfluous)))
        return "; ".join(parts) or "exactly what is needed"


def permission_report(settings: Settings, roles: frozenset[str]) -> PermissionReport:
    """Compare the token's roles with what is needed: a need met only by a higher
    permission is not missing, but that permission is superfluous."""
    need = needed_permissions(settings)
    missing = frozenset(n for n in need if n not in roles and not roles & _COVERED_BY[n])
    return PermissionReport(roles, missing, roles - need)


def log_permissions(settings: Settings, roles: frozenset[str] | None) -> None:
    """One log line: warning when anything is missing or superfluous."""
    if roles is None:
        log.warning("Microsoft 365 app token carries no roles claim: no application permission")
        return
    report = permission_report(settings, roles)
    if report.missing or report.superfluous:
        log.warning(
            "Microsoft 365 app permissions: %s (needed: %s; docs/microsoft365.md)",
            report.text(),
            ", ".join(sorted(needed_permissions(settings))),
        )
    else:
        log.info("Microsoft 365 app permissions: %s", report.text())


async def record_failure(sm: async_sessionmaker[AsyncSession], code: str, message: str) -> None:
    """Keep the last failure (its code and message) for the health report."""
    async with sm() as s, s.begin():
        await s.merge(
            SyncState(key=LAST_ERROR_KEY, value=f"{code}: {message}"[:1000], updated_at=utcnow())
        )


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


async def roster_health(
    sm: async_sessionmaker[AsyncSession],
    settings: Settings,
    app_roles: frozenset[str] | None = None,
    app_roles_at: dt.datetime | None = None,
    *,
    detail: bool = False,
) -> dict[str, Any] | None:
    """The roster-sync part of ``/healthz`` (``detail``: with the last error's message,
    for IT's admin page); None when Microsoft 365 is not configured."""
    if not settings.m365_tenant_id:
        return None
    async with sm() as s:
        ok = await s.get(SyncState, ROSTER_SYNC_OK_KEY)
        err = await s.get(SyncState, LAST_ERROR_KEY)
    now = dt.datetime.now(dt.UTC)
    max_age_s = settings.roster_max_age_h * 3600
    age = (now - _aware(ok.updated_at)).total_seconds() if ok else None
    out: dict[str, Any] = {
        "last_success": _aware(ok.updated_at).isoformat() if ok else None,
        "age_s": round(age) if age is not None else None,
        "max_age_h": settings.roster_max_age_h,
        "stale": bool(max_age_s) and (age is None or age > max_age_s),
        "last_error": None,
        "failing": False,
    }
    if err is not None:
        code, _, message = err.value.partition(": ")
        error: dict[str, Any] = {"at": _aware(err.updated_at).isoformat(), "code": code}
        if detail:
            error["message"] = message
        out["last_error"] = error
        out["failing"] = ok is None or _aware(err.updated_at) > _aware(ok.updated_at)
    if app_roles is None:
        out["permissions"] = {"checked_at": None}
    else:
        report = permission_report(settings, app_roles)
        out["permissions"] = {
            "checked_at": app_roles_at.isoformat() if app_roles_at else None,
            "ok": report.ok,
            "needed": sorted(needed_permissions(settings)),
            "missing": sorted(report.missing),
            "superfluous": sorted(report.superfluous),
        }
    return out


def degraded(health: dict[str, Any] | None) -> bool:
    """True when the roster part should make ``/healthz`` say degraded."""
    if health is None:
        return False
    perms = health.get("permissions") or {}
    return bool(health["stale"] or health["failing"] or perms.get("ok") is False)
