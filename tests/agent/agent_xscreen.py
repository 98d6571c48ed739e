"""Test tooling for a real X screen: start Xvfb, paint a known image on its root window.

A tiny Xlib client through ctypes (libX11 comes with Xvfb; the prototypes are the agent's
own, in klasblik.agent.x11), so no window manager or image viewer is needed. Used by the agent tests and by bench/agent_capture.py.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from klasblik.agent.x11 import PROP_MODE_REPLACE, XA_WINDOW, ZPIXMAP, X11Missing, load_xlib
from tests.support.timing import timeout

__all__ = ["XPainter", "Xvfb", "XvfbMissing", "start_xvfb"]


class XvfbMissing(RuntimeError):
    """Xvfb is not installed or did not start."""


@dataclass(frozen=True)
class Xvfb:
    display: str
    width: int
    height: int
    process: subprocess.Popen[bytes]


@contextmanager
def start_xvfb(width: int = 1280, height: int = 720) -> Iterator[Xvfb]:
    """Run ``Xvfb`` on a free display number (it picks one: -displayfd) for the block."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise XvfbMissing(
            "Xvfb is not installed (Debian package xvfb; scripts/lib/system-packages)"
        )
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
            "-noreset",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            number = pipe.readline().strip()
        if not number:
            proc.kill()
            err = proc.communicate(timeout=timeout(10))[1].decode(errors="replace")[-500:]
            raise XvfbMissing(f"Xvfb did not start: {err}")
        yield Xvfb(f":{number.decode()}", width, height, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


class XPainter:
    """Draws on the root window of an X display and sets the active window's title."""

    def __init__(self, display: str) -> None:
        try:
            x = load_xlib()
        except X11Missing as exc:
            raise XvfbMissing(str(exc)) from None
        self._x = x
        self._dpy = x.XOpenDisplay(display.encode())
        if not self._dpy:
            raise XvfbMissing(f"cannot open X display {display}")
        self._screen = x.XDefaultScreen(self._dpy)
        self._root = x.XRootWindow(self._dpy, self._screen)

    def show(self, image: Image.Image) -> None:
        """Put ``image`` on the root window at (0, 0) and wait until the server has it."""
        x = self._x
        width, height = image.size
        data = image.convert("RGB").tobytes("raw", "BGRX")
        buf = ctypes.create_string_buffer(data, len(data))
        ximage = x.XCreateImage(
            self._dpy,
            x.XDefaultVisual(self._dpy, self._screen),
            x.XDefaultDepth(self._dpy, self._screen),
            ZPIXMAP,
            0,
            buf,
            width,
            height,
            32,
            0,
        )
        if not ximage:
            raise RuntimeError("XCreateImage failed")
        try:
            x.XPutImage(
                self._dpy,
                self._root,
                x.XDefaultGC(self._dpy, self._screen),
                ximage,
                0,
                0,
                0,
                0,
                width,
                height,
            )
            x.XSync(self._dpy, 0)
        finally:
            x.XFree(ximage)  # the struct only; the pixels belong to ``buf``

    def set_active_window_title(self, title: str) -> int:
        """Make a window titled ``title`` and name it in the root's _NET_ACTIVE_WINDOW."""
        x = self._x
        win = x.XCreateSimpleWindow(self._dpy, self._root, 0, 0, 10, 10, 0, 0, 0)
        utf8 = x.XInternAtom(self._dpy, b"UTF8_STRING", 0)
        net_name = x.XInternAtom(self._dpy, b"_NET_WM_NAME", 0)
        encoded = title.encode("utf-8")
        x.XChangeProperty(
            self._dpy,
            win,
            net_name,
            utf8,
            8,
            PROP_MODE_REPLACE,
            ctypes.c_char_p(encoded),
            len(encoded),
        )
        active = x.XInternAtom(self._dpy, b"_NET_ACTIVE_WINDOW", 0)
        value = ctypes.c_ulong(win)
        x.XChangeProperty(
            self._dpy,
            self._root,
            active,
            XA_WINDOW,
            32,
            PROP_MODE_REPLACE,
            ctypes.byref(value),
            1,
        )
        x.XSync(self._dpy, 0)
        return int(win)

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None
