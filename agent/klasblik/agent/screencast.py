"""The ScreenCast desktop portal conversation, over the session D-Bus (jeepney).

``org.freedesktop.portal.ScreenCast`` (xdg-desktop-portal) is how a Wayland program may
see the screen: ``CreateSession``, ``SelectSources`` (a monitor; ``persist_mode`` 2 and the
``restore_token`` of last time, so the desktop need not ask the student again), ``Start``
(the desktop asks, or restores the earlier answer, and names the PipeWire stream) and
``OpenPipeWireRemote`` (a PipeWire socket for reading it). Every request answers through
a ``Response`` signal on its own request object; the match for it is in place before the
call, so no answer can slip by. The restore token that ``Start`` hands back is single-use:
it is kept (in the agent's state folder, readable by this user only) and replaced by the
new one at every session.

The session lives as long as this D-Bus connection: :meth:`ScreenCastSession.close`
ends it (``Session.Close``) and the portal's stream with it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, MatchRule, message_bus, new_method_call
from jeepney.io.blocking import DBusConnection, Proxy, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from klasblik.agent.wayland import PORTAL_BUS_NAME, PORTAL_PATH, SCREENCAST

__all__ = [
    "PERSIST_UNTIL_REVOKED",
    "SOURCE_MONITOR",
    "PortalRefused",
    "RestoreTokenStore",
    "ScreenCastSession",
    "open_screencast",
]

#: ``persist_mode`` 2: the permission lasts until the user revokes it (not just this run)
PERSIST_UNTIL_REVOKED = 2
#: ``types`` bit for a monitor (1); windows (2) and virtual screens (4) are not asked for
SOURCE_MONITOR = 1
#: ``cursor_mode`` 2: the pointer drawn into the picture, as on X11
_CURSOR_EMBEDDED = 2
_REQUEST = "org.freedesktop.portal.Request"
_SESSION = "org.freedesktop.portal.Session"
#: a portal answers CreateSession and SelectSources at once; Start may wait for the student
_QUICK_S = 10.0
_TOKEN_FILE = "wayland-restore-token"


class PortalRefused(Exception):
    """The portal did not give a stream; ``reason`` is for the teacher's tile."""

    def __init__(self, reason: str, *, declined: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        #: the student (or the desktop for them) said no: do not ask again at once
        self.declined = declined


class RestoreTokenStore:
    """The portal's latest restore token, in ``state_dir/wayland-restore-token``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / _TOKEN_FILE

    def load(self) -> str | None:
        """The stored token, or None when there is none (or it cannot be read)."""
        try:
            token = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        # The portal makes UUID-like tokens; anything odd is not sent back to it.
        if not token or len(token) > 256 or not token.isprintable():
            return None
        return token

    def save(self, token: str) -> None:
        """Keep ``token`` (replacing the used one), readable by this user only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token)
        os.replace(tmp, self.path)


@dataclass
class ScreenCastSession:
    """A started portal session: the PipeWire socket and the stream's node id."""

    conn: DBusConnection
    session_handle: str
    pipewire_fd: int
    node_id: int
    #: the stream's size in pixels as the portal reported it (None if it did not)
    size: tuple[int, int] | None
    #: the token ``Start`` returned (None: the portal keeps no permission)
    restore_token: str | None
    #: whether this session sent a stored restore token to the portal
    used_restore_token: bool

    def close(self) -> None:
        """End the portal session (the desktop stops its stream) and the connection."""
        try:
            with contextlib.suppress(Exception):
                session = DBusAddress(
                    self.session_handle, bus_name=PORTAL_BUS_NAME, interface=_SESSION
                )
                self.conn.send_and_get_reply(new_method_call(session, "Close"), timeout=_QUICK_S)
        finally:
            with contextlib.suppress(OSError):
                os.close(self.pipewire_fd)
            self.conn.close()


def _variant(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("u", value)
    return ("s", str(value))


class _Portal:
    def __init__(self, conn: DBusConnection) -> None:
        self.conn = conn
        self.screencast = DBusAddress(PORTAL_PATH, bus_name=PORTAL_BUS_NAME, interface=SCREENCAST)
        assert conn.unique_name is not None
        self._sender = conn.unique_name.lstrip(":").replace(".", "_")

    def request(
        self,
        method: str,
        signature: str,
        args: tuple[Any, ...],
        options: dict[str, Any],
        wait_s: float,
    ) -> dict[str, Any]:
        """Call ``method`` and return the results of its ``Response`` (code 0), or raise."""
        token = f"klasblik_{secrets.token_hex(6)}"
        path = f"{PORTAL_PATH}/request/{self._sender}/{token}"
        rule = MatchRule(type="signal", interface=_REQUEST, member="Response", path=path)
        Proxy(message_bus, self.conn).AddMatch(rule)
        body = {k: _variant(v) for k, v in options.items()}
        body["handle_token"] = ("s", token)
        with self.conn.filter(rule) as queue:
            try:
                unwrap_msg(
                    self.conn.send_and_get_reply(
                        new_method_call(
                            self.screencast, method, signature + "a{sv}", (*args, body)
                        ),
                        timeout=_QUICK_S,
                    )
                )
            except DBusErrorResponse as exc:
                raise PortalRefused(
                    f"the ScreenCast portal refused {method}: {exc.name} {exc.data}"
                ) from exc
            except TimeoutError as exc:
                raise PortalRefused(f"the ScreenCast portal did not answer {method}") from exc
            try:
                signal = self.conn.recv_until_filtered(queue, timeout=wait_s)
            except TimeoutError as exc:
                # Closing the request takes the dialog off the screen.
                with contextlib.suppress(Exception):
                    req = DBusAddress(path, bus_name=PORTAL_BUS_NAME, interface=_REQUEST)
                    self.conn.send_and_get_reply(new_method_call(req, "Close"), timeout=_QUICK_S)
                raise PortalRefused(
                    f"nobody answered the screen-sharing question within {wait_s:.0f} seconds "
                    f"(portal {method})"
                ) from exc
        code, results = signal.body
        if code == 1:
            raise PortalRefused(
                "the student declined screen sharing in the desktop's dialog (portal "
                f"{method} answered: cancelled); asked again at the next watch",
                declined=True,
            )
        if code != 0:
            raise PortalRefused(
                f"the ScreenCast portal ended {method} without a stream (code {code})"
            )
        return {k: v[1] for k, v in results.items()}


def open_screencast(
    bus_address: str, tokens: RestoreTokenStore | None, start_wait_s: float = 120.0
) -> ScreenCastSession:
    """Ask the portal for one monitor's stream; raise :class:`PortalRefused` with a reason."""
    try:
        conn = open_dbus_connection(bus=bus_address, enable_fds=True)
    except Exception as exc:
        raise PortalRefused(f"cannot reach the D-Bus session bus ({exc})") from exc
    try:
        portal = _Portal(conn)
        created = portal.request(
            "CreateSession",
            "",
            (),
            {"session_handle_token": f"klasblik_{secrets.token_hex(6)}"},
            _QUICK_S,
        )
        session_handle = str(created.get("session_handle", ""))
        if not session_handle:
            raise PortalRefused("the ScreenCast portal made no session")
        restore = tokens.load() if tokens is not None else None
        options: dict[str, Any] = {
            "types": SOURCE_MONITOR,
            "multiple": False,
            "cursor_mode": _CURSOR_EMBEDDED,
            "persist_mode": PERSIST_UNTIL_REVOKED,
        }
        if restore is not None:
            options["restore_token"] = restore
        try:
            portal.request("SelectSources", "o", (session_handle,), options, _QUICK_S)
        except PortalRefused as exc:
            if "cursor_mode" not in exc.reason and "InvalidArgs" not in exc.reason:
                raise
            # A portal without cursor modes (ScreenCast version 1) refuses the option.
            del options["cursor_mode"]
            portal.request("SelectSources", "o", (session_handle,), options, _QUICK_S)
        started = portal.request("Start", "os", (session_handle, ""), {}, start_wait_s)
        streams = started.get("streams") or []
        if not streams:
            raise PortalRefused("the ScreenCast portal started without a stream")
        try:
            node_id, props = streams[0]
            node_id = int(node_id)
            size_v = props.get("size")
            size = (int(size_v[1][0]), int(size_v[1][1])) if size_v else None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise PortalRefused(
                "the ScreenCast portal answered Start with a malformed stream"
            ) from exc
        new_token = started.get("restore_token")
        if tokens is not None and isinstance(new_token, str) and new_token:
            tokens.save(new_token)
        try:
            reply = unwrap_msg(
                conn.send_and_get_reply(
                    new_method_call(
                        portal.screencast, "OpenPipeWireRemote", "oa{sv}", (session_handle, {})
                    ),
                    timeout=_QUICK_S,
                )
            )
        except (DBusErrorResponse, TimeoutError) as exc:
            raise PortalRefused(f"the ScreenCast portal gave no PipeWire socket ({exc})") from exc
        fd = reply[0].to_raw_fd()
        return ScreenCastSession(
            conn,
            session_handle,
            fd,
            int(node_id),
            size,
            new_token if isinstance(new_token, str) and new_token else None,
            restore is not None,
        )
    except BaseException:
        conn.close()
        raise
