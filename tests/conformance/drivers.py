"""Agent drivers for the shared conformance checks: each starts one kind of agent,
pointed at a server URL, showing something it can capture.

To add an agent, write a class with ``name`` and an async context manager
``run(tmp_path, server_url, token, account)`` and list it in :data:`DRIVERS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from ..chrome.extension import running_agent
from ..chrome.pages import serve_pages, solid_page_html

__all__ = ["AgentDriver", "ChromeExtensionDriver", "DRIVERS"]


class AgentDriver(Protocol):
    """Starts an agent against ``server_url``; it runs until the context exits."""

    name: str

    def run(self, tmp_path: Path, server_url: str, token: str,
            account: str) -> contextlib.AbstractAsyncContextManager[None]: ...


class ChromeExtensionDriver:
    """The Chromebook agent: the extension in headless Chromium, one web page open."""

    name = "chrome-extension"

    @contextlib.asynccontextmanager
    async def run(self, tmp_path: Path, server_url: str, token: str,
                  account: str) -> AsyncIterator[None]:
        page = solid_page_html("Conformance page", "#2e7d32", "Klasblik")
        async with serve_pages({"/": page}) as base:
            async with running_agent(tmp_path, server_url=server_url, token=token,
                                     account=account) as agent:
                await agent.open_page(base + "/")
                yield


# The desktop agent (klasblik-agent, capturing an Xvfb screen) joins this list with a
# driver of its own once it is on main; see the report of this branch.
DRIVERS: list[AgentDriver] = [ChromeExtensionDriver()]
