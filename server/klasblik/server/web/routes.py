"""HTTP routes: pages, the dashboard's JSON API, sign-in/out, health; and the middlewares
that put security headers on every answer and render every error in one JSON shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import select, text

from klasblik.server.access import audit
from klasblik.server.access.rules import authorize_student, classes_of
from klasblik.server.auth.identity import check_csrf, check_origin, current_staff, require_staff
from klasblik.server.auth.sessions import COOKIE, create_session, end_session
from klasblik.server.errors import AccessDenied, ApiError, error_body
from klasblik.server.keys import CTX
from klasblik.server.live.agent_endpoint import agent_ws
from klasblik.server.live.dashboard_endpoint import dashboard_ws
from klasblik.server.locations.policy import check_thumbnail_location, location_notices
from klasblik.server.net import is_loopback
from klasblik.server.storage.blobs.base import BlobStoreError, thumbnail_name
from klasblik.server.storage.models import Staff
from klasblik.server.web.admin_privacy import setup_admin_routes

__all__ = ["CSP", "middlewares", "setup_routes"]

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        resp = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400 or exc.headers.get("Location"):
            raise
        resp = web.json_response(
            error_body(exc.reason.lower().replace(" ", "_"), exc.reason), status=exc.status
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        resp = web.json_response(error_body("internal_error", "internal error"), status=500)
    return resp  # security_headers, the outer middleware, adds the headers


middlewares = [security_headers, json_errors]


def _page(request: web.Request, name: str) -> web.FileResponse:
    path = request.app[CTX].dashboard_dir / name
    if not path.is_file():
        raise ApiError("not_found", f"dashboard file {name} is missing from this install", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.StreamResponse:
    if await current_staff(request) is None:
        raise web.HTTPSeeOther("/signin")
    return _page(request, "index.html")


async def signin_page(request: web.Request) -> web.StreamResponse:
    return _page(request, "signin.html")


async def auth_options(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    demo = bool(ctx.settings.demo) and is_loopback(ctx.client_ip(request))
    return web.json_response({"demo": demo, "microsoft": bool(ctx.extras.get("microsoft"))})


async def demo_signin(request: web.Request) -> web.StreamResponse:
    """The demo sign-in: demo mode only, from this machine only, as the demo teacher."""
    ctx = request.app[CTX]
    ip = ctx.client_ip(request)
    if not ctx.settings.demo:
        raise ApiError("forbidden", "the demo sign-in exists only in demo mode", 403)
    if not is_loopback(ip):
        raise ApiError("forbidden", "the demo sign-in works only from this machine", 403)
    check_origin(request)
    username = ctx.extras.get("demo_teacher")
    async with ctx.sm() as session:
        staff = await session.scalar(select(Staff).where(Staff.username == username))
    if staff is None:
        raise ApiError("not_found", "demo teacher missing: demo data not seeded", 404)
    token, _row = await create_session(ctx.sm, staff.id, ip, ctx.settings)
    await audit.record(ctx.sm, staff.username, audit.Actions.SIGN_IN, "demo", "demo sign-in", ip)
    resp = web.HTTPSeeOther("/")
    set_session_cookie(request, resp, token)
    raise resp


def set_session_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    ctx = request.app[CTX]
    resp.set_cookie(
        COOKIE,
        token,
        max_age=ctx.settings.session_lifetime_s,
        httponly=True,
        secure=ctx.settings.effective_public_url.startswith("https:"),
        samesite="Lax",
        path="/",
    )


async def signout(request: web.Request) -> web.StreamResponse:
    session, staff = await require_staff(request)
    check_csrf(request, session)
    ctx = request.app[CTX]
    token = request.cookies.get(COOKIE, "")
    await end_session(ctx.sm, token)
    await audit.record(
        ctx.sm, staff.username, audit.Actions.SIGN_OUT, "", "", ctx.client_ip(request)
    )
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.Response:
    session, staff = await require_staff(request)
    ctx = request.app[CTX]
    classes = await classes_of(ctx.sm, staff)
    return web.json_response(
        {
            "user": {"name": staff.name, "username": staff.username, "is_admin": staff.is_admin},
            "classes": [{"id": c.id, "name": c.name, "student_count": n} for c, n in classes],
            "csrf_token": session.csrf_token,
            "demo": bool(ctx.settings.demo),
            "notices": ctx.extras.get("notices", []) + location_notices(request, staff),
        }
    )


async def student_thumbnail(request: web.Request) -> web.StreamResponse:
    _session, staff = await require_staff(request)
    ctx = request.app[CTX]
    try:
        student_id = int(request.match_info["student_id"])
    except ValueError:
        raise ApiError("invalid_format", "student id must be a number", 400) from None
    try:
        await authorize_student(ctx.sm, staff.id, student_id)
        await check_thumbnail_location(request, staff, student_id)
    except AccessDenied as exc:
        await audit.record(
            ctx.sm,
            staff.username,
            audit.Actions.VIEW_REFUSED,
            f"student:{student_id}",
            f"stored thumbnail: {exc.message}",
            ctx.client_ip(request),
        )
        raise
    try:
        blob = await ctx.store.get(thumbnail_name(student_id))
    except BlobStoreError as exc:
        raise ApiError("unavailable", f"blob store unavailable: {exc}", 503) from None
    if blob is None:
        raise ApiError("not_found", "no stored thumbnail for this student", 404)
    return web.Response(
        body=blob.data,
        content_type=blob.content_type,
        headers={"Last-Modified": blob.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


async def asset(request: web.Request) -> web.StreamResponse:
    """A dashboard file (script, style, image) by its name; nothing outside dashboard/."""
    return _page(request, request.match_info["name"])


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    status = {"status": "ok", "database": "ok", "blob_store": "ok"}
    code = 200
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        status["database"] = f"down: {type(exc).__name__}"
        status["status"] = "down"
        code = 503
    cluster = ctx.hub.cluster
    if ctx.settings.redis_url:
        status["redis"] = cluster.health if cluster is not None else "down: stopped"
        if status["redis"] != "ok" and status["status"] == "ok":
            status["status"] = "degraded"
    if ctx.latest.degraded:
        status["blob_store"] = f"degraded: {ctx.latest.last_error}"
        if status["status"] == "ok":
            status["status"] = "degraded"
    status["agents"] = len(ctx.hub.agents)  # type: ignore[assignment]
    status["viewers"] = len(ctx.hub.viewers)  # type: ignore[assignment]
    return web.json_response(status, status=code)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", index)
    r.add_get("/signin", signin_page)
    r.add_get("/healthz", healthz)
    r.add_get("/api/auth/options", auth_options)
    r.add_post("/auth/demo", demo_signin)
    r.add_post("/auth/signout", signout)
    r.add_get("/api/me", me)
    r.add_get("/api/students/{student_id}/thumbnail", student_thumbnail)
    r.add_get("/ws/agent", agent_ws)
    r.add_get("/ws/dashboard", dashboard_ws)
    setup_admin_routes(app)
    r.add_get(r"/{name:[A-Za-z0-9_-]+\.(?:js|mjs|css|svg|png|ico|webmanifest)}", asset)
