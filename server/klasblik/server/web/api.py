"""The dashboard's JSON API: sign-in options, the demo sign-in, sign-out, who am I, a
student's stored thumbnail, and health. Thin handlers: the rules live in ``access/``,
``locations/`` and ``auth/``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.access import audit, no_view
from klasblik.server.access.rules import (
    authorize_student,
    classes_of,
    roster_max_age_s,
    staff_named,
)
from klasblik.server.auth.identity import check_csrf, check_origin, current_staff, require_staff
from klasblik.server.auth.sessions import COOKIE, create_session, end_session, set_session_cookie
from klasblik.server.errors import AccessDenied, ApiError
from klasblik.server.keys import DB, DEMO, ENGINE, HUB, LATEST, M365, NOTICES, SETTINGS, STORE
from klasblik.server.locations.policy import policy_of
from klasblik.server.locations.rule import ELSEWHERE, Place
from klasblik.server.net import client_ip, is_loopback
from klasblik.server.storage.blobs.base import (
    BlobStoreError,
    thumbnail_name,
    thumbnail_place_name,
)
from klasblik.server.storage.engine import ping
from klasblik.server.storage.models import Staff, Student
from klasblik.server.web.ids import path_id

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
    student_id = path_id(request, "student_id", "student")
    try:
        student = await authorize_student(
            app[DB], staff.id, student_id, roster_max_age_s=roster_max_age_s(app[SETTINGS])
        )
        await check_thumbnail_location(request, staff, student_id)
        if await no_view.blocked_ids(app[DB], [student_id]):
            raise AccessDenied(p.ErrorCode.NO_VIEW, "this student is on the do-not-view list")
        try:
            blob = await app[STORE].get(thumbnail_name(student_id))
        except BlobStoreError as exc:
            raise ApiError("unavailable", f"blob store unavailable: {exc}", 503) from None
        if blob is None:
            raise ApiError("not_found", "no stored thumbnail for this student", 404)
        await _check_taken_here(request, staff, student)
    except AccessDenied as exc:
        await audit.record(
            app[DB],
            staff.username,
            audit.Actions.VIEW_REFUSED,
            f"student:{student_id}",
            f"stored thumbnail: {exc.message}",
            client_ip(request),
            school_id=staff.school_id,
        )
        raise
    # A stored screenshot is a view like a live one: logged before it is answered.
    await audit.record(
        app[DB],
        staff.username,
        audit.Actions.VIEW_STORED,
        f"student:{student_id}",
        "stored thumbnail",
        client_ip(request),
        school_id=staff.school_id,
    )
    return web.Response(
        body=blob.data,
        content_type=blob.content_type,
        headers={"Last-Modified": blob.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


async def _check_taken_here(request: web.Request, staff: Staff, student: Student) -> None:
    """The stored thumbnail follows the live rule as if the device were still where the
    picture was taken: a picture taken at B is not shown to a teacher at A, wherever the
    device is now. A picture whose place is not known is not shown."""
    app = request.app
    policy = policy_of(app)
    try:
        place = await app[STORE].get(thumbnail_place_name(student.id))
        taken = json.loads(place.data) if place is not None else None
    except (BlobStoreError, ValueError):
        taken = None
    if not isinstance(taken, dict) or "location_id" not in taken or policy is None:
        raise AccessDenied(ELSEWHERE, "where this picture was taken is not known")
    loc = taken["location_id"]
    where = loc if isinstance(loc, int) and not isinstance(loc, bool) else None
    viewer = Place(
        policy.resolve(client_ip(request)), policy.home(staff.school_id, staff.location_id)
    )
    device = Place(where, policy.home(student.school_id, student.location_id))
    why = policy.gate(viewer, device)
    if why:
        raise AccessDenied(why, "this picture was taken where you may not view it now")


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
    await _roster_part(request, status)
    if code == 200 and await _signed_in_it(request):  # outsiders learn nothing of live use
        status["agents"] = len(app[HUB].agents)  # type: ignore[assignment]
        status["viewers"] = len(app[HUB].viewers)  # type: ignore[assignment]
    return web.json_response(status, status=code)


async def _roster_part(request: web.Request, status: dict[str, Any]) -> None:
    """Roster-sync health and the app permission check (``roster/health.py``); without
    the last error's message, which only IT's admin page shows. Self-contained."""
    from klasblik.server.roster.health import degraded, roster_health

    app = request.app
    m365 = app.get(M365)
    try:
        roster = await roster_health(
            app[DB],
            app[SETTINGS],
            m365.app_roles if m365 else None,
            m365.app_roles_at if m365 else None,
        )
    except Exception as exc:
        roster = {"error": f"unavailable: {type(exc).__name__}"}
    if roster is None:
        return
    status["roster"] = roster
    if ("error" in roster or degraded(roster)) and status["status"] == "ok":
        status["status"] = "degraded"


async def _signed_in_it(request: web.Request) -> bool:
    """An active IT admin's session is on this request (nothing is looked up without a
    session cookie, so the probes of a load balancer cost no query)."""
    if not request.cookies.get(COOKIE):
        return False
    try:
        found = await current_staff(request)
    except Exception:  # the database is down: /healthz says so itself
        return False
    return found is not None and found[1].is_admin and found[1].active


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
