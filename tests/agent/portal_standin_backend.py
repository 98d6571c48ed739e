"""A stand-in ScreenCast portal *backend* (org.freedesktop.impl.portal.ScreenCast).

Run as a program on a test's private session bus, beside the real xdg-desktop-portal
(the frontend that programs talk to). It is what a desktop's backend (GNOME, KDE, wlr)
does minus the dialog: every Start is answered at once with one PipeWire node, a real
node of one colour made for that session (``gst-launch-1.0 videotestsrc ! pipewiresink``)
and gone when the session closes, as a compositor's is; with ``persist_mode`` 2 and
``restore_data``, so the real frontend makes, stores and later checks the restore token
itself. Each call and its options are written as one JSON line to the log file, so a test
can see, for example, that the second session came with the restore data (a real backend
then skips its dialog). A file ``answer`` beside the log holding ``decline`` makes Start
answer 1 (the user cancelled); ``no-streams`` makes it succeed with an empty stream list.

    python tests/agent/portal_standin_backend.py BUS_ADDRESS RRGGBB WIDTH HEIGHT FPS LOG
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jeepney import HeaderFields, MessageType, message_bus, new_error, new_method_return
from jeepney.io.blocking import Proxy, open_dbus_connection

BUS_NAME = "org.freedesktop.impl.portal.desktop.klasblik"
IMPL = "org.freedesktop.impl.portal.ScreenCast"


def _plain(value: Any) -> Any:
    """Options as JSON: jeepney's (signature, value) variants unwrapped."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _plain(value[1])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _node_id(name: str) -> int | None:
    out = subprocess.run(["pw-dump"], capture_output=True, check=False, timeout=10)
    try:
        objects = json.loads(out.stdout or b"[]")
    except json.JSONDecodeError:
        return None
    for obj in objects:
        props = (obj.get("info") or {}).get("props") or {}
        if obj.get("type") == "PipeWire:Interface:Node" and props.get("node.name") == name:
            return int(obj["id"])
    return None


def _screen(name: str, colour: str, caps: str) -> tuple[subprocess.Popen[bytes], int]:
    """A live PipeWire video source of one colour: its process and node id."""
    proc = subprocess.Popen(
        ["gst-launch-1.0", "-q", "videotestsrc", "pattern=solid-color",
         f"foreground-color=0xff{colour}", "is-live=true", "!", caps, "!",
         "pipewiresink", "mode=provide",
         f"stream-properties=props,media.class=Video/Source,node.name={name}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        node = _node_id(name)
        if node is not None:
            return proc, node
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"no PipeWire node {name} within 20 s")


def main(argv: list[str]) -> int:
    address, colour, width, height, fps, log_path = argv
    caps = f"video/x-raw,format=BGRx,width={width},height={height},framerate={fps}/1"
    size = ("(ii)", (int(width), int(height)))
    log = Path(log_path)
    answer_file = log.with_name("answer")
    screens: dict[str, subprocess.Popen[bytes]] = {}
    numbers = itertools.count(1)
    conn = open_dbus_connection(bus=address)
    Proxy(message_bus, conn).RequestName(BUS_NAME, 4)  # 4: do not queue
    props = {
        "AvailableSourceTypes": ("u", 1),
        "AvailableCursorModes": ("u", 3),
        "version": ("u", 4),
    }
    # Stopped with SIGTERM at the end of the test module: the screens go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(conn, props, log, answer_file, screens, numbers, colour, caps, size)
    finally:
        for screen in screens.values():
            screen.terminate()
            screen.wait()
    return 0


def serve(
    conn: Any,
    props: dict[str, tuple[str, int]],
    log: Path,
    answer_file: Path,
    screens: dict[str, subprocess.Popen[bytes]],
    numbers: Iterator[int],
    colour: str,
    caps: str,
    size: tuple[str, tuple[int, int]],
) -> None:
    """Answer the frontend's calls until stopped."""
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        fields = msg.header.fields
        iface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member)
        if iface == "org.freedesktop.DBus.Properties":
            if member == "GetAll":
                conn.send(new_method_return(msg, "a{sv}", (props,)))
            elif member == "Get" and msg.body[1] in props:
                conn.send(new_method_return(msg, "v", (props[msg.body[1]],)))
            else:
                conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty"))
            continue
        if iface == "org.freedesktop.impl.portal.Session" and member == "Close":
            screen = screens.pop(str(fields.get(HeaderFields.path)), None)
            if screen is not None:  # the session's stream goes with it
                screen.terminate()
                screen.wait()
            with log.open("a") as f:
                f.write(json.dumps({"call": "Session.Close"}) + "\n")
            conn.send(new_method_return(msg))
            continue
        if iface != IMPL:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
            continue
        options = msg.body[-1]
        with log.open("a") as f:
            f.write(json.dumps({"call": member, "options": _plain(options)}) + "\n")
        results: dict[str, Any] = {}
        code = 0
        if member == "Start":
            answer = answer_file.read_text().strip() if answer_file.exists() else "ok"
            if answer == "decline":
                code = 1
            elif answer == "no-streams":
                results = {"streams": ("a(ua{sv})", [])}
            else:
                proc, node = _screen(f"klasblik-test-screen-{next(numbers)}", colour, caps)
                screens[str(msg.body[1])] = proc  # Start(handle, session_handle, ...)
                stream = (node, {"source_type": ("u", 1), "size": size})
                results = {
                    "streams": ("a(ua{sv})", [stream]),
                    "persist_mode": ("u", 2),
                    "restore_data": ("(suv)", ("klasblik-standin", 1, ("s", "monitor-0"))),
                }
        conn.send(new_method_return(msg, "ua{sv}", (code, results)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
