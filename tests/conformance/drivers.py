"""Agent drivers for the shared conformance checks: each starts one kind of agent,
pointed at a server URL, showing something it can capture.

To add an agent, write a class with ``name`` and an async context manager
``run(tmp_path, server_url, token, account)`` and list it in :data:`DRIVERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.process import terminate
from tests.support.timing import timeout

from ..chrome.extension import running_agent
from ..chrome.pages import serve_pages, solid_page_html
from .xwindow import ActiveWindow

__all__ = ["DRIVERS", "AgentDriver", "ChromeExtensionDriver", "DesktopAgentDriver"]

REPO = Path(__file__).resolve().parents[2]


class AgentDriver(Protocol):
    """Starts an agent against ``server_url``; it runs until the context exits."""

    name: str

    def run(
        self, tmp_path: Path, server_url: str, token: str, account: str
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


class ChromeExtensionDriver:
    """The Chromebook agent: the extension in headless Chromium, one web page open."""

    name = "chrome-extension"

    @contextlib.asynccontextmanager
    async def run(
        self, tmp_path: Path, server_url: str, token: str, account: str
    ) -> AsyncIterator[None]:
        page = solid_page_html("Conformance page", "#2e7d32", "Klasblik")
        async with serve_pages({"/": page}) as base:
            async with running_agent(
                tmp_path, server_url=server_url, token=token, account=account
            ) as agent:
                await agent.open_page(base + "/")
                yield


@contextlib.contextmanager
def _xvfb(width: int = 1280, height: int = 720) -> Iterator[str]:
    """Run Xvfb on a display number it picks itself; yield the DISPLAY value."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail("Xvfb is not installed (Debian package xvfb; scripts/lib/system-packages)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            exe,
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            number = pipe.readline().strip().decode()
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DesktopAgentDriver:
    """The desktop agent: ``klasblik-agent`` capturing an Xvfb screen."""

    name = "desktop-agent"

    @contextlib.asynccontextmanager
    async def run(
        self, tmp_path: Path, server_url: str, token: str, account: str
    ) -> AsyncIterator[None]:
        with _xvfb() as display:
            window = ActiveWindow(display, "Conformance window")
            env = {**os.environ, "DISPLAY": display}
            log = (tmp_path / "desktop-agent.log").open("wb")  # read it when a check fails
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; from klasblik.agent.cli import main; sys.exit(main())",
                "--server",
                server_url,
                "--token",
                token,
                "--account",
                account,
                "--state-dir",
                str(tmp_path / "agent-state"),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
            try:
                yield
            finally:
                await terminate(proc)
                window.close()
                log.close()


DRIVERS: list[AgentDriver] = [ChromeExtensionDriver()]

# The hook for the desktop agent: it joins as soon as its code is in the tree (it is being
# written on its own branch). From then on a broken desktop agent fails these checks.
if (REPO / "agent" / "klasblik" / "agent" / "cli.py").exists():
    DRIVERS.append(DesktopAgentDriver())
