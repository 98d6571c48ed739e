"""The title of the active window, best effort per platform (a desktop has no tab list)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

__all__ = [
    "active_window_centre",
    "active_window_title",
    "parse_active_window_id",
    "parse_window_name",
    "parse_xwininfo_centre",
]

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


def parse_xwininfo_centre(xwininfo_output: str) -> tuple[int, int] | None:
    """The centre of a window from ``xwininfo -id ID`` output (absolute coordinates)."""
    values: dict[str, int] = {}
    for key, pattern in (
        ("x", r"Absolute upper-left X:\s+(-?\d+)"),
        ("y", r"Absolute upper-left Y:\s+(-?\d+)"),
        ("w", r"Width:\s+(\d+)"),
        ("h", r"Height:\s+(\d+)"),
    ):
        match = re.search(pattern, xwininfo_output)
        if match is None:
            return None
        values[key] = int(match.group(1))
    return values["x"] + values["w"] // 2, values["y"] + values["h"] // 2


def _xprop(*args: str, tool: str = "xprop", display: str | None = None) -> str | None:
    extra = ["-display", display] if display else []
    try:
        done = subprocess.run(
            [tool, *extra, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _x11_centre(display: str | None) -> tuple[int, int] | None:
    if not (display or os.environ.get("DISPLAY")) or shutil.which("xwininfo") is None:
        return None
    root = _xprop("-root", "_NET_ACTIVE_WINDOW", display=display)
    window = parse_active_window_id(root) if root else None
    if window is None:
        return None
    info = _xprop("-id", window, tool="xwininfo", display=display)
    return parse_xwininfo_centre(info) if info else None


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

    def _windows_centre() -> tuple[int, int] | None:
        import ctypes
        from ctypes import wintypes

        user32 = ctypes.windll.user32
        hwnd = user32.GetForegroundWindow()
        rect = wintypes.RECT()
        if not hwnd or not user32.GetWindowRect(hwnd, ctypes.byref(rect)):
            return None
        return (rect.left + rect.right) // 2, (rect.top + rect.bottom) // 2

else:

    def _windows_title() -> str | None:
        return None

    def _windows_centre() -> tuple[int, int] | None:
        return None


def active_window_centre(
    display: str | None = None, platform: str = sys.platform
) -> tuple[int, int] | None:
    """The centre of the active window on the virtual desktop, or None (never raises)."""
    try:
        if platform == "win32":
            return _windows_centre()
        if platform.startswith("linux") or "bsd" in platform:
            return _x11_centre(display)
    except Exception:
        return None
    return None  # macOS: the primary monitor (window positions need a permission)


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
