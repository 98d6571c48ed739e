"""The IT admin API: the audit log (JSON pages and CSV), a student's export and erasure, and
the do-not-view list.

Only signed-in staff with ``is_admin`` may use it; anyone else gets 403 and the refusal is
audit-logged. An administrator sees and acts on their own school only: the audit entries of
that school, its students (a student of another school is answered like an unknown one).
Every use is audit-logged, reading the log included. Changes (export, erase, do-not-view)
are POSTs with the session's CSRF token. An export carries the stored screenshot and tab
list only with a stated reason, which is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.access import audit, no_view
from klasblik.server.access.audit_query import (
    csv_rows,
    entry_json,
    iter_entries,
    page,
    parse_filter,
    subject_names,
)
from klasblik.server.auth.identity import check_csrf, require_staff
from klasblik.server.errors import ApiError
from klasblik.server.keys import DASHBOARD_FILES, DB, HUB, LATEST, SETTINGS, STORE
from klasblik.server.net import client_ip
from klasblik.server.retention.subject_rights import (
    UnknownStudent,
    erase_student,
    export_student,
    find_student,
)
from klasblik.server.storage.blobs.base import (
    BlobStoreError,
    student_prefix,
    tabs_name,
    thumbnail_name,
)
from klasblik.server.storage.models import Staff, WebSession
from klasblik.server.web.ids import query_int

__all__ = ["setup_privacy_admin_routes"]

log = logging.getLogger(__name__)


async def _require_admin(request: web.Request) -> tuple[WebSession, Staff]:
    session, staff = await require_staff(request)
    if not staff.is_admin:
        app = request.app
        await audit.record(
            app[DB],
            staff.username,
            audit.Actions.ADMIN_REFUSED,
            f"{request.method} {request.path}"[:256],
            "not an administrator",
            client_ip(request),
        )
        raise ApiError("forbidden", "this needs an IT administrator", 403)
    return session, staff


def _schools(staff: Staff) -> frozenset[int]:
    """The schools an administrator acts for: their own."""
    return frozenset({staff.school_id})


def _filter(request: web.Request, staff: Staff) -> Any:
    try:
        return parse_filter(request.query, _schools(staff))
    except ValueError as exc:
        raise ApiError("invalid_format", str(exc), 400) from None


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    return query_int(request, name, default)  # in the database's range, else 400


def _query_detail(request: web.Request) -> str:
    return json.dumps(
        {
            k: v
            for k, v in request.query.items()
            if k in ("actor", "action", "subject", "since", "until", "before_id")
        }
    )


async def audit_json(request: web.Request) -> web.Response:
    _session, staff = await _require_admin(request)
    app = request.app
    flt = _filter(request, staff)
    await audit.record(
        app[DB],
        staff.username,
        audit.Actions.AUDIT_READ,
        "audit",
        _query_detail(request),
        client_ip(request),
        school_id=staff.school_id,
    )
    limit = _int_param(request, "limit", 100)
    before = _int_param(request, "before_id", None)
    try:
        rows, next_id = await page(app[DB], flt, 100 if limit is None else limit, before)
    except ValueError as exc:
        raise ApiError("invalid_format", str(exc), 400) from None
    names = await subject_names(app[DB], rows)
    entries = [dict(entry_json(e), subject_name=names.get(e.subject, "")) for e in rows]
    return web.json_response({"entries": entries, "next_before_id": next_id})


async def audit_csv(request: web.Request) -> web.StreamResponse:
    _session, staff = await _require_admin(request)
    app = request.app
    flt = _filter(request, staff)
    await audit.record(
        app[DB],
        staff.username,
        audit.Actions.AUDIT_EXPORT,
        "audit",
        _query_detail(request),
        client_ip(request),
        school_id=staff.school_id,
    )
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="klasblik-audit.csv"',
        }
    )
    await resp.prepare(request)
    batch: list[Any] = []
    header = True
    async for entry in iter_entries(app[DB], flt):
        batch.append(entry)
        if len(batch) >= 500:
            await resp.write(csv_rows(batch, header).encode())
            header, batch = False, []
    await resp.write(csv_rows(batch, header).encode())
    await resp.write_eof()
    return resp


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_json", "the body must be JSON", 400) from None
    if not isinstance(body, dict):
        raise ApiError("invalid_format", "the body must be a JSON object", 400)
    name = body.get("username")
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise ApiError(
            "invalid_format", "username (the student's Microsoft 365 name) is needed", 400
        )
    body["username"] = name.strip()
    return body


def _text(body: dict[str, Any], key: str, limit: int = 1000) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ApiError("invalid_format", f"{key} must be text of at most {limit} characters", 400)
    return value.strip()


async def _username(request: web.Request) -> str:
    return str((await _body(request))["username"])


async def student_export(request: web.Request) -> web.Response:
    session, staff = await _require_admin(request)
    check_csrf(request, session)
    app = request.app
    body = await _body(request)
    username = body["username"]
    include = body.get("include_latest", False)
    if not isinstance(include, bool):
        raise ApiError("invalid_format", "include_latest must be true or false", 400)
    reason = _text(body, "reason")
    if include and len(reason) < 10:
        raise ApiError(
            "reason_required",
            "the stored screenshot and tab list are exported only with a stated reason "
            "(at least 10 characters), which is logged",
            400,
        )
    try:
        archive = await export_student(
            app[DB],
            app[STORE],
            username,
            staff.username,
            client_ip(request),
            settings=app[SETTINGS],
            latest_reason=reason if include else None,
            school_ids=_schools(staff),
        )
    except UnknownStudent as exc:
        raise ApiError("not_found", str(exc), 404) from None
    except BlobStoreError as exc:
        raise ApiError("unavailable", f"blob store unavailable, try again: {exc}", 503) from None
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in username)[:80]
    return web.Response(
        body=archive,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="klasblik-{safe}.zip"'},
    )


async def student_erase(request: web.Request) -> web.Response:
    session, staff = await _require_admin(request)
    check_csrf(request, session)
    app = request.app
    username = await _username(request)
    try:
        student = await find_student(app[DB], username, _schools(staff))
        await _disconnect_agent(app, student.id)
        result = await erase_student(
            app[DB],
            app[STORE],
            username,
            staff.username,
            client_ip(request),
            app[LATEST],
            school_ids=_schools(staff),
        )
    except UnknownStudent as exc:
        raise ApiError("not_found", str(exc), 404) from None
    except BlobStoreError as exc:
        raise ApiError(
            "unavailable",
            f"blob store unavailable; nothing was erased from it, try again: {exc}",
            503,
        ) from None
    if (cluster := app[HUB].cluster) is not None:  # its agent on another instance: now too
        cluster.ask_recheck("no_view", [student.id])
    return web.json_response(
        {
            "erased": True,
            "student_id": result.student_id,
            "blobs_deleted": result.blobs_deleted,
            "class_memberships": result.class_memberships,
        }
    )


async def student_no_view(request: web.Request) -> web.Response:
    """Put a student on the do-not-view list (``"on": true``, with a reason) or take them
    off (``"on": false``). Capture stops at once; the tile says why."""
    session, staff = await _require_admin(request)
    check_csrf(request, session)
    app = request.app
    body = await _body(request)
    on = body.get("on")
    if not isinstance(on, bool):
        raise ApiError("invalid_format", "on must be true or false", 400)
    reason = _text(body, "reason")
    username = body["username"]
    entry = await no_view.entry(app[DB], username)
    try:
        student = await find_student(app[DB], username, _schools(staff))
        school_id: int | None = student.school_id
        sid: int | None = student.id
    except UnknownStudent:
        # An erased student is known only by the list entry of their own school.
        if entry is None or entry.school_id not in _schools(staff):
            raise ApiError("not_found", f"no student with username {username!r}", 404) from None
        school_id, sid = entry.school_id, None
    subject = f"student:{sid}" if sid is not None else "student:erased"
    if on:
        await no_view.block(app[DB], username, school_id, "it", staff.username, reason)
        action = audit.Actions.NO_VIEW_SET
    else:
        await no_view.clear(app[DB], username)
        action = audit.Actions.NO_VIEW_CLEAR
    await audit.record(
        app[DB], staff.username, action, subject, reason, client_ip(request), school_id=school_id
    )
    if sid is not None:
        app[HUB].set_no_view(sid, on)
        if (cluster := app[HUB].cluster) is not None:  # the instance holding the agent: now
            cluster.ask_recheck("no_view", [sid])
        if on:  # restriction: the stored screenshot and tab list go too
            app[LATEST].forget(student_prefix(sid))
            try:
                await app[STORE].delete([thumbnail_name(sid), tabs_name(sid)])
            except BlobStoreError as exc:
                log.warning("do-not-view of student %s: stored items not deleted: %s", sid, exc)
    return web.json_response({"username": username.lower(), "do_not_view": on})


async def _disconnect_agent(app: web.Application, student_id: int) -> None:
    conn = app[HUB].agents.get(student_id)
    if conn is None:
        return
    app[HUB].detach_agent(conn)
    await conn.outbox.close()
    if not conn.ws.closed:
        try:
            async with asyncio.timeout(2):
                await conn.ws.close(code=p.CloseCode.ACCESS_REVOKED, message=b"student erased")
        except (TimeoutError, ConnectionError, RuntimeError):
            pass


async def audit_page(request: web.Request) -> web.StreamResponse:
    await _require_admin(request)
    path = request.app[DASHBOARD_FILES] / "admin-audit.html"
    if not path.is_file():
        raise ApiError("not_found", "dashboard file admin-audit.html is missing", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


def setup_privacy_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/audit", audit_page)
    r.add_get("/api/admin/audit", audit_json)
    r.add_get("/api/admin/audit.csv", audit_csv)
    r.add_post("/api/admin/students/export", student_export)
    r.add_post("/api/admin/students/erase", student_erase)
    r.add_post("/api/admin/students/no-view", student_no_view)
