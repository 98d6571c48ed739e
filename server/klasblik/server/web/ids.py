"""Ids from URLs, query strings and JSON bodies, checked against the database's range
before any query sees them: a number no row can have is answered 404 (``not_found``), text
that is no number 400 (``invalid_format``), never a 500 from an integer overflow in the
database driver."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from klasblik.protocol.codes import MAX_ID
from klasblik.server.errors import ApiError

__all__ = ["check_id", "path_id", "query_int"]


def check_id(value: Any, what: str) -> int:
    """``value`` as an id of ``what``: an integer 1 to MAX_ID, else ApiError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError("invalid_format", f"{what} id must be a number", 400)
    if not 1 <= value <= MAX_ID:
        raise ApiError("not_found", f"no {what} with id {value}", 404)
    return value


def path_id(request: web.Request, name: str, what: str) -> int:
    """The id in the URL's ``{name}`` part (ASCII digits only: no signs, spaces, ``١``)."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        if raw.lstrip("-").isascii() and raw.lstrip("-").isdigit():
            raise ApiError("not_found", f"no {what} with id {raw[:24]}", 404)
        raise ApiError("invalid_format", f"{what} id must be a number", 400)
    return check_id(int(raw), what)


def query_int(request: web.Request, name: str, default: int | None) -> int | None:
    """A whole number 1 to MAX_ID from the query string (a limit, a cursor), else 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not 1 <= int(raw) <= MAX_ID:
        raise ApiError("invalid_format", f"{name} must be a whole number 1 to {MAX_ID}", 400)
    return int(raw)
