"""The dashboard's pages and files, served from the package data (``klasblik.dashboard``)."""

from __future__ import annotations

from aiohttp import web

from klasblik.server.auth.identity import current_staff
from klasblik.server.errors import ApiError
from klasblik.server.keys import DASHBOARD_FILES

__all__ = ["asset", "dashboard_page", "index", "signin_page"]


def dashboard_page(request: web.Request, name: str) -> web.FileResponse:
    path = request.app[DASHBOARD_FILES] / name
    if not path.is_file():
        raise ApiError("not_found", f"dashboard file {name} is missing from this install", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.StreamResponse:
    if await current_staff(request) is None:
        raise web.HTTPSeeOther("/signin")
    return dashboard_page(request, "index.html")


async def signin_page(request: web.Request) -> web.StreamResponse:
    return dashboard_page(request, "signin.html")


async def asset(request: web.Request) -> web.StreamResponse:
    """A dashboard file (script, style, image) by its name; nothing outside dashboard/."""
    return dashboard_page(request, request.match_info["name"])
