"""The IT admin API: the audit log (JSON pages and CSV), and a student's export and erasure.

Only signed-in staff with ``is_admin`` may use it; anyone else gets 403 and the refusal is
audit-logged. Changes (export, erase) are POSTs with the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.access import audit
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
from klasblik.server.keys import DASHBOARD_FILES, DB, HUB, LATEST, STORE
from klasblik.server.net import client_ip
from klasblik.server.retention.subject_rights import (
    UnknownStudent,
    erase_student,
    export_student,
    find_student,
)
from klasblik.server.storage.blobs.base import BlobStoreError
from klasblik.server.storage.models import Staff, WebSession

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


def _filter(request: web.Request) -> Any:
    try:
        return parse_filter(request.query)
    except ValueError as exc:
        raise ApiError("invalid_format", str(exc), 400) from None


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError("invalid_format", f"{name} must be a whole number", 400) from None


async def audit_json(request: web.Request) -> web.Response:
    await _require_admin(request)
    app = request.app
    flt = _filter(request)
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
    flt = _filter(request)
    await audit.record(
        app[DB],
        staff.username,
        audit.Actions.AUDIT_EXPORT,
        "audit",
        json.dumps(
            {
                k: v
                for k, v in request.query.items()
                if k in ("actor", "action", "subject", "since", "until")
            }
        ),
        client_ip(request),
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


async def _username(request: web.Request) -> str:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_json", "the body must be JSON", 400) from None
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise ApiError(
            "invalid_format", "username (the student's Microsoft 365 name) is needed", 400
        )
    return name.strip()


async def student_export(request: web.Request) -> web.Response:
    session, staff = await _require_admin(request)
    check_csrf(request, session)
    app = request.app
    username = await _username(request)
    try:
        archive = await export_student(
            app[DB], app[STORE], username, staff.username, client_ip(request)
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
        student = await find_student(app[DB], username)
        await _disconnect_agent(app, student.id)
        result = await erase_student(
            app[DB], app[STORE], username, staff.username, client_ip(request), app[LATEST]
        )
    except UnknownStudent as exc:
        raise ApiError("not_found", str(exc), 404) from None
    except BlobStoreError as exc:
        raise ApiError(
            "unavailable",
            f"blob store unavailable; nothing was erased from it, try again: {exc}",
            503,
        ) from None
    return web.json_response(
        {
            "erased": True,
            "student_id": result.student_id,
            "blobs_deleted": result.blobs_deleted,
            "class_memberships": result.class_memberships,
        }
    )


async def _disconnect_agent(app: web.Application, student_id: int) -> None:
    conn = app[HUB].agents.get(student_id)
    if conn is None:
        return
    app[HUB].detach_agent(conn)
    await conn.outbox.close()
    if not conn.ws.closed:
        try:
            await asyncio.wait_for(
                conn.ws.close(code=p.CloseCode.ACCESS_REVOKED, message=b"student erased"),
                timeout=2,
            )
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
