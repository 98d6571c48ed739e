"""The Linux package IT deploys: the frozen agent (PyInstaller) in a .deb with autostart.

Built once per run from agent/requirements.lock (agent/packaging/build_agent.py: a fresh venv,
hashes checked, PyInstaller; about 90 s on two shared cores, plus about 15 s per .deb),
unpacked with ``dpkg -x`` into a temporary root, started under Xvfb as a session would
start it, and streaming to the real server. KLASBLIK_AGENT_FROZEN=<folder> reuses a
frozen folder built earlier (for working on these tests; the suite builds afresh).
"""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from klasblik import protocol as p
from tests.agent.agent_xscreen import XPainter, Xvfb
from tests.agent.test_agent_indicator import indicator_windows
from tests.agent.test_agent_live_server import ANNA, WAIT_S, Dashboard, _close, _quadrants
from tests.support.live import LiveServer
from tests.support.process import terminate
from tests.support.timing import timeout, wait_for

pytestmark = [pytest.mark.xvfb, pytest.mark.package]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agent" / "packaging"))
import build_agent as agent_build  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(frozen folder, .deb), built once for this module."""
    out = tmp_path_factory.mktemp("agent-build")
    started = time.monotonic()
    reuse = os.environ.get("KLASBLIK_AGENT_FROZEN")
    try:
        frozen = Path(reuse) if reuse else agent_build.freeze(out)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"the frozen agent did not build: {exc}")
    froze = time.monotonic() - started
    deb = agent_build.make_deb(frozen, out)
    print(f"\nagent build: freeze {froze:.0f} s, deb {time.monotonic() - started - froze:.0f} s")
    yield frozen, deb


def test_deb_has_the_program_the_autostart_and_the_settings_file(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, deb = built
    info = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True)
    assert "Package: klasblik-agent" in info.stdout and "Version: 0.1.0" in info.stdout
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert "root/root" in listing and "./opt/klasblik-agent/klasblik-agent" in listing
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/klasblik/agent.toml"]
    exe = root / "opt" / "klasblik-agent" / "klasblik-agent"
    assert os.access(exe, os.X_OK)
    for browser in ("opt/chrome", "chromium", "opt/edge"):
        manifest = json.loads(
            (
                root / "etc" / browser / "native-messaging-hosts" / "nl.klasblik.agent.json"
            ).read_text()
        )
        assert manifest["path"] == "/opt/klasblik-agent/klasblik-agent"
        assert manifest["allowed_origins"] == [
            "chrome-extension://pgjabdacfpfkjngppdndmipkbnmcgbbg/"
        ]
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(root / "etc" / "xdg" / "autostart" / "klasblik-agent.desktop")
    entry = desktop["Desktop Entry"]
    assert entry["Type"] == "Application"
    exec_args = shlex.split(entry["Exec"])
    assert exec_args[0] == "/opt/klasblik-agent/klasblik-agent"
    assert exec_args[exec_args.index("--config") + 1] == "/etc/klasblik/agent.toml"


def test_deb_is_reproducible(built: tuple[Path, Path], tmp_path: Path) -> None:
    """The same frozen folder and commit give a byte-identical .deb."""
    frozen, deb = built
    again = agent_build.make_deb(frozen, tmp_path)
    assert agent_build.sha256(again) == agent_build.sha256(deb)


def test_frozen_agent_refuses_a_bad_setting_with_exit_2(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    frozen, _ = built
    done = subprocess.run(
        [
            str(frozen / "klasblik-agent"),
            "--server",
            "http://x",
            "--token",
            "t",
            "--account",
            "a@b.c",
        ],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 2 and "setting server" in done.stderr


def test_frozen_agent_is_the_native_messaging_host(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    frozen, _ = built
    from tests.agent.test_agent_native_host import _frame, host

    (tmp_path / "state" / "klasblik").mkdir(parents=True)
    (tmp_path / "state" / "klasblik" / "device-id").write_text("pc-7\n")
    code, answers = host(_frame({"get": "device"}), tmp_path, [str(frozen / "klasblik-agent")])
    assert code == 0 and answers[0]["device_id"] == "pc-7"


async def test_installed_agent_starts_under_xvfb_and_streams_to_the_server(
    built: tuple[Path, Path],
    live_server: LiveServer,
    xvfb: Xvfb,
    painter: XPainter,
    tmp_path: Path,
) -> None:
    """dpkg -x into a temporary root; run the program as the autostart entry would."""
    _, deb = built
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    exe = root / "opt" / "klasblik-agent" / "klasblik-agent"
    config = tmp_path / "agent.toml"
    config.write_text(f'server = "{live_server.agent_url}"\ntoken = "{live_server.token}"\n')
    ids = await live_server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    painter.show(_quadrants((230, 30, 40)))
    home = tmp_path / "home"
    home.mkdir()
    log = (tmp_path / "agent.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "--config",
        str(config),
        "--account",
        ANNA[0],
        "--language",
        "en",
        env={"DISPLAY": xvfb.display, "HOME": str(home), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    dash: Dashboard | None = None
    try:
        await wait_for(lambda: sid in live_server.hub.agents, WAIT_S, "the frozen agent attached")
        assert indicator_windows(xvfb.display) == []  # nobody watches: no sign
        http = await live_server.login("teacher@school.example")
        dash = Dashboard(await live_server.dashboard(http))
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"] is True
        await wait_for(lambda: dash.frames, WAIT_S, "a grid frame from the frozen agent")
        ref, header, image = dash.frames[0]
        assert ref == sid and header.kind == p.FrameKind.GRID
        thumb = Image.open(io.BytesIO(image)).convert("RGB")
        assert _close(thumb.getpixel((50, 180)), (30, 60, 220)), thumb.getpixel((50, 180))
        [(_, name)] = indicator_windows(xvfb.display)
        assert name.startswith("Klasblik: ") and "is watching your screen (grid)" in name
        assert (await dash.command("unsubscribe", class_id=ids["class_id"]))["success"] is True
        await wait_for(lambda: indicator_windows(xvfb.display) == [], WAIT_S, "the sign gone")
    finally:
        if dash is not None:
            await dash.close()
        await terminate(proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "agent.log").read_text()[-2000:]


async def test_frozen_agent_captures_a_wayland_session_through_the_portal(
    built: tuple[Path, Path],
    live_server: LiveServer,
    xvfb: Xvfb,
    tmp_path: Path,
) -> None:
    """The frozen program in a Wayland session (tests/agent/wayland_stack.py: the real
    xdg-desktop-portal and PipeWire, the stand-in backend; Xvfb plays Xwayland for the sign):
    the grid frame comes through the portal and the system's gst-launch-1.0, which must not
    inherit the bundle's library path; the restore token lands in the state folder."""
    from tests.agent.wayland_stack import COLOUR, desktop_session

    frozen, _ = built
    config = tmp_path / "agent.toml"
    config.write_text(f'server = "{live_server.agent_url}"\ntoken = "{live_server.token}"\n')
    ids = await live_server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    with desktop_session(tmp_path / "desktop", "standin") as desk:
        home = tmp_path / "home"
        home.mkdir()
        env = {**desk.env, "HOME": str(home), "DISPLAY": xvfb.display}
        env.pop("XDG_STATE_HOME", None)
        log = (tmp_path / "agent.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            str(frozen / "klasblik-agent"), "--config", str(config), "--account", ANNA[0],
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        dash: Dashboard | None = None
        try:
            await wait_for(
                lambda: sid in live_server.hub.agents, WAIT_S, "the frozen agent attached"
            )
            http = await live_server.login("teacher@school.example")
            dash = Dashboard(await live_server.dashboard(http))
            assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"] is True
            await wait_for(lambda: dash.frames, WAIT_S, "a grid frame through the portal")
            _, _, image = dash.frames[0]
            thumb = Image.open(io.BytesIO(image)).convert("RGB")
            assert _close(thumb.getpixel((thumb.width // 2, thumb.height // 2)), COLOUR)
            token = home / ".local" / "state" / "klasblik" / "wayland-restore-token"
            assert token.exists()
        finally:
            if dash is not None:
                await dash.close()
            await terminate(proc)
            log.close()
    assert proc.returncode == 0, (tmp_path / "agent.log").read_text()[-2000:]
