"""The dashboard endpoint, ``/ws/dashboard``: a signed-in staff member's live view.

Every ``subscribe`` and ``focus`` is authorised from the database at that moment and
audit-logged before the view opens; if the audit entry cannot be written, the view does
not open.

Fails closed, inside the protocol: a command that fails on the server (the database is
down, say) is answered ``internal_error`` with its ``id``, and the socket stays open for the
next try; a fault outside one command gets ``closed`` with ``internal_error`` and close
1011 (the dashboard reconnects). A failure before the handshake (the session look-up) is an
HTTP error answered by ``web/middleware.py``, never a half-open socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from klasblik import protocol as p
from klasblik.server.access import audit, no_view
from klasblik.server.access.rules import authorize_class, authorize_student, roster_max_age_s
from klasblik.server.auth.identity import check_origin, require_staff
from klasblik.server.auth.sessions import live_sessions
from klasblik.server.errors import AccessDenied, ApiError
from klasblik.server.keys import DB, HUB, OPEN_WEBSOCKET, SETTINGS, STORE
from klasblik.server.live.hub import Viewer
from klasblik.server.live.outbox import Outbox
from klasblik.server.locations.policy import LocationPolicy, home_of, locate, policy_of
from klasblik.server.net import client_ip
from klasblik.server.storage.blobs.base import BlobStoreError, thumbnail_name
from klasblik.server.storage.models import Staff
from klasblik.server.tasks import cancel_and_wait

__all__ = ["dashboard_ws", "session_watch_ctx"]

log = logging.getLogger(__name__)

_FAULT = "the server could not do this now; try again"
_ID = re.compile(r'"id"\s*:\s*(\d{1,9})\b')
_GONE = "the server cannot serve this connection now; reconnect"


async def dashboard_ws(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    session, staff = await require_staff(request)
    check_origin(request)
    ws = web.WebSocketResponse(max_msg_size=p.MAX_TEXT_BYTES, heartbeat=30, compress=False)
    await ws.prepare(request)
    request[OPEN_WEBSOCKET] = ws
    ip = client_ip(request)
    try:
        await _serve(app, ws, staff, ip, request.transport, session.id)
    except Exception:  # not CancelledError: shutdown and the client going away pass
        log.exception(
            "dashboard of staff %s from %s: internal error, closing it (1011)", staff.id, ip
        )
        await _close_internal(ws)
    return ws


async def _serve(
    app: web.Application,
    ws: web.WebSocketResponse,
    staff: Staff,
    ip: str,
    transport: asyncio.BaseTransport | None,
    session_id: str,
) -> None:
    viewer = Viewer(
        session_id=session_id,
        staff_id=staff.id,
        staff_name=staff.name,
        ws=ws,
        outbox=Outbox(
            ws,
            maxsize=app[SETTINGS].viewer_queue_frames,
            max_bytes=app[SETTINGS].viewer_queue_bytes,
            stall_s=app[SETTINGS].viewer_stall_s,
            transport=transport,
        ),
        ip=ip,
        location_id=locate(app, ip),
        home_location_id=home_of(app, staff.school_id, staff.location_id),
        transport=transport,
    )
    viewer.outbox.on_overflow = lambda: app[HUB].viewer_too_slow(viewer)
    handler = _Commands(app, viewer, staff.username, staff.school_id)
    viewer.outbox.start()
    try:  # from here on, whatever happens, the hub and the outbox are left clean
        app[HUB].add_viewer(viewer)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                reply = await handler.handle(msg.data)
                if reply is not None:
                    viewer.outbox.put(p.encode_message(reply))
            elif msg.type == WSMsgType.BINARY:
                viewer.outbox.put(
                    p.encode_message(
                        p.error_message(
                            p.ErrorCode.UNEXPECTED, "dashboards send no binary messages"
                        )
                    )
                )
    finally:
        await handler.end_all()
        app[HUB].remove_viewer(viewer)
        await viewer.outbox.close()


async def check_sessions(app: web.Application) -> int:
    """Close every open dashboard whose sign-in ended (expired, idle, the staff member
    disabled, the row gone); return how many were closed. All open dashboards are looked
    up in one round (``live_sessions``), not a transaction each."""
    hub = app[HUB]
    viewers = list(hub.viewers)
    if not viewers:
        return 0
    alive = await live_sessions(app[DB], {v.session_id for v in viewers}, app[SETTINGS])
    ended = [v for v in viewers if v.session_id not in alive and v in hub.viewers]
    # together: each close waits up to seconds for its browser to answer
    await asyncio.gather(
        *(
            hub.close_viewer(
                viewer,
                p.ErrorCode.SESSION_ENDED,
                "your sign-in has ended; sign in again",
                p.CloseCode.SESSION_ENDED,
            )
            for viewer in ended
        )
    )
    return len(ended)


async def session_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """A dashboard socket lives no longer than its sign-in: signing out closes it at once
    (``Hub.end_session``); an expired or idle sign-in, or a disabled staff member, is
    noticed within ``dashboard_session_check_s``. A database fault is not an ended
    session: the next round tries again."""

    async def run() -> None:
        while True:
            await asyncio.sleep(app[SETTINGS].dashboard_session_check_s)
            try:
                await check_sessions(app)
            except Exception:  # not CancelledError
                log.warning("session check of the open dashboards failed; trying again")

    task = asyncio.create_task(run(), name="dashboard sessions")
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def _close_internal(ws: web.WebSocketResponse) -> None:
    """``closed`` with ``internal_error``, then close 1011 (the outbox is stopped by now)."""
    if ws.closed:
        return
    closed = {
        "type": "closed",
        "error": {"code": p.ErrorCode.INTERNAL, "message": _GONE},
    }
    try:
        await ws.send_str(p.encode_message(closed))
        await ws.close(code=p.CloseCode.INTERNAL_ERROR, message=p.ErrorCode.INTERNAL.encode())
    except (ConnectionError, RuntimeError):
        pass


class _Commands:
    def __init__(self, app: web.Application, viewer: Viewer, username: str, school_id: int) -> None:
        self.app = app
        self.viewer = viewer
        self.username = username
        self.school_id = school_id
        self.policy: LocationPolicy | None = policy_of(app)

    async def _check_location(self, subject: str) -> None:
        """Refuse (``elsewhere``, ``outside_lesson_hours``) a teacher who may not view
        from where they are now; audit-logged like every refusal."""
        try:
            if self.policy is None:  # fail closed: no rule installed, nothing is shown
                raise AccessDenied(
                    p.ErrorCode.ELSEWHERE, "no location rule is installed: nothing can be viewed"
                )
            self.policy.check_viewer(
                self.viewer.location_id, self.viewer.home_location_id, self.viewer.ip
            )
        except AccessDenied as exc:
            await self._audit(audit.Actions.VIEW_REFUSED, subject, exc.message)
            raise

    async def handle(self, data: str) -> dict[str, Any] | None:
        """The answer to one command: its result, or its error (with its ``id``)."""
        msg_id: int | None = None
        try:
            if len(data) <= p.MAX_TEXT_BYTES:  # the id, to answer with, from checked JSON
                p.check_depth(data)
                raw = json.loads(data)
                if isinstance(raw, dict) and isinstance(raw.get("id"), int):
                    msg_id = raw["id"]
            msg = p.decode_message(data, "dashboard")
        except p.ProtocolError as exc:
            if msg_id is None and (found := _ID.search(data, 0, 4096)) is not None:
                msg_id = int(found.group(1))  # not parsed (too deep): the id it seems to have
            return p.error_message(exc.code, exc.message, msg_id)
        except (ValueError, UnicodeDecodeError):
            return p.error_message(p.ErrorCode.INVALID_JSON, "not valid JSON", msg_id)
        try:
            result = await getattr(self, "cmd_" + msg["type"])(msg)
        except (p.ProtocolError, ApiError) as exc:
            return p.error_message(exc.code, exc.message, msg_id)
        except Exception:  # not CancelledError; the socket stays open for the next try
            log.exception(
                "dashboard of staff %s: %s (id %s) failed",
                self.viewer.staff_id,
                msg["type"],
                msg_id,
            )
            return p.error_message(p.ErrorCode.INTERNAL, _FAULT, msg_id)
        return {"type": "result", "id": msg_id, "success": True, "result": result}

    async def _audit(
        self, action: str, subject: str, detail: str = "", students: list[int] | None = None
    ) -> None:
        """One entry; with ``students`` (a grid view), also one per student of the grid, in
        the same transaction, so that each student's export shows the grid views too."""
        ip, school = self.viewer.ip, self.school_id
        entries: list[audit.Entry] = [(self.username, action, subject, detail, ip, school)]
        entries += [
            (self.username, action, f"student:{sid}", f"{subject} {detail}".strip(), ip, school)
            for sid in students or []
        ]
        try:
            await audit.record_many(self.app[DB], entries)
        except Exception as exc:
            log.exception(
                "dashboard of staff %s: audit entry %s %s not written",
                self.viewer.staff_id,
                action,
                subject,
            )
            raise ApiError(
                p.ErrorCode.INTERNAL, "the view was not opened: the audit log cannot be written"
            ) from exc

    async def cmd_ping(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def cmd_subscribe(self, msg: dict[str, Any]) -> dict[str, Any]:
        class_id = msg["class_id"]
        await self._check_location(f"class:{class_id}")
        try:
            cls = await authorize_class(
                self.app[DB],
                self.viewer.staff_id,
                class_id,
                roster_max_age_s=roster_max_age_s(self.app[SETTINGS]),
            )
        except AccessDenied as exc:
            await self._audit(audit.Actions.VIEW_REFUSED, f"class:{class_id}", exc.message)
            raise
        if class_id not in self.viewer.classes:
            await self._audit(
                audit.Actions.VIEW_GRID_START,
                f"class:{class_id}",
                cls.name,
                [st.id for st in cls.students],
            )
        hub = self.app[HUB]
        if hub.cluster is not None:  # agents held by other instances
            await hub.cluster.load_presence([st.id for st in cls.students])
        stored = await self._stored_thumbnails([st.id for st in cls.students])
        thumbs = [st.id in stored for st in cls.students]
        # do-not-view: nothing of these students is shown, stored picture included
        barred = await no_view.blocked_ids(self.app[DB], [st.id for st in cls.students])
        # No await from here to the reply: the reply is queued before any frame that the
        # subscription lets through, so the grid never re-renders over a newer picture.
        hub.subscribe(self.viewer, class_id, [st.id for st in cls.students])
        students = []
        for st, has_thumb in zip(cls.students, thumbs, strict=True):
            conn = hub.agents.get(st.id)
            state = hub.status(st.id, None, self.viewer)
            if state["last_seen"] is None and st.last_seen_iso:
                state["last_seen"] = st.last_seen_iso  # offline here and elsewhere
            # the location rule for this viewer and the student's device, wherever an
            # instance holds it (its tabs from another instance come as a message later)
            shown = not hub.blocked_student(self.viewer, st.id) and st.id not in barred
            if st.id in barred:
                state = dict(state, no_view=True, mode="off")
            students.append(
                {
                    "id": st.id,
                    "display_name": st.display_name,
                    "state": state,
                    "tabs": conn.tabs if conn and shown else [],
                    "has_thumbnail": has_thumb and shown,
                }
            )
        return {
            "class": {"id": cls.id, "name": cls.name},
            "students": students,
            "grid": {"interval_ms": self.app[SETTINGS].grid_interval_ms},
        }

    async def _stored_thumbnails(self, student_ids: list[int]) -> set[int]:
        """The students of ``student_ids`` with a stored thumbnail, in one call on the
        store (not one per student); none when the store cannot tell."""
        names = {thumbnail_name(sid): sid for sid in student_ids}
        try:
            found = await self.app[STORE].existing(names)
        except BlobStoreError:
            return set()
        return {names[n] for n in found if n in names}

    async def cmd_unsubscribe(self, msg: dict[str, Any]) -> dict[str, Any]:
        class_id = msg["class_id"]
        if class_id in self.viewer.classes:
            ids = sorted(self.viewer.classes[class_id])
            self.app[HUB].unsubscribe(self.viewer, class_id)
            await self._audit(audit.Actions.VIEW_GRID_END, f"class:{class_id}", "", ids)
        return {}

    async def cmd_focus(self, msg: dict[str, Any]) -> dict[str, Any]:
        sid = msg["student_id"]
        if not any(sid in ids for ids in self.viewer.classes.values()):
            raise AccessDenied(p.ErrorCode.FORBIDDEN, "subscribe to the student's class first")
        await self._check_location(f"student:{sid}")
        try:
            student = await authorize_student(
                self.app[DB],
                self.viewer.staff_id,
                sid,
                roster_max_age_s=roster_max_age_s(self.app[SETTINGS]),
            )
        except AccessDenied as exc:
            await self._audit(audit.Actions.VIEW_REFUSED, f"student:{sid}", exc.message)
            raise
        if sid not in self.viewer.focus:
            await self._audit(
                audit.Actions.VIEW_FOCUS_START, f"student:{sid}", student.display_name
            )
        self.app[HUB].set_focus(self.viewer, sid, True)
        conn = self.app[HUB].agents.get(sid)
        return {
            "student": {
                "id": sid,
                "display_name": student.display_name,
                "state": self.app[HUB].status(sid, student.last_seen, self.viewer),
                "tabs": conn.tabs if conn and not self.app[HUB].blocked(self.viewer, conn) else [],
            }
        }

    async def cmd_unfocus(self, msg: dict[str, Any]) -> dict[str, Any]:
        sid = msg["student_id"]
        if sid in self.viewer.focus:
            self.app[HUB].set_focus(self.viewer, sid, False)
            await self._audit(audit.Actions.VIEW_FOCUS_END, f"student:{sid}")
        return {}

    async def end_all(self) -> None:
        """Close the audit trail of every view still open when the socket goes."""
        for sid in list(self.viewer.focus):
            await self._quiet_audit(audit.Actions.VIEW_FOCUS_END, f"student:{sid}")
        for class_id, ids in list(self.viewer.classes.items()):
            await self._quiet_audit(audit.Actions.VIEW_GRID_END, f"class:{class_id}", sorted(ids))

    async def _quiet_audit(
        self, action: str, subject: str, students: list[int] | None = None
    ) -> None:
        try:
            await self._audit(action, subject, "connection closed", students)
        except ApiError:
            pass
