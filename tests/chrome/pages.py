"""A local web page with known content for the extension to capture (127.0.0.1 only)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

__all__ = ["serve_pages", "solid_page_html"]


def solid_page_html(title: str, colour: str, text: str = "") -> str:
    """A page filled with one colour, with a title (for the tab list) and optional text."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>html,body{margin:0;height:100%;overflow:hidden}"
        f"body{{background:{colour};font:48px sans-serif;color:#fff}}</style></head>"
        f"<body>{text}</body></html>"
    )


@contextlib.asynccontextmanager
async def serve_pages(pages: dict[str, str]) -> AsyncIterator[str]:
    """Serve ``{path: html}`` on 127.0.0.1 (a free port); yield the base URL."""

    async def handler(request: web.Request) -> web.Response:
        html = pages.get(request.path)
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
