"""The device's identity: a stable random id kept in a per-user state file, and its OS."""

from __future__ import annotations

import os
import platform
import sys
import uuid
from pathlib import Path

__all__ = ["AGENT_NAME", "default_state_dir", "load_device_id", "os_description", "signed_in_upn"]

AGENT_NAME = "klasblik-agent/0.1.0"


def default_state_dir(platform_name: str = sys.platform) -> Path:
    """Where the agent keeps its state for this user."""
    home = Path.home()
    if platform_name == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "Klasblik"
    if platform_name == "darwin":
        return home / "Library" / "Application Support" / "Klasblik"
    base = os.environ.get("XDG_STATE_HOME")
    return (Path(base) if base else home / ".local" / "state") / "klasblik"


def load_device_id(state_dir: Path) -> str:
    """The id stored in ``state_dir/device-id``; made (random, not personal) on first use."""
    path = state_dir / "device-id"
    try:
        existing = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        existing = ""
    if 1 <= len(existing) <= 128 and existing.isprintable():
        return existing
    new_id = uuid.uuid4().hex
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new_id + "\n", encoding="ascii")
    os.replace(tmp, path)
    return new_id


def os_description() -> str:
    """A short OS name such as ``Windows-10-10.0.22631`` or ``Linux-6.1``, ≤ 128 characters."""
    return platform.platform(terse=True)[:128]


_NAME_USER_PRINCIPAL = 8  # EXTENDED_NAME_FORMAT.NameUserPrincipal


def signed_in_upn(platform_name: str = sys.platform) -> str | None:
    """The signed-in user's UPN (``anna@school.example``) on Windows; None elsewhere or unknown."""
    if platform_name != "win32":
        return None
    try:
        return _windows_upn()
    except (OSError, AttributeError):
        return None


# ctypes.WinDLL exists only on Windows; typeshed (and so mypy) knows that per platform.
if sys.platform == "win32":

    def _windows_upn() -> str | None:
        import ctypes
        from ctypes import wintypes

        get_name = ctypes.WinDLL("secur32").GetUserNameExW
        size = wintypes.ULONG(0)
        get_name(_NAME_USER_PRINCIPAL, None, ctypes.byref(size))
        if size.value == 0:
            return None
        buf = ctypes.create_unicode_buffer(size.value)
        if not get_name(_NAME_USER_PRINCIPAL, buf, ctypes.byref(size)):
            return None
        return buf.value or None

else:

    def _windows_upn() -> str | None:
        return None
