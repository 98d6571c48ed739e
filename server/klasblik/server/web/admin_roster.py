"""IT's roster-sync screen: ``GET /admin/roster`` (the page), ``GET /api/admin/roster`` (health: last success, age, last
error with its message, the app token's permissions) and ``POST /api/admin/roster/sync``
(run a sync now, in the background). Signed-in active IT admins only; the POST needs the
CSRF token and is audit-logged."""

from __future__ import annotations

from aiohttp import web

from klasblik.server.access import audit
from klasblik.server.auth.identity import check_csrf, require_staff
from klasblik.server.errors import ApiError
from klasblik.server.keys import DASHBOARD_FILES, DB, M365, SETTINGS
from klasblik.server.net import client_ip
from klasblik.server.roster.health import roster_health
from klasblik.server.roster.jobs import start_sync_now

__all__ = ["setup_roster_admin_routes"]


async def _it_admin(request: web.Request, change: bool = False) -> str:
    session, staff = await require_staff(request)
    if change:
        check_csrf(request, session)
    if not staff.active or not staff.is_admin:
        raise ApiError("forbidden", "only IT admins may see and run the roster sync", 403)
    return staff.username


async def roster_status(request: web.Request) -> web.Response:
    await _it_admin(request)
    app = request.app
    m365 = app.get(M365)
    health = await roster_health(
        app[DB],
        app[SETTINGS],
        m365.app_roles if m365 else None,
        m365.app_roles_at if m365 else None,
        detail=True,
    )
    if health is None:
        raise ApiError("not_configured", "roster sync from Microsoft 365 is not set up", 404)
    return web.json_response(health)


async def roster_sync_now(request: web.Request) -> web.Response:
    actor = await _it_admin(request, change=True)
    app = request.app
    try:
        started = start_sync_now(app)
    except (ValueError, KeyError):
        raise ApiError(
            "not_configured", "roster sync from Microsoft 365 is not set up", 404
        ) from None
    await audit.record(
        app[DB], actor, audit.Actions.ROSTER_SYNC, "roster", "by hand", client_ip(request)
    )
    return web.json_response({"started": started}, status=202)


async def roster_page(request: web.Request) -> web.StreamResponse:
    await _it_admin(request)
    path = request.app[DASHBOARD_FILES] / "admin-roster.html"
    if not path.is_file():
        raise ApiError("not_found", "dashboard file admin-roster.html is missing", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


def setup_roster_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/roster", roster_page)
    app.router.add_get("/api/admin/roster", roster_status)
    app.router.add_post("/api/admin/roster/sync", roster_sync_now)
