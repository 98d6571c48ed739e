"""Wayland sessions: screen capture goes through the ScreenCast desktop portal.

A Wayland compositor lets no client read the screen; the portal
(``org.freedesktop.portal.ScreenCast`` of xdg-desktop-portal, on the session D-Bus) asks
the user once and hands out a PipeWire stream, and with ``persist_mode`` 2 a restore
token that skips the question next time. This module finds out, over D-Bus (jeepney,
pure Python), whether that portal is there, so that the teacher's tile says exactly why
there is no picture (no session bus, no portal, no ScreenCast interface), or that it is
there and the capture can go through it (``portal_capture.py``; docs/agent.md#wayland).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["PORTAL_BUS_NAME", "PORTAL_PATH", "SCREENCAST", "is_wayland_session", "portal_problem"]

PORTAL_BUS_NAME = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
SCREENCAST = "org.freedesktop.portal.ScreenCast"
_TIMEOUT_S = 3.0


def is_wayland_session(env: Mapping[str, str]) -> bool:
    """A Wayland session, even with Xwayland's DISPLAY (X capture would see only X programs)."""
    return env.get("XDG_SESSION_TYPE") == "wayland" or bool(
        env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")
    )


def portal_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why this Wayland session cannot be captured now (a capture_error reason), or None
    when the ScreenCast portal is there."""
    env = dict(os.environ) if env is None else env
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        return (
            "Wayland session without X: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS not "
            "set) to reach the ScreenCast desktop portal"
        )
    try:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg
    except ImportError:
        return "Wayland session without X: the D-Bus library (jeepney) is missing from this agent"
    try:
        conn = open_dbus_connection(bus=address)
    except Exception as exc:  # refused, no such socket, bad address
        return f"Wayland session without X: cannot reach the D-Bus session bus ({exc})"
    try:
        props = DBusAddress(
            PORTAL_PATH, bus_name=PORTAL_BUS_NAME, interface="org.freedesktop.DBus.Properties"
        )
        try:
            unwrap_msg(
                conn.send_and_get_reply(
                    new_method_call(props, "Get", "ss", (SCREENCAST, "version")),
                    timeout=_TIMEOUT_S,
                )
            )
        except DBusErrorResponse as exc:
            if exc.name in (
                "org.freedesktop.DBus.Error.ServiceUnknown",
                "org.freedesktop.DBus.Error.NameHasNoOwner",
            ):
                return (
                    "Wayland session without the ScreenCast desktop portal: install "
                    "xdg-desktop-portal and the desktop's backend (xdg-desktop-portal-gnome, "
                    "-kde or -wlr), or sign in to an X11 session"
                )
            if exc.name in (
                "org.freedesktop.DBus.Error.UnknownInterface",
                "org.freedesktop.DBus.Error.InvalidArgs",
                "org.freedesktop.DBus.Error.UnknownProperty",
            ):
                return (
                    "Wayland session: the desktop portal has no ScreenCast interface "
                    "(install the desktop's xdg-desktop-portal backend)"
                )
            return f"Wayland session: the desktop portal answered {exc.name}"
        except TimeoutError:
            return "Wayland session: the desktop portal did not answer within 3 seconds"
        return None
    finally:
        conn.close()
