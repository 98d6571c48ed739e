"""The title of the active window, best effort per platform (a desktop has no tab list)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

__all__ = ["active_window_title", "parse_active_window_id", "parse_window_name"]

_TIMEOUT_S = 2.0


def parse_active_window_id(xprop_output: str) -> str | None:
    """The window id from ``xprop -root _NET_ACTIVE_WINDOW`` output, or None."""
    match = re.search(r"window id # (0x[0-9a-fA-F]+)", xprop_output)
    if match is None or int(match.group(1), 16) == 0:
        return None
    return match.group(1)


def parse_window_name(xprop_output: str) -> str | None:
    """The title from ``xprop -id ID _NET_WM_NAME WM_NAME`` output (first one set)."""
    for line in xprop_output.splitlines():
        match = re.match(r'\s*(?:_NET_WM_NAME|WM_NAME)\(\w+\) = "(.*)"\s*$', line)
        if match:
            return re.sub(r"\\(.)", r"\1", match.group(1))
    return None


def _xprop(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["xprop", *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _x11_title() -> str | None:
    if not os.environ.get("DISPLAY") or shutil.which("xprop") is None:
        return None
    root = _xprop("-root", "_NET_ACTIVE_WINDOW")
    window = parse_active_window_id(root) if root else None
    if window is None:
        return None
    props = _xprop("-id", window, "_NET_WM_NAME", "WM_NAME")
    return parse_window_name(props) if props else None


# ctypes.windll exists only on Windows; typeshed (and so mypy) knows that per platform.
if sys.platform == "win32":

    def _windows_title() -> str | None:
        import ctypes

        user32 = ctypes.windll.user32
        hwnd = user32.GetForegroundWindow()
        if not hwnd:
            return None
        length = user32.GetWindowTextLengthW(hwnd)
        buf = ctypes.create_unicode_buffer(length + 1)
        user32.GetWindowTextW(hwnd, buf, length + 1)
        return buf.value

else:

    def _windows_title() -> str | None:
        return None


def active_window_title(platform: str = sys.platform) -> str | None:
    """The active window's title, or None when it cannot be known here (never raises)."""
    try:
        if platform == "win32":
            return _windows_title()
        if platform.startswith("linux") or "bsd" in platform:
            return _x11_title()
    except Exception:
        return None
    return None  # macOS: reading other apps' window titles needs a permission prompt
