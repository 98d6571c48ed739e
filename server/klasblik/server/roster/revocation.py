"""Access follows the roster: staff who lost access (disabled or removed in Microsoft 365)
lose their sessions and open dashboard views, and every open view is checked again, from the
database, against who may see whom now (``access/rules.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik import protocol as p
from klasblik.server.access import no_view
from klasblik.server.access.rules import class_access
from klasblik.server.auth.sessions import end_sessions_of
from klasblik.server.errors import AccessDenied
from klasblik.server.live.hub import Hub

__all__ = ["recheck_no_view", "recheck_viewers", "revoke_lost_access"]

log = logging.getLogger(__name__)


async def revoke_lost_access(
    sm: async_sessionmaker[AsyncSession], hub: Hub | None, staff_ids: set[int]
) -> int:
    """End the sessions of these staff members and close their views; return views closed."""
    closed = 0
    for staff_id in sorted(staff_ids):
        await end_sessions_of(sm, staff_id)
        if hub is not None:
            closed += await hub.revoke_staff(
                staff_id, "your account is no longer active in the school's roster"
            )
    return closed


async def recheck_viewers(
    sm: async_sessionmaker[AsyncSession], hub: Hub, roster_max_age_s: float = 0.0
) -> int:
    """Close every open view whose staff member may no longer see a class it shows, that
    shows a student who left the class, or (``roster_max_age_s``) whose roster has gone too
    long without a successful sync; return how many were closed. All open views are
    checked in one round of queries (``class_access``), not a round each."""
    viewers = list(hub.viewers)
    verdicts = await class_access(
        sm,
        {(v.staff_id, c) for v in viewers for c in v.classes},
        roster_max_age_s=roster_max_age_s,
    )
    closed = 0
    for viewer in viewers:
        for class_id, shown in list(viewer.classes.items()):
            reason = None
            code = p.ErrorCode.FORBIDDEN
            verdict = verdicts.get((viewer.staff_id, class_id))
            if verdict is None:  # a class opened while the check ran: the next one sees it
                continue
            if isinstance(verdict, AccessDenied):
                reason, code = verdict.message, verdict.code
            elif shown - verdict:
                reason = "the class roster changed; open the class again"
            if reason is not None:
                log.info("closing view %s of staff %s: %s", viewer.id, viewer.staff_id, reason)
                await hub.close_viewer(viewer, code, reason, p.CloseCode.ACCESS_REVOKED)
                closed += 1
                break
    return closed


async def recheck_no_view(
    sm: async_sessionmaker[AsyncSession], hub: Hub, student_ids: Iterable[int] | None = None
) -> int:
    """Apply the do-not-view list to the agents connected here (of ``student_ids``, or
    all): an entry set or cleared on another instance; return how many changed. The
    instance that takes IT's request applies it at once and asks the others through the
    cluster link (``kb:recheck``) to do it now; every ``access_check_s`` all are checked
    again, for a request that Redis did not carry."""
    ids = sorted(hub.agents if student_ids is None else set(student_ids) & hub.agents.keys())
    if not ids:
        return 0
    blocked = await no_view.not_to_capture(sm, ids)
    changed = 0
    for sid in ids:
        on = sid in blocked
        if on != (sid in hub.no_view):
            hub.set_no_view(sid, on)
            changed += 1
    return changed
