"""The dashboard's JSON API: sign-in options, the demo sign-in, sign-out, who am I, a
student's stored thumbnail, and health. Thin handlers: the rules live in ``access/``,
``locations/`` and ``auth/``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from klasblik.server.access import audit
from klasblik.server.access.rules import authorize_student, classes_of, staff_named
from klasblik.server.auth.identity import check_csrf, check_origin, require_staff
from klasblik.server.auth.sessions import COOKIE, create_session, end_session, set_session_cookie
from klasblik.server.errors import AccessDenied, ApiError
from klasblik.server.keys import DB, DEMO, ENGINE, HUB, LATEST, M365, NOTICES, SETTINGS, STORE
from klasblik.server.locations.policy import policy_of
from klasblik.server.locations.rule import ELSEWHERE
from klasblik.server.net import client_ip, is_loopback
from klasblik.server.storage.blobs.base import BlobStoreError, thumbnail_name
from klasblik.server.storage.engine import ping
from klasblik.server.storage.models import Staff

__all__ = [
    "auth_options",
    "check_thumbnail_location",
    "demo_signin",
    "healthz",
    "location_notices",
    "me",
    "signout",
    "student_thumbnail",
]


async def auth_options(request: web.Request) -> web.Response:
    app = request.app
    demo = bool(app[SETTINGS].demo) and is_loopback(client_ip(request))
    return web.json_response({"demo": demo, "microsoft": M365 in app})


async def demo_signin(request: web.Request) -> web.StreamResponse:
    """The demo sign-in: demo mode only, from this machine only, as the demo teacher (or,
    with the form field ``who=admin``, as the demo IT admin)."""
    app = request.app
    ip = client_ip(request)
    if not app[SETTINGS].demo:
        raise ApiError("forbidden", "the demo sign-in exists only in demo mode", 403)
    if not is_loopback(ip):
        raise ApiError("forbidden", "the demo sign-in works only from this machine", 403)
    check_origin(request)
    demo_state = app.get(DEMO)
    who = (await request.post()).get("who", "teacher")
    username = None
    if demo_state is not None:
        username = demo_state.admin if who == "admin" else demo_state.teacher
    staff = await staff_named(app[DB], username) if username else None
    if staff is None:
        raise ApiError("not_found", "demo teacher missing: demo data not seeded", 404)
    token, _row = await create_session(app[DB], staff.id, ip, app[SETTINGS])
    await audit.record(app[DB], staff.username, audit.Actions.SIGN_IN, "demo", "demo sign-in", ip)
    resp = web.HTTPSeeOther("/admin/locations" if who == "admin" else "/")
    set_session_cookie(resp, token, request.app[SETTINGS])
    raise resp


async def signout(request: web.Request) -> web.StreamResponse:
    session, staff = await require_staff(request)
    check_csrf(request, session)
    app = request.app
    token = request.cookies.get(COOKIE, "")
    await end_session(app[DB], token)
    await app[HUB].end_session(session.id, "signed out")
    await audit.record(app[DB], staff.username, audit.Actions.SIGN_OUT, "", "", client_ip(request))
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.Response:
    session, staff = await require_staff(request)
    app = request.app
    classes = await classes_of(app[DB], staff)
    return web.json_response(
        {
            "user": {"name": staff.name, "username": staff.username, "is_admin": staff.is_admin},
            "classes": [{"id": c.id, "name": c.name, "student_count": n} for c, n in classes],
            "csrf_token": session.csrf_token,
            "demo": bool(app[SETTINGS].demo),
            "notices": app.get(NOTICES, []) + location_notices(request, staff),
        }
    )


async def student_thumbnail(request: web.Request) -> web.StreamResponse:
    _session, staff = await require_staff(request)
    app = request.app
    try:
        student_id = int(request.match_info["student_id"])
    except ValueError:
        raise ApiError("invalid_format", "student id must be a number", 400) from None
    try:
        await authorize_student(app[DB], staff.id, student_id)
        await check_thumbnail_location(request, staff, student_id)
    except AccessDenied as exc:
        await audit.record(
            app[DB],
            staff.username,
            audit.Actions.VIEW_REFUSED,
            f"student:{student_id}",
            f"stored thumbnail: {exc.message}",
            client_ip(request),
        )
        raise
    try:
        blob = await app[STORE].get(thumbnail_name(student_id))
    except BlobStoreError as exc:
        raise ApiError("unavailable", f"blob store unavailable: {exc}", 503) from None
    if blob is None:
        raise ApiError("not_found", "no stored thumbnail for this student", 404)
    return web.Response(
        body=blob.data,
        content_type=blob.content_type,
        headers={"Last-Modified": blob.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    status = {"status": "ok", "database": "ok", "blob_store": "ok"}
    code = 200
    try:
        await ping(app[ENGINE])
    except Exception as exc:
        status["database"] = f"down: {type(exc).__name__}"
        status["status"] = "down"
        code = 503
    cluster = app[HUB].cluster
    if app[SETTINGS].redis_url:
        status["redis"] = cluster.health if cluster is not None else "down: stopped"
        if status["redis"] != "ok" and status["status"] == "ok":
            status["status"] = "degraded"
    if app[LATEST].degraded:
        status["blob_store"] = f"degraded: {app[LATEST].last_error}"
        if status["status"] == "ok":
            status["status"] = "degraded"
    status["agents"] = len(app[HUB].agents)  # type: ignore[assignment]
    status["viewers"] = len(app[HUB].viewers)  # type: ignore[assignment]
    return web.json_response(status, status=code)


def location_notices(request: web.Request, staff: Staff) -> list[dict[str, Any]]:
    """The location banners for this teacher's dashboard pages (remote-lesson mode on and
    until when; not on-site; outside lesson hours)."""
    policy = policy_of(request.app)
    if policy is None:
        return []
    return policy.notices_for(client_ip(request), staff.school_id, staff.location_id)


async def check_thumbnail_location(request: web.Request, staff: Staff, student_id: int) -> None:
    """The stored thumbnail follows the live rule (``LocationPolicy.check_stored_picture``);
    with no rule installed, nothing is shown."""
    policy = policy_of(request.app)
    if policy is None:
        raise AccessDenied(ELSEWHERE, "no location rule is installed: nothing can be viewed")
    await policy.check_stored_picture(
        client_ip(request),
        staff.school_id,
        staff.location_id,
        request.app[HUB].agents.get(student_id),
        student_id,
    )
