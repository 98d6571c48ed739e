"""A titled, active window on an X display (for the desktop agent's window-title "tab"),
through libX11 with ctypes (the agent's bindings, klasblik.agent.x11): no window manager
needed."""

from __future__ import annotations

import ctypes

import pytest

from klasblik.agent.x11 import PROP_MODE_REPLACE, XA_WINDOW, X11Missing, load_xlib

__all__ = ["ActiveWindow"]


class ActiveWindow:
    """Create a window named ``title``, map it and mark it as _NET_ACTIVE_WINDOW."""

    def __init__(self, display: str, title: str) -> None:
        try:
            x = load_xlib()
        except X11Missing as exc:
            pytest.fail(f"{exc} (it comes with the Debian xvfb package)")
        self._x = x
        self._dpy = x.XOpenDisplay(display.encode())
        if not self._dpy:
            pytest.fail(f"cannot open X display {display}")
        root = x.XDefaultRootWindow(self._dpy)
        win = x.XCreateSimpleWindow(self._dpy, root, 100, 100, 640, 360, 0, 0, 0x2E7D32)
        x.XStoreName(self._dpy, win, title.encode())
        x.XMapWindow(self._dpy, win)
        active = x.XInternAtom(self._dpy, b"_NET_ACTIVE_WINDOW", 0)
        data = ctypes.c_ulong(win)
        x.XChangeProperty(
            self._dpy, root, active, XA_WINDOW, 32, PROP_MODE_REPLACE, ctypes.byref(data), 1
        )
        x.XFlush(self._dpy)

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None
