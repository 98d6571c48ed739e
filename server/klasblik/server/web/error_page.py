"""A refused page a person opened in the browser (``/admin/…`` as a teacher, say) gets a
proper page in their language, not the API's raw JSON: ``dashboard/error.html`` with the
error code in ``data-error-code``, worded by ``error.js``. API calls keep their JSON."""

from __future__ import annotations

import html
import re

from aiohttp import web

from klasblik.server.keys import DASHBOARD_FILES

__all__ = ["error_page", "wants_page"]

_NOT_PAGES = ("/api/", "/ws/", "/auth/")
_CODE = re.compile(r"[a-z0-9_]{1,64}")


def wants_page(request: web.Request) -> bool:
    """A browser navigation to a page (not an API call, socket or asset)."""
    return (
        request.method == "GET"
        and not request.path.startswith(_NOT_PAGES)
        and "." not in request.path.rsplit("/", 1)[-1]
        and "text/html" in request.headers.get("Accept", "")
    )


def error_page(request: web.Request, code: str, status: int) -> web.Response | None:
    """The error page for ``code``, or None when its file is missing (then JSON)."""
    path = request.app[DASHBOARD_FILES] / "error.html"
    if not path.is_file():
        return None
    safe = code if _CODE.fullmatch(code) else "unknown"
    text = path.read_text(encoding="utf-8").replace(
        'data-error-code=""', f'data-error-code="{html.escape(safe)}"', 1
    )
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )
