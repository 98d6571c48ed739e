"""A private desktop session for the Wayland capture tests: D-Bus, PipeWire, the portal.

``desktop_session`` starts, in a private runtime folder: a session dbus-daemon, pipewire,
wireplumber and the real xdg-desktop-portal frontend, with one of two backends:

- ``standin``: ``portal_standin_backend.py`` answering the frontend's backend calls
  without a dialog, with a fresh real PipeWire video node of one known colour for each
  session (GStreamer's ``videotestsrc ! pipewiresink``), as desktop backends make one
  per session;
- ``wlr``: headless sway (``WLR_BACKENDS=headless``, pixman renderer) with a coloured
  background and xdg-desktop-portal-wlr whose chooser is fixed to the one output.

sway refuses to run as root; as root it is started in a user namespace as uid 1000.
Everything stops in reverse order at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jeepney import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

from klasblik.agent.wayland import portal_problem
from tests.support.timing import timeout

__all__ = ["COLOUR", "DesktopSession", "desktop_session"]

#: the stand-in screen's colour (R, G, B); sway's background in the wlr session
COLOUR = (0x20, 0xC0, 0x40)
SIZE = (320, 240)
_PORTAL = "/usr/libexec/xdg-desktop-portal"
_WLR = "/usr/libexec/xdg-desktop-portal-wlr"
_WLR_NAME = "org.freedesktop.impl.portal.desktop.wlr"
_STANDIN = "org.freedesktop.impl.portal.desktop.klasblik"


@dataclass
class DesktopSession:
    env: dict[str, str]
    root: Path
    log: Path  # the stand-in backend's call log
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def logs(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _need(path: str, package: str) -> str:
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found is None:
        pytest.fail(
            f"{path} is not installed (Debian package {package}; scripts/lib/system-packages)"
        )
    return found


def _wait(check: object, what: str, seconds: float) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not come up within {timeout(seconds):.0f} s")


def _name_owned(address: str, name: str) -> bool:
    """Whether ``name`` has an owner on the bus (a service is up)."""
    conn = open_dbus_connection(bus=address)
    try:
        return bool(Proxy(message_bus, conn).NameHasOwner(name)[0])
    finally:
        conn.close()


@contextlib.contextmanager
def desktop_session(
    root: Path, backend: str, size: tuple[int, int] = SIZE, fps: int = 5
) -> Iterator[DesktopSession]:
    """A running private desktop session with the ScreenCast portal (see the module doc);
    the stand-in screen is ``size`` pixels at ``fps`` frames a second."""
    run = root / "run"
    run.mkdir(mode=0o700, parents=True)
    (root / "config").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "XDG_RUNTIME_DIR": str(run),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_SESSION_TYPE": "wayland",
        "LANG": "C.UTF-8",
    }
    session = DesktopSession(env, root, root / "backend-calls.jsonl")

    def start(
        name: str, args: list[str], extra: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logf = (root / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            args,
            env={**env, **(extra or {})},
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        logf.close()
        session.procs.append((name, proc))
        return proc

    try:
        dbus = subprocess.Popen(
            [_need("dbus-daemon", "dbus-daemon"), "--session", "--nofork", "--print-address",
             f"--address=unix:path={run}/bus"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        session.procs.append(("dbus", dbus))
        assert dbus.stdout is not None
        address = dbus.stdout.readline().decode().strip()
        if not address:
            pytest.fail("dbus-daemon did not start")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        start("pipewire", [_need("pipewire", "pipewire")])
        _wait(lambda: (run / "pipewire-0").exists(), "pipewire", 10)
        start("wireplumber", [_need("wireplumber", "wireplumber")])
        if backend == "standin":
            _need("gst-launch-1.0", "gstreamer1.0-tools")
            _need("pw-dump", "pipewire-bin")
            portals = root / "portals"
            portals.mkdir()
            (portals / "klasblik.portal").write_text(
                "[portal]\nDBusName=org.freedesktop.impl.portal.desktop.klasblik\n"
                "Interfaces=org.freedesktop.impl.portal.ScreenCast;\nUseIn=klasblik-test;\n"
            )
            start(
                "backend",
                [sys.executable, str(Path(__file__).with_name("portal_standin_backend.py")), address,
                 "{:02x}{:02x}{:02x}".format(*COLOUR), str(size[0]), str(size[1]), str(fps),
                 str(session.log)],
                {"PYTHONPATH": os.pathsep.join(sys.path)},
            )  # fmt: skip
            _wait(lambda: _name_owned(address, _STANDIN), "the stand-in portal backend", 15)
            portal_env = {
                "XDG_DESKTOP_PORTAL_DIR": str(portals),
                "XDG_CURRENT_DESKTOP": "klasblik-test",
            }
        elif backend == "wlr":
            sway = [_need("sway", "sway"), "-c", str(root / "sway.conf")]
            (root / "sway.conf").write_text(
                "xwayland disable\noutput HEADLESS-1 mode 640x480 bg #{:02x}{:02x}{:02x} solid_color\n".format(
                    *COLOUR
                )
            )
            if os.geteuid() == 0:
                sway = ["unshare", "--user", "--map-user=1000", "--map-group=1000", *sway]
            start(
                "sway",
                sway,
                {
                    "WLR_BACKENDS": "headless",
                    "WLR_LIBINPUT_NO_DEVICES": "1",
                    "WLR_RENDERER": "pixman",
                },
            )
            _wait(lambda: (run / "wayland-1").exists() or (run / "wayland-0").exists(), "sway", 10)
            env["WAYLAND_DISPLAY"] = "wayland-1" if (run / "wayland-1").exists() else "wayland-0"
            wlr_conf = root / "config" / "xdg-desktop-portal-wlr"
            wlr_conf.mkdir()
            (wlr_conf / "config").write_text(
                "[screencast]\nchooser_type=none\noutput_name=HEADLESS-1\nmax_fps=5\n"
            )
            start("xdpw", [_need(_WLR, "xdg-desktop-portal-wlr"), "-l", "DEBUG", "-r"])
            _wait(lambda: _name_owned(address, _WLR_NAME), "xdg-desktop-portal-wlr", 15)
            portal_env = {"XDG_CURRENT_DESKTOP": "sway"}
        else:
            raise ValueError(backend)
        env.update(portal_env)
        start("portal", [_need(_PORTAL, "xdg-desktop-portal"), "-v", "-r"])
        _wait(lambda: portal_problem(env) is None, "the ScreenCast portal", 15)
        yield session
    finally:
        for _name, proc in reversed(session.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in reversed(session.procs):
            try:
                proc.wait(timeout=timeout(5))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
