"""The middlewares: security headers on every answer, and every error rendered in one JSON
shape (``{"error": {"code", "message"}}``). A WebSocket that is already open is never
answered with an HTTP page: its endpoint answers errors in the protocol itself."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from klasblik.server.errors import ApiError, error_body

__all__ = ["CSP", "middlewares"]

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
        resp = web.json_response(error_body(exc.code, exc.message), status=exc.status)
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
