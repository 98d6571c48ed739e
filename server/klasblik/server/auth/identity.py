"""Who is asking, for HTTP requests and dashboard handshakes: the session cookie, the
Origin check and the CSRF token."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from klasblik.server.auth.sessions import COOKIE, csrf_ok, lookup_session
from klasblik.server.errors import ApiError
from klasblik.server.keys import DB, SETTINGS
from klasblik.server.storage.models import Staff, WebSession

__all__ = ["check_csrf", "check_origin", "current_staff", "require_staff", "same_origin"]

_STAFF_KEY: web.RequestKey[tuple[WebSession, Staff] | None] = web.RequestKey("klasblik.staff")


async def current_staff(request: web.Request) -> tuple[WebSession, Staff] | None:
    if _STAFF_KEY in request:
        return request[_STAFF_KEY]
    app = request.app
    found = await lookup_session(app[DB], request.cookies.get(COOKIE), app[SETTINGS])
    request[_STAFF_KEY] = found
    return found


async def require_staff(request: web.Request) -> tuple[WebSession, Staff]:
    found = await current_staff(request)
    if found is None:
        raise ApiError("not_authenticated", "sign in first", 401)
    return found


def same_origin(request: web.Request, origin: str | None) -> bool:
    """True when ``origin`` is this server as the browser sees it."""
    if not origin:
        return False
    public = request.app[SETTINGS].public_url
    if public:
        want = urlsplit(public)
        return origin.rstrip("/") == f"{want.scheme}://{want.netloc}"
    got = urlsplit(origin)
    return got.scheme in ("http", "https") and got.netloc == request.host


def check_origin(request: web.Request) -> None:
    """Refuse a request whose Origin is another site (cross-site WebSocket or form)."""
    origin = request.headers.get("Origin")
    if not same_origin(request, origin):
        raise ApiError("forbidden", f"origin {origin or '(none)'} is not allowed", 403)


def check_csrf(request: web.Request, session: WebSession) -> None:
    check_origin(request)
    if not csrf_ok(session, request.headers.get("X-CSRF-Token")):
        raise ApiError("csrf_failed", "missing or wrong X-CSRF-Token header", 403)
