"""The route table: every URL the server answers, and the handler behind it."""

from __future__ import annotations

from aiohttp import web

from klasblik.server.live.agent_endpoint import agent_ws
from klasblik.server.live.dashboard_endpoint import dashboard_ws
from klasblik.server.web.admin_privacy import setup_privacy_admin_routes
from klasblik.server.web.admin_roster import setup_roster_admin_routes
from klasblik.server.web.api import (
    auth_options,
    demo_signin,
    healthz,
    me,
    signout,
    student_thumbnail,
)
from klasblik.server.web.middleware import add_security_headers, middlewares
from klasblik.server.web.pages import asset, index, signin_page

__all__ = ["middlewares", "setup_routes"]


def setup_routes(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
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
    setup_privacy_admin_routes(app)
    setup_roster_admin_routes(app)
    r.add_get(r"/{name:[A-Za-z0-9_-]+\.(?:js|mjs|css|svg|png|ico|webmanifest)}", asset)
