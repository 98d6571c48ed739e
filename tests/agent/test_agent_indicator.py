"""The watched indicator: on screen exactly while a teacher watches, naming viewers and mode.

Real Xvfb, a real window manager (Debian openbox), the real agent against the protocol
stand-in; the window is looked up with xwininfo, another X client attacks it (unmap,
cover, kill its connection) the way a student with a terminal could.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from klasblik.agent.capture import CaptureWorker, ScreenGrabber
from klasblik.agent.client import AgentClient
from klasblik.agent.indicator import WatchIndicator, indicator_text
from klasblik.agent.x11 import load_xlib
from tests.agent.agent_standin_server import StandInServer, standin_server
from tests.agent.agent_xscreen import Xvfb
from tests.agent.test_agent_client import CountingGrabber, Running, _settings
from tests.support.timing import timeout, wait_for_sync

pytestmark = pytest.mark.xvfb


def test_text_names_every_viewer_and_the_mode_in_both_languages() -> None:
    assert indicator_text(["Mw. Jansen"], "grid", "nl") == (
        "Klasblik: Mw. Jansen kijkt nu mee (overzicht)"
    )
    assert indicator_text(["A. Bakker", "M. de Vries", "Zoë"], "focus", "nl") == (
        "Klasblik: A. Bakker, M. de Vries en Zoë kijken nu mee (close-up)"
    )
    assert indicator_text(["Ms. Smith"], "focus", "en") == (
        "Klasblik: Ms. Smith is watching your screen (close-up)"
    )
    assert "(grid)" in indicator_text(["A", "B"], "grid", "en")
    assert "?" in indicator_text([], "grid", "en")  # never an empty sign


@pytest.fixture
def window_manager(xvfb: Xvfb) -> Iterator[None]:
    """openbox on the Xvfb screen, up once it has set _NET_SUPPORTING_WM_CHECK."""
    exe = shutil.which("openbox")
    if exe is None:
        pytest.fail(
            "openbox is not installed (Debian package openbox; scripts/lib/system-packages)"
        )
    proc = subprocess.Popen(
        [exe, "--sm-disable"],
        env={"DISPLAY": xvfb.display, "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def wm_up() -> bool:
        out = subprocess.run(
            ["xprop", "-display", xvfb.display, "-root", "_NET_SUPPORTING_WM_CHECK"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return "window id" in out

    try:
        wait_for_sync(wm_up, message="openbox to manage the screen")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=timeout(10))


def indicator_windows(display: str) -> list[tuple[int, str]]:
    """(id, name) of every mapped window with the indicator's WM_CLASS, via xwininfo."""
    out = subprocess.run(
        ["xwininfo", "-display", display, "-root", "-tree"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in out.splitlines():
        m = re.match(r'\s*(0x[0-9a-f]+) "(.*)": \("klasblik-indicator"', line)
        if m is None:
            continue
        wid = int(m.group(1), 16)
        state = subprocess.run(
            ["xwininfo", "-display", display, "-id", hex(wid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if "IsViewable" in state:
            found.append((wid, m.group(2)))
    return found


def top_of_stack(display: str) -> int:
    """The id of the topmost child of the root window (XQueryTree lists bottom to top)."""
    x = load_xlib()
    x.XQueryTree.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
        ctypes.POINTER(ctypes.c_uint),
    ]
    dpy = x.XOpenDisplay(display.encode())
    try:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children = ctypes.POINTER(ctypes.c_ulong)()
        count = ctypes.c_uint()
        x.XQueryTree(dpy, x.XDefaultRootWindow(dpy), root, parent, ctypes.byref(children), count)
        top = int(children[count.value - 1])
        x.XFree(children)
        return top
    finally:
        x.XCloseDisplay(dpy)


class Attacker:
    """Another X client, as a student's own program would be."""

    def __init__(self, display: str) -> None:
        self.x = load_xlib()
        self.dpy = self.x.XOpenDisplay(display.encode())

    def unmap(self, wid: int) -> None:
        self.x.XUnmapWindow(self.dpy, wid)
        self.x.XSync(self.dpy, 0)

    def cover(self) -> int:
        """A big override-redirect window raised over everything."""
        from klasblik.agent.x11 import CW_OVERRIDE_REDIRECT, XSetWindowAttributes

        x = self.x
        win = x.XCreateSimpleWindow(
            self.dpy, x.XDefaultRootWindow(self.dpy), 0, 0, 1280, 720, 0, 0, 0x123456
        )
        attrs = XSetWindowAttributes()
        attrs.override_redirect = 1
        x.XChangeWindowAttributes(self.dpy, win, CW_OVERRIDE_REDIRECT, ctypes.byref(attrs))
        x.XMapRaised(self.dpy, win)
        x.XSync(self.dpy, 0)
        return int(win)

    def kill_client(self, wid: int) -> None:
        self.x.XKillClient(self.dpy, wid)
        self.x.XSync(self.dpy, 0)

    def close(self) -> None:
        self.x.XCloseDisplay(self.dpy)


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with standin_server() as s:
        yield s


# Known to fail now and then under Xvfb (about one run in five on 2 loaded cores): a sign
# window started right after another X client was killed sometimes never reports mapped.
# Re-run twice; a sign that never comes back at all still fails every run.
@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize("backend", ["x11", "tk"])
async def test_window_exists_exactly_while_watched_and_names_the_viewers(
    server: StandInServer, tmp_path: Path, xvfb: Xvfb, window_manager: None, backend: str
) -> None:
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    client = AgentClient(
        _settings(server, tmp_path),
        CaptureWorker(grabber),
        indicator=WatchIndicator("nl", backend, display=xvfb.display),
    )
    agent = Running(client)
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("off")
        await asyncio.sleep(timeout(0.3))
        assert indicator_windows(xvfb.display) == []
        await conn.watch("grid", interval_ms=200)
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        shown = indicator_windows(xvfb.display)
        assert [name for _, name in shown] == ["Klasblik: M. de Vries kijkt nu mee (overzicht)"]
        await conn.watch("focus", 1280, 720, interval_ms=200)
        await conn.wait_for(
            lambda: (
                [n for _, n in indicator_windows(xvfb.display)]
                == ["Klasblik: M. de Vries kijkt nu mee (close-up)"]
            )
        )
        await conn.watch("off")
        await conn.wait_for(lambda: indicator_windows(xvfb.display) == [])
    finally:
        await agent.finish()
    assert indicator_windows(xvfb.display) == []


@pytest.mark.flaky(reruns=2)  # see above
async def test_student_cannot_hide_it_and_killing_it_stops_capture(
    server: StandInServer, tmp_path: Path, xvfb: Xvfb, window_manager: None
) -> None:
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    indicator = WatchIndicator("en", "x11", display=xvfb.display)
    agent = Running(
        AgentClient(_settings(server, tmp_path), CaptureWorker(grabber), indicator=indicator)
    )
    attacker = Attacker(xvfb.display)
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("grid", interval_ms=200)
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        [(wid, _)] = indicator_windows(xvfb.display)

        attacker.unmap(wid)  # hidden by another client: it maps itself again
        await conn.wait_for(
            lambda: (
                indicator_windows(xvfb.display)
                == [(wid, indicator_text(["M. de Vries"], "grid", "en"))]
            )
        )

        cover = attacker.cover()  # covered by a window raised over it: it raises itself
        await conn.wait_for(lambda: top_of_stack(xvfb.display) == wid)

        attacker.kill_client(wid)  # its connection cut (xkill): no capture without it
        await conn.wait_for(lambda: len(conn.of_type("capture_error")) >= 1)
        assert "watched indicator was closed" in conn.of_type("capture_error")[0]["reason"]
        # It comes back on the next attempt (capture_retry_s is 1), and frames go on.
        # (generous: a new window process under a loaded machine)
        await conn.wait_for(lambda: len(indicator_windows(xvfb.display)) == 1, timeout(30))
        frames = len(conn.frames)
        attacker.unmap(cover)  # the screen changes: a new frame, the sign on it
        await conn.wait_for(lambda: len(conn.frames) > frames, timeout(30))
    finally:
        attacker.close()
        await agent.finish()


async def test_no_indicator_no_capture(server: StandInServer, tmp_path: Path, xvfb: Xvfb) -> None:
    """A sign that cannot be shown (no such display) is a capture_error, and nothing is grabbed."""
    grabber = CountingGrabber(ScreenGrabber(display=xvfb.display))
    indicator = WatchIndicator("en", "x11", display=":9999")
    agent = Running(
        AgentClient(_settings(server, tmp_path), CaptureWorker(grabber), indicator=indicator)
    )
    try:
        conn = await server.next_connection()
        await conn.welcome()
        await conn.watch("grid", interval_ms=100)
        await conn.wait_for(lambda: len(conn.of_type("capture_error")) >= 1)
        reason = conn.of_type("capture_error")[0]["reason"]
        assert reason.startswith(
            "the watched indicator cannot be shown: cannot open the X display :9999"
        )
        assert conn.of_type("capture_error")[0]["code"] == "indicator"  # the teacher's words
        await asyncio.sleep(timeout(0.3))
        assert grabber.grabs == 0 and conn.frames == []
    finally:
        await agent.finish()
