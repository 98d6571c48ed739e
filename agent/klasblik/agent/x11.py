"""libX11 through ctypes: the one place that declares the Xlib calls Klasblik uses.

The desktop agent's watched indicator on Linux/X11 (:mod:`klasblik.agent.indicator_x11`)
draws with these, and the tests paint screens and make windows with the same bindings
(tests/agent/agent_xscreen.py, tests/conformance/xwindow.py). libX11 is on every X11
desktop (and comes with Debian's xvfb), so no toolkit is needed on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, Structure, c_char_p, c_int, c_long, c_uint, c_ulong, c_void_p
from typing import Any

__all__ = [
    "EXPOSE",
    "MAP_NOTIFY",
    "UNMAP_NOTIFY",
    "VISIBILITY_NOTIFY",
    "X11Missing",
    "XAnyEvent",
    "XEvent",
    "XSetWindowAttributes",
    "XVisibilityEvent",
    "load_xlib",
]

# Event types (X.h)
EXPOSE = 12
VISIBILITY_NOTIFY = 15
DESTROY_NOTIFY = 17
UNMAP_NOTIFY = 18
MAP_NOTIFY = 19
CONFIGURE_NOTIFY = 22
# Event masks
EXPOSURE_MASK = 1 << 15
VISIBILITY_CHANGE_MASK = 1 << 16
STRUCTURE_NOTIFY_MASK = 1 << 17
# Window attribute bits
CW_BACK_PIXEL = 1 << 1
CW_OVERRIDE_REDIRECT = 1 << 9
CW_EVENT_MASK = 1 << 11
# Visibility states
VISIBILITY_UNOBSCURED = 0
# Property types and modes
XA_ATOM = 4
XA_CARDINAL = 6
XA_STRING = 31
XA_WINDOW = 33
PROP_MODE_REPLACE = 0
ZPIXMAP = 2


class X11Missing(RuntimeError):
    """libX11 is not there or the display cannot be opened."""


class XAnyEvent(Structure):
    _fields_ = [
        ("type", c_int),
        ("serial", c_ulong),
        ("send_event", c_int),
        ("display", c_void_p),
        ("window", c_ulong),
    ]


class XVisibilityEvent(Structure):
    _fields_ = [
        ("type", c_int),
        ("serial", c_ulong),
        ("send_event", c_int),
        ("display", c_void_p),
        ("window", c_ulong),
        ("state", c_int),
    ]


class XEvent(ctypes.Union):
    _fields_ = [("type", c_int), ("any", XAnyEvent), ("pad", c_long * 24)]


class XSetWindowAttributes(Structure):
    _fields_ = [
        ("background_pixmap", c_ulong),
        ("background_pixel", c_ulong),
        ("border_pixmap", c_ulong),
        ("border_pixel", c_ulong),
        ("bit_gravity", c_int),
        ("win_gravity", c_int),
        ("backing_store", c_int),
        ("backing_planes", c_ulong),
        ("backing_pixel", c_ulong),
        ("save_under", c_int),
        ("event_mask", c_long),
        ("do_not_propagate_mask", c_long),
        ("override_redirect", c_int),
        ("colormap", c_ulong),
        ("cursor", c_ulong),
    ]


class XChar2b(Structure):
    _fields_ = [("byte1", ctypes.c_ubyte), ("byte2", ctypes.c_ubyte)]


# name: (restype, argtypes)
_D, _W = c_void_p, c_ulong  # Display*, Window/XID
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "XOpenDisplay": (c_void_p, [c_char_p]),
    "XCloseDisplay": (c_int, [_D]),
    "XDefaultScreen": (c_int, [_D]),
    "XDefaultDepth": (c_int, [_D, c_int]),
    "XDisplayWidth": (c_int, [_D, c_int]),
    "XDisplayHeight": (c_int, [_D, c_int]),
    "XRootWindow": (_W, [_D, c_int]),
    "XDefaultRootWindow": (_W, [_D]),
    "XDefaultGC": (c_void_p, [_D, c_int]),
    "XDefaultVisual": (c_void_p, [_D, c_int]),
    "XConnectionNumber": (c_int, [_D]),
    "XCreateImage": (
        c_void_p,
        [_D, c_void_p, c_uint, c_int, c_int, c_char_p, c_uint, c_uint, c_int, c_int],
    ),
    "XPutImage": (c_int, [_D, _W, c_void_p, c_void_p, c_int, c_int, c_int, c_int, c_uint, c_uint]),
    "XSync": (c_int, [_D, c_int]),
    "XFlush": (c_int, [_D]),
    "XFree": (c_int, [c_void_p]),
    "XCreateSimpleWindow": (
        _W,
        [_D, _W, c_int, c_int, c_uint, c_uint, c_uint, c_ulong, c_ulong],
    ),
    "XChangeWindowAttributes": (c_int, [_D, _W, c_ulong, POINTER(XSetWindowAttributes)]),
    "XStoreName": (c_int, [_D, _W, c_char_p]),
    "XInternAtom": (c_ulong, [_D, c_char_p, c_int]),
    "XChangeProperty": (c_int, [_D, _W, c_ulong, c_ulong, c_int, c_int, c_void_p, c_int]),
    "XMapWindow": (c_int, [_D, _W]),
    "XMapRaised": (c_int, [_D, _W]),
    "XRaiseWindow": (c_int, [_D, _W]),
    "XUnmapWindow": (c_int, [_D, _W]),
    "XDestroyWindow": (c_int, [_D, _W]),
    "XMoveResizeWindow": (c_int, [_D, _W, c_int, c_int, c_uint, c_uint]),
    "XClearWindow": (c_int, [_D, _W]),
    "XSelectInput": (c_int, [_D, _W, c_long]),
    "XPending": (c_int, [_D]),
    "XNextEvent": (c_int, [_D, POINTER(XEvent)]),
    "XLoadQueryFont": (c_void_p, [_D, c_char_p]),
    "XSetFont": (c_int, [_D, c_void_p, c_ulong]),
    "XSetForeground": (c_int, [_D, c_void_p, c_ulong]),
    "XTextWidth": (c_int, [c_void_p, c_char_p, c_int]),
    "XTextWidth16": (c_int, [c_void_p, POINTER(XChar2b), c_int]),
    "XDrawString": (c_int, [_D, _W, c_void_p, c_int, c_int, c_char_p, c_int]),
    "XDrawString16": (c_int, [_D, _W, c_void_p, c_int, c_int, POINTER(XChar2b), c_int]),
    "XKillClient": (c_int, [_D, c_ulong]),
    "XSetErrorHandler": (c_void_p, [c_void_p]),
    "XSetIOErrorHandler": (c_void_p, [c_void_p]),
}

_xlib: Any = None


def load_xlib() -> Any:
    """libX11 with every prototype above declared (loaded once per process)."""
    global _xlib
    if _xlib is not None:
        return _xlib
    path = ctypes.util.find_library("X11") or "libX11.so.6"
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise X11Missing(
            f"libX11 cannot be loaded ({exc}); it comes with any X11 desktop"
        ) from None
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _xlib = lib
    return lib


def char2b(text: str) -> Any:
    """``text`` as an XChar2b array for the 16-bit (ISO 10646) text calls; BMP only."""
    codes = [ord(c) if ord(c) <= 0xFFFF else 0xFFFD for c in text]
    array = (XChar2b * max(1, len(codes)))()
    for i, code in enumerate(codes):
        array[i].byte1 = code >> 8
        array[i].byte2 = code & 0xFF
    return array


class XRRMonitorInfo(Structure):
    _fields_ = [
        ("name", c_ulong),
        ("primary", c_int),
        ("automatic", c_int),
        ("noutput", c_int),
        ("x", c_int),
        ("y", c_int),
        ("width", c_int),
        ("height", c_int),
        ("mwidth", c_int),
        ("mheight", c_int),
        ("outputs", c_void_p),
    ]


_xrandr: Any = None


def randr_monitors(display: str) -> list[tuple[int, int, int, int, bool]] | None:
    """The display's RandR 1.5 monitors as (left, top, width, height, primary), or None.

    RandR monitors are what desktops report for each screen (one per active output, or as
    set with ``xrandr --setmonitor``); None when libXrandr or the display is not there.
    """
    global _xrandr
    try:
        x = load_xlib()
        if _xrandr is None:
            lib = ctypes.CDLL(ctypes.util.find_library("Xrandr") or "libXrandr.so.2")
            lib.XRRGetMonitors.restype = POINTER(XRRMonitorInfo)
            lib.XRRGetMonitors.argtypes = [c_void_p, c_ulong, c_int, POINTER(c_int)]
            lib.XRRFreeMonitors.argtypes = [POINTER(XRRMonitorInfo)]
            _xrandr = lib
    except (OSError, X11Missing):
        return None
    dpy = x.XOpenDisplay(display.encode())
    if not dpy:
        return None
    try:
        count = c_int(0)
        info = _xrandr.XRRGetMonitors(dpy, x.XDefaultRootWindow(dpy), 1, ctypes.byref(count))
        if not info:
            return None
        try:
            return [
                (m.x, m.y, m.width, m.height, bool(m.primary))
                for m in (info[i] for i in range(count.value))
            ]
        finally:
            _xrandr.XRRFreeMonitors(info)
    finally:
        x.XCloseDisplay(dpy)
