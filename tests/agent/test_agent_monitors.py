"""All monitors: the whole desktop side by side, or the monitor with the active window.

The choice is pure (choose_region); the grab is real, on an Xvfb screen as wide as two
monitors with a different colour on each half. Xvfb reports one RandR monitor whatever
``xrandr --setmonitor`` says, so the two-monitor layout is given to the grabber; on a real
desktop it comes from XRRGetMonitors (randr_monitors, checked here on the Xvfb screen).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from klasblik.agent.activewindow import parse_xwininfo_centre
from klasblik.agent.capture import ScreenGrabber, choose_region
from klasblik.agent.x11 import randr_monitors
from tests.agent.agent_xscreen import XPainter, Xvfb, XvfbMissing, start_xvfb

pytestmark = pytest.mark.xvfb

LEFT = ((0, 0, 1280, 720), True)
RIGHT = ((1280, 0, 1920, 1080), False)
DESKTOP = (0, 0, 3200, 1080)


def test_choose_region() -> None:
    monitors = [LEFT, RIGHT]
    assert choose_region(DESKTOP, monitors, "all", (2000, 500)) == DESKTOP
    assert choose_region(DESKTOP, monitors, "active", (2000, 500)) == RIGHT[0]
    assert choose_region(DESKTOP, monitors, "active", (10, 10)) == LEFT[0]
    assert choose_region(DESKTOP, monitors, "primary", (2000, 500)) == LEFT[0]
    # a window off every monitor, or none known: the primary one
    assert choose_region(DESKTOP, monitors, "active", (1000, 900)) == LEFT[0]
    assert choose_region(DESKTOP, monitors, "active", None) == LEFT[0]
    # no primary flagged: the first; no monitors at all: the desktop
    assert (
        choose_region(DESKTOP, [(RIGHT[0], False), (LEFT[0], False)], "primary", None) == RIGHT[0]
    )
    assert choose_region(DESKTOP, [], "active", (5, 5)) == DESKTOP


def test_xwininfo_centre() -> None:
    out = "  Absolute upper-left X:  1500\n  Absolute upper-left Y:  100\n  Width: 400\n  Height: 200\n"
    assert parse_xwininfo_centre(out) == (1700, 200)
    assert parse_xwininfo_centre("garbage") is None


@pytest.fixture
def wide() -> Iterator[Xvfb]:
    try:
        with start_xvfb(2560, 720) as screen:
            painter = XPainter(screen.display)
            page = Image.new("RGB", (2560, 720), (220, 20, 20))
            page.paste((20, 20, 220), (1280, 0, 2560, 720))
            painter.show(page)
            painter.close()
            yield screen
    except XvfbMissing as exc:
        pytest.fail(str(exc))


def _colour(grab_raw: bytes | bytearray, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 4
    b, g, r = grab_raw[i], grab_raw[i + 1], grab_raw[i + 2]
    return r, g, b


def test_grabs_the_whole_desktop_or_the_active_monitor(wide: Xvfb) -> None:
    two = [(0, 0, 1280, 720, True), (1280, 0, 1280, 720, False)]
    assert randr_monitors(wide.display) == [(0, 0, 2560, 720, False)]  # what Xvfb reports

    everything = ScreenGrabber(display=wide.display, monitors="all").grab()
    assert (everything.width, everything.height) == (2560, 720)
    assert _colour(everything.raw, 2560, 100, 100)[0] > 200  # left monitor: red
    assert _colour(everything.raw, 2560, 2000, 100)[2] > 200  # right monitor: blue

    on_right = ScreenGrabber(
        display=wide.display,
        monitors="active",
        active_point=lambda _d: (2000, 300),
        monitor_list=lambda _d: two,
    ).grab()
    assert (on_right.width, on_right.height) == (1280, 720)
    assert _colour(on_right.raw, 1280, 100, 100)[2] > 200  # blue: the right one

    primary = ScreenGrabber(
        display=wide.display,
        monitors="primary",
        active_point=lambda _d: (2000, 300),
        monitor_list=lambda _d: two,
    ).grab()
    assert (primary.width, primary.height) == (1280, 720)
    assert _colour(primary.raw, 1280, 100, 100)[0] > 200  # red: the left, primary one


def test_active_window_centre_from_the_x_server(wide: Xvfb) -> None:
    """The real lookup (xprop, xwininfo) of a mapped, active window on the right monitor."""
    import ctypes

    from klasblik.agent.activewindow import active_window_centre
    from klasblik.agent.x11 import PROP_MODE_REPLACE, XA_WINDOW, load_xlib

    x = load_xlib()
    dpy = x.XOpenDisplay(wide.display.encode())
    root = x.XDefaultRootWindow(dpy)
    win = x.XCreateSimpleWindow(dpy, root, 1700, 300, 200, 100, 0, 0, 0)
    x.XMapWindow(dpy, win)
    active = x.XInternAtom(dpy, b"_NET_ACTIVE_WINDOW", 0)
    value = ctypes.c_ulong(win)
    x.XChangeProperty(dpy, root, active, XA_WINDOW, 32, PROP_MODE_REPLACE, ctypes.byref(value), 1)
    x.XSync(dpy, 0)
    try:
        assert active_window_centre(wide.display) == (1800, 350)
    finally:
        x.XCloseDisplay(dpy)
