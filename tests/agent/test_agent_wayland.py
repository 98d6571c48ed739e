"""Wayland: without a ScreenCast portal, a capture_error that says exactly why.

A real D-Bus session bus (Debian's dbus-daemon) that can start no services, as on a
desktop without xdg-desktop-portal; one with the ordinary service folders, where the real
xdg-desktop-portal starts but has no ScreenCast backend for this desktop; and no bus.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from klasblik.agent.capture import CaptureError, CaptureWorker, ScreenGrabber, display_problem
from klasblik.agent.client import AgentClient
from klasblik.agent.indicator import WatchIndicator
from klasblik.agent.wayland import portal_problem
from tests.agent.agent_standin_server import StandInServer, standin_server
from tests.agent.agent_xscreen import Xvfb
from tests.agent.test_agent_client import Running, _settings
from tests.support.timing import timeout

pytestmark = pytest.mark.xvfb


#: a session bus without service folders: nothing can be started on it (no portal)
_BARE_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
"""


def _bus(tmp_path: Path, name: str, bare: bool) -> Iterator[str]:
    exe = shutil.which("dbus-daemon")
    if exe is None:
        pytest.fail("dbus-daemon is not installed (Debian package dbus-daemon)")
    config = ["--session"]
    if bare:
        (tmp_path / f"{name}.conf").write_text(_BARE_BUS)
        config = [f"--config-file={tmp_path}/{name}.conf"]
    proc = subprocess.Popen(
        [exe, *config, "--nofork", "--print-address", f"--address=unix:path={tmp_path}/{name}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            pytest.fail("dbus-daemon did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=timeout(10))
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    yield from _bus(tmp_path, "bus", bare=True)


@pytest.fixture
def activating_bus(tmp_path: Path) -> Iterator[str]:
    yield from _bus(tmp_path, "full-bus", bare=False)


def test_a_portal_without_a_screencast_backend(activating_bus: str, tmp_path: Path) -> None:
    """The real xdg-desktop-portal, started by the bus, with no backend for this desktop."""
    env = {
        "DBUS_SESSION_BUS_ADDRESS": activating_bus,
        "XDG_CURRENT_DESKTOP": "none-such",
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    assert portal_problem(env) == (
        "Wayland session: the desktop portal has no ScreenCast interface "
        "(install the desktop's xdg-desktop-portal backend)"
    )


def test_reasons_without_bus_and_without_portal(session_bus: str) -> None:
    assert "no D-Bus session bus" in (portal_problem({}) or "")
    assert "cannot reach the D-Bus session bus" in (
        portal_problem({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}) or ""
    )
    reason = portal_problem({"DBUS_SESSION_BUS_ADDRESS": session_bus})
    assert reason is not None
    assert reason.startswith("Wayland session without the ScreenCast desktop portal: install")
    # Xwayland's DISPLAY does not make a Wayland session capturable through X
    wayland = {
        "XDG_SESSION_TYPE": "wayland",
        "DISPLAY": ":0",
        "DBUS_SESSION_BUS_ADDRESS": session_bus,
    }
    assert display_problem("linux", wayland) == reason
    assert display_problem("linux", {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}) is None


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with standin_server() as s:
        yield s


async def test_wayland_without_portal_tells_the_teacher_why(
    server: StandInServer,
    tmp_path: Path,
    xvfb: Xvfb,
    session_bus: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus)
    with pytest.raises(CaptureError, match="ScreenCast desktop portal"):
        ScreenGrabber().grab()
    agent = Running(
        AgentClient(
            _settings(server, tmp_path),
            CaptureWorker(ScreenGrabber()),
            indicator=WatchIndicator("nl", "x11", display=xvfb.display),
        )
    )
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("grid", interval_ms=200)
        await conn.wait_for(lambda: len(conn.of_type("capture_error")) >= 1)
        assert "without the ScreenCast desktop portal" in conn.of_type("capture_error")[0]["reason"]
        assert conn.of_type("capture_error")[0]["code"] == "portal"
        assert conn.frames == []
    finally:
        await agent.finish()
