"""The security headers on every answer (:func:`add_security_headers`, hung on the app's
``on_response_prepare``, so redirects, the router's 404s and 405s, static files and
WebSocket handshakes get them as well as the handlers' answers), and the middleware that
renders every error in one JSON shape (``{"error": {"code", "message"}}``). A database that does not answer is a 503
(``unavailable``), any other fault a 500 (``internal_error``).

A request whose answer has begun is never answered again: a WebSocket that is already open
(its endpoint answers errors in the protocol itself) is closed with 1011 should an error
still escape it, and a streamed answer under way is left to aiohttp, which drops the
connection. Writing an HTTP page into an upgraded socket is what a browser reports as
"invalid frame header" or "reserved bits"."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import exc as sa_exc

from klasblik.protocol.codes import CloseCode, ErrorCode
from klasblik.server.errors import ApiError, error_body
from klasblik.server.keys import OPEN_WEBSOCKET, SETTINGS
from klasblik.server.web.error_page import error_page, wants_page

__all__ = ["CSP", "PERMISSIONS_POLICY", "add_security_headers", "middlewares"]

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

#: no page of Klasblik's needs any of these; a script injected anyway gets none of them
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), display-capture=(), usb=(), serial=(), "
    "bluetooth=(), payment=(), clipboard-read=(), screen-wake-lock=(), fullscreen=(self)"
)
#: two years, the preload list's minimum; sent only where the server is reached over TLS
HSTS = "max-age=63072000; includeSubDomains"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer's security headers (``on_response_prepare``); a handler's own value of a
    header (a page's Cache-Control, say) is kept."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cache-Control", "no-store")
    public = request.app[SETTINGS].effective_public_url
    if request.secure or public.startswith("https:"):
        h.setdefault("Strict-Transport-Security", HSTS)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    # add_security_headers adds the headers to what is answered here, as to everything
    try:
        return await handler(request)
    except Exception as exc:
        ws = request.get(OPEN_WEBSOCKET)
        if ws is not None:
            return await _close_open_websocket(request, ws, exc)
        if request.writer.output_size > 0:  # an answer is under way: none can follow it
            raise
        if isinstance(exc, ApiError):
            page = error_page(request, exc.code, exc.status) if wants_page(request) else None
            if page is not None:
                return page
            return web.json_response(error_body(exc.code, exc.message), status=exc.status)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400 or exc.headers.get("Location"):
                raise
            return web.json_response(
                error_body(exc.reason.lower().replace(" ", "_"), exc.reason), status=exc.status
            )
        log.exception("unhandled error in %s %s", request.method, request.path)
        if _database_unavailable(exc):
            return web.json_response(error_body("unavailable", _UNAVAILABLE), status=503)
        return web.json_response(error_body("internal_error", "internal error"), status=500)


async def _close_open_websocket(
    request: web.Request, ws: web.WebSocketResponse, exc: Exception
) -> web.WebSocketResponse:
    """An error escaped a WebSocket endpoint after its handshake: close the socket with 1011
    (no HTTP page can follow the upgrade) and hand aiohttp the socket as the answer."""
    log.error("unhandled error in the WebSocket %s: closing it (1011)", request.path, exc_info=exc)
    if not ws.closed:
        try:
            await ws.close(code=CloseCode.INTERNAL_ERROR, message=ErrorCode.INTERNAL.encode())
        except (ConnectionError, RuntimeError):
            pass
    return ws


_UNAVAILABLE = "the database does not answer; try again shortly"

#: errors of the statement rather than of the database: a fault of ours, a 500
_STATEMENT_FAULTS = (
    sa_exc.IntegrityError,
    sa_exc.ProgrammingError,
    sa_exc.DataError,
    sa_exc.NotSupportedError,
)


def _database_unavailable(exc: BaseException) -> bool:
    """The database is down or cannot be reached: refused or lost connections, a pool with
    no connection to give, a database file that cannot be opened or is locked."""
    if isinstance(exc, sa_exc.DBAPIError):
        return not isinstance(exc, _STATEMENT_FAULTS)
    # asyncpg's connection refusal reaches us unwrapped
    return isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError, ConnectionRefusedError))


middlewares = [json_errors]
