"""A titled, active window on an X display (for the desktop agent's window-title "tab"),
through libX11 with ctypes: no window manager needed."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

__all__ = ["ActiveWindow"]

_XA_WINDOW = 33
_PROP_MODE_REPLACE = 0


class ActiveWindow:
    """Create a window named ``title``, map it and mark it as _NET_ACTIVE_WINDOW."""

    def __init__(self, display: str, title: str) -> None:
        path = ctypes.util.find_library("X11")
        if path is None:
            pytest.fail("libX11 not found (it comes with the Debian xvfb package)")
        x = ctypes.CDLL(path)
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XCreateSimpleWindow.restype = ctypes.c_ulong
        x.XCreateSimpleWindow.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        x.XStoreName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_char_p]
        x.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        x.XInternAtom.restype = ctypes.c_ulong
        x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x.XChangeProperty.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        x.XFlush.argtypes = [ctypes.c_void_p]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
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
            self._dpy, root, active, _XA_WINDOW, 32, _PROP_MODE_REPLACE, ctypes.byref(data), 1
        )
        x.XFlush(self._dpy)

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None
