"""The watched indicator on X11: one override-redirect window drawn with plain Xlib.

Override-redirect: the window manager does not manage it, so it has no title bar, no
close button, and cannot be minimised. It listens for being unmapped (another client can
unmap any window) and maps itself again; for being covered (VisibilityNotify) and raises
itself again. If the X connection is cut (xkill), Xlib ends this process, which is what
the agent watches for: it then stops capturing.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import select
import threading
import time
from ctypes import POINTER, Structure, c_int, c_short, c_uint, c_ulong, c_ushort, c_void_p
from typing import IO, Any

from klasblik.agent.x11 import (
    CW_BACK_PIXEL,
    CW_EVENT_MASK,
    CW_OVERRIDE_REDIRECT,
    EXPOSE,
    EXPOSURE_MASK,
    MAP_NOTIFY,
    PROP_MODE_REPLACE,
    STRUCTURE_NOTIFY_MASK,
    UNMAP_NOTIFY,
    VISIBILITY_CHANGE_MASK,
    VISIBILITY_NOTIFY,
    VISIBILITY_UNOBSCURED,
    XA_ATOM,
    X11Missing,
    XEvent,
    XSetWindowAttributes,
    XVisibilityEvent,
    char2b,
    load_xlib,
)

__all__ = ["WINDOW_CLASS", "run_x11"]

#: The window's name prefix and WM_CLASS (tests and IT scripts find it by these).
WINDOW_CLASS = b"klasblik-indicator\0Klasblik\0"
BACKGROUND = 0xB71C1C  # dark red, white text: readable over any screen
FOREGROUND = 0xFFFFFF
PAD = 8
MARGIN = 12
UNICODE_FONT = b"-misc-fixed-bold-r-normal--13-*-*-*-*-*-iso10646-1"
FALLBACK_FONT = b"fixed"


class _XCharStruct(Structure):
    _fields_ = [
        ("lbearing", c_short),
        ("rbearing", c_short),
        ("width", c_short),
        ("ascent", c_short),
        ("descent", c_short),
        ("attributes", c_ushort),
    ]


class _XFontStruct(Structure):
    _fields_ = [
        ("ext_data", c_void_p),
        ("fid", c_ulong),
        ("direction", c_uint),
        ("min_char_or_byte2", c_uint),
        ("max_char_or_byte2", c_uint),
        ("min_byte1", c_uint),
        ("max_byte1", c_uint),
        ("all_chars_exist", c_int),
        ("default_char", c_uint),
        ("n_properties", c_int),
        ("properties", c_void_p),
        ("min_bounds", _XCharStruct),
        ("max_bounds", _XCharStruct),
        ("per_char", c_void_p),
        ("ascent", c_int),
        ("descent", c_int),
    ]


def _read_commands(stream: IO[str], commands: queue.Queue[str | None], wake: int) -> None:
    for line in stream:
        commands.put(line)
        os.write(wake, b"x")
    commands.put(None)  # the agent has gone or asked us to end
    os.write(wake, b"x")


class _Window:
    def __init__(self) -> None:
        x = load_xlib()
        self.x = x
        name = os.environ.get("DISPLAY", "")
        if not name:
            raise X11Missing("no X display (DISPLAY is not set)")
        self.dpy = x.XOpenDisplay(name.encode())
        if not self.dpy:
            raise X11Missing(f"cannot open the X display {name}")
        self.screen = x.XDefaultScreen(self.dpy)
        self.root = x.XRootWindow(self.dpy, self.screen)
        self.gc = x.XDefaultGC(self.dpy, self.screen)
        self.wide = True
        font = x.XLoadQueryFont(self.dpy, UNICODE_FONT)
        if not font:
            self.wide = False
            font = x.XLoadQueryFont(self.dpy, FALLBACK_FONT)
        if not font:
            raise X11Missing("the X server has no font (not even 'fixed')")
        self.font = ctypes.cast(font, POINTER(_XFontStruct))
        x.XSetFont(self.dpy, self.gc, self.font.contents.fid)
        attrs = XSetWindowAttributes()
        attrs.override_redirect = 1
        attrs.background_pixel = BACKGROUND
        attrs.event_mask = EXPOSURE_MASK | VISIBILITY_CHANGE_MASK | STRUCTURE_NOTIFY_MASK
        self.win = x.XCreateSimpleWindow(
            self.dpy, self.root, 0, 0, 10, 10, 0, FOREGROUND, BACKGROUND
        )
        x.XChangeWindowAttributes(
            self.dpy,
            self.win,
            CW_OVERRIDE_REDIRECT | CW_BACK_PIXEL | CW_EVENT_MASK,
            ctypes.byref(attrs),
        )
        wm_class = x.XInternAtom(self.dpy, b"WM_CLASS", 0)
        string = x.XInternAtom(self.dpy, b"STRING", 0)
        x.XChangeProperty(
            self.dpy,
            self.win,
            wm_class,
            string,
            8,
            PROP_MODE_REPLACE,
            WINDOW_CLASS,
            len(WINDOW_CLASS),
        )
        # Hints for window managers and compositors that look at override-redirect windows.
        state = x.XInternAtom(self.dpy, b"_NET_WM_STATE", 0)
        above = ctypes.c_ulong(x.XInternAtom(self.dpy, b"_NET_WM_STATE_ABOVE", 0))
        x.XChangeProperty(
            self.dpy, self.win, state, XA_ATOM, 32, PROP_MODE_REPLACE, ctypes.byref(above), 1
        )
        self.text = ""
        self.wanted = False
        self.mapped = False

    def set_text(self, text: str) -> None:
        x = self.x
        self.text = text
        encoded = text.encode("utf-8")
        utf8 = x.XInternAtom(self.dpy, b"UTF8_STRING", 0)
        net_name = x.XInternAtom(self.dpy, b"_NET_WM_NAME", 0)
        x.XChangeProperty(
            self.dpy, self.win, net_name, utf8, 8, PROP_MODE_REPLACE, encoded, len(encoded)
        )
        x.XStoreName(self.dpy, self.win, text.encode("latin-1", "replace"))
        font = self.font.contents
        if self.wide:
            width = x.XTextWidth16(self.font, char2b(text), len(text))
        else:
            raw = text.encode("latin-1", "replace")
            width = x.XTextWidth(self.font, raw, len(raw))
        w = width + 2 * PAD
        h = font.ascent + font.descent + 2 * PAD
        screen_w = x.XDisplayWidth(self.dpy, self.screen)
        x.XMoveResizeWindow(self.dpy, self.win, max(0, screen_w - w - MARGIN), MARGIN, w, h)
        self.wanted = True
        x.XMapRaised(self.dpy, self.win)
        self.draw()

    def draw(self) -> None:
        x = self.x
        font = self.font.contents
        x.XClearWindow(self.dpy, self.win)
        x.XSetForeground(self.dpy, self.gc, FOREGROUND)
        y = PAD + font.ascent
        if self.wide:
            x.XDrawString16(self.dpy, self.win, self.gc, PAD, y, char2b(self.text), len(self.text))
        else:
            raw = self.text.encode("latin-1", "replace")
            x.XDrawString(self.dpy, self.win, self.gc, PAD, y, raw, len(raw))

    def handle_events(self) -> bool:
        """Handle what the server sent; True once the window is mapped and drawn."""
        x = self.x
        event = XEvent()
        while x.XPending(self.dpy):
            x.XNextEvent(self.dpy, ctypes.byref(event))
            kind = event.type
            if kind == MAP_NOTIFY:
                self.mapped = True
                self.draw()
            elif kind == UNMAP_NOTIFY:
                self.mapped = False
                if self.wanted:
                    x.XMapRaised(self.dpy, self.win)  # someone hid it: back it comes
            elif kind == VISIBILITY_NOTIFY:
                vis = ctypes.cast(ctypes.byref(event), POINTER(XVisibilityEvent)).contents
                if vis.state != VISIBILITY_UNOBSCURED:
                    x.XRaiseWindow(self.dpy, self.win)  # covered: on top again
            elif kind == EXPOSE:
                self.draw()
        x.XFlush(self.dpy)
        return self.mapped

    def fileno(self) -> int:
        return int(self.x.XConnectionNumber(self.dpy))


def run_x11(stdin: IO[str], stdout: IO[str]) -> int:
    """The window process's loop (see :mod:`klasblik.agent.indicator`)."""
    try:
        window = _Window()
    except X11Missing as exc:
        stdout.write(f"error {exc}\n")
        stdout.flush()
        return 3
    commands: queue.Queue[str | None] = queue.Queue()
    wake_r, wake_w = os.pipe()
    threading.Thread(target=_read_commands, args=(stdin, commands, wake_w), daemon=True).start()
    pending_ack = False
    last_raise = 0.0
    while True:
        while True:
            try:
                line = commands.get_nowait()
            except queue.Empty:
                break
            if line is None:
                return 0
            try:
                request: Any = json.loads(line)
                text = str(request["show"])
            except (ValueError, KeyError, TypeError):
                stdout.write("error bad request\n")
                stdout.flush()
                continue
            window.set_text(text)
            pending_ack = True
        mapped = window.handle_events()
        if pending_ack and mapped:
            window.x.XSync(window.dpy, 0)
            stdout.write("shown\n")
            stdout.flush()
            pending_ack = False
        now = time.monotonic()
        if window.wanted and now - last_raise > 2:
            # Belt and braces for stacking changes that send no VisibilityNotify.
            window.x.XRaiseWindow(window.dpy, window.win)
            window.x.XFlush(window.dpy)
            last_raise = now
        ready, _, _ = select.select([window.fileno(), wake_r], [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 4096)
