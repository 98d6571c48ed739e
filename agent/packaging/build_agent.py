"""Build the desktop agent as its own program: a venv from the lock, PyInstaller, a .deb.

    python3.11 agent/packaging/build_agent.py freeze   # build/agent/dist/klasblik-agent/
    python3.11 agent/packaging/build_agent.py deb      # ... and build/agent/klasblik-agent_<v>_<arch>.deb
    python3.11 agent/packaging/build_agent.py msi --frozen DIR   # the Windows MSI, with wixl
    python3.11 agent/packaging/build_agent.py lock     # re-make agent/requirements.lock (needs uv)

The agent's dependencies come only from agent/requirements.lock (hashes required), never
from the server's pyproject. Sources are the agent's and the shared protocol's folders of
this tree, as they are. SOURCE_DATE_EPOCH (default: the last commit's time) fixes every
timestamp the build writes; PYTHONHASHSEED is fixed, so two builds of one commit on one
machine give the same .deb (tests/agent/test_agent_package_linux.py checks the .deb step).
Runs on Windows and macOS too (freeze only): the CI workflow
.github/workflows/agent-windows.yml calls it there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agent"))
from klasblik.agent.native_host import (  # noqa: E402  (the agent's own code, this tree)
    DEFAULT_EXTENSION_ID,
    HOST_NAME,
    host_manifest,
)

AGENT = REPO / "agent"
LOCK = AGENT / "requirements.lock"
VERSION = "0.1.0"
NAME = "klasblik-agent"


def extension_ids() -> list[str]:
    """The extension ids the native host answers (KLASBLIK_EXTENSION_IDS, comma separated)."""
    ids = os.environ.get("KLASBLIK_EXTENSION_IDS", DEFAULT_EXTENSION_ID)
    return [i.strip() for i in ids.split(",") if i.strip()]


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 315532800  # 1980-01-01, the earliest a zip can say


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(source_date_epoch())
    env["PYTHONHASHSEED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def _bin(venv_dir: Path, name: str) -> Path:
    sub = "Scripts" if sys.platform == "win32" else "bin"
    return venv_dir / sub / (name + (".exe" if sys.platform == "win32" else ""))


def make_venv(build: Path) -> Path:
    """A fresh venv with exactly the locked packages (pip checks every hash)."""
    venv_dir = build / "venv"
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    python = _bin(venv_dir, "python")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            str(LOCK),
        ],
        check=True,
        env=_env(),
    )
    return python


def freeze(build: Path) -> Path:
    """PyInstaller, one folder (starts fast, no unpacking at each start)."""
    python = make_venv(build)
    entry = AGENT / "packaging" / "klasblik_agent_main.py"
    args = [
        str(python),
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level=WARN",
        "--onedir",
        "--name",
        NAME,
        "--paths",
        str(AGENT),
        "--paths",
        str(REPO / "server"),
        "--distpath",
        str(build / "dist"),
        "--workpath",
        str(build / "work"),
        "--specpath",
        str(build),
        "--hidden-import",
        "klasblik.agent.indicator_x11",
        "--hidden-import",
        "klasblik.agent.indicator_tk",
        "--hidden-import",
        "klasblik.agent.wayland",
        "--hidden-import",
        "klasblik.agent.portal_capture",  # imported when the session is Wayland
        "--hidden-import",
        "klasblik.agent.screencast",
    ]
    if sys.platform.startswith("linux"):
        args += ["--exclude-module", "tkinter"]  # the X11 sign needs no toolkit
    if sys.platform == "win32":
        args += ["--noconsole"]  # no console window at sign-in
    subprocess.run([*args, str(entry)], check=True, env=_env(), cwd=build)
    return build / "dist" / NAME


_DESKTOP = """[Desktop Entry]
Type=Application
Name=Klasblik
Comment=Shows this screen to the student's own teacher, only while the teacher looks
Exec=/opt/klasblik-agent/klasblik-agent --config /etc/klasblik/agent.toml --log-file ~/.local/state/klasblik/agent.log
X-GNOME-Autostart-enabled=true
NoDisplay=true
Terminal=false
"""

_CONTROL = """Package: klasblik-agent
Version: {version}
Architecture: {arch}
Maintainer: Klasblik <klasblik@localhost>
Section: misc
Priority: optional
Depends: libc6, libx11-6, x11-utils
Recommends: xdg-desktop-portal, gstreamer1.0-tools, gstreamer1.0-pipewire, gstreamer1.0-plugins-base
Description: Klasblik desktop agent (classroom screen view, only while a teacher watches)
 Starts in every user's graphical session (XDG autostart) and connects to the school's
 Klasblik server given in /etc/klasblik/agent.toml. While a teacher watches, a red sign
 on screen names the teacher.
"""

_POSTINST = """#!/bin/sh
set -e
# The settings file is IT's: readable by the users whose session runs the agent, writable
# by root only. Installed empty of secrets: IT pushes server and token into it.
if [ -f /etc/klasblik/agent.toml ]; then
  chown root:root /etc/klasblik/agent.toml
  chmod 0644 /etc/klasblik/agent.toml
fi
exit 0
"""

_EXAMPLE_CONFIG = """# Klasblik desktop agent settings (docs/agent.md). IT fills these in, e.g. with the
# configuration management that installs the package.
# server = "wss://klasblik.school.example/ws/agent"
# token = "<enrollment token>"
# The account: set KLASBLIK_AGENT_ACCOUNT per user, or account = "..." per device.
"""


def make_deb(frozen: Path, out_dir: Path) -> Path:
    """A .deb with the frozen folder under /opt and an XDG autostart entry for every user."""
    epoch = source_date_epoch()
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    root = out_dir / "debroot"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(frozen, root / "opt" / NAME, symlinks=True)
    (root / "etc" / "xdg" / "autostart").mkdir(parents=True)
    (root / "etc" / "xdg" / "autostart" / "klasblik-agent.desktop").write_text(_DESKTOP)
    # The native messaging host: the Klasblik extension asks it this PC's device id.
    manifest = json.dumps(
        host_manifest(f"/opt/{NAME}/{NAME}", extension_ids()), indent=2, sort_keys=True
    )
    for browser_dir in (
        "etc/opt/chrome/native-messaging-hosts",
        "etc/chromium/native-messaging-hosts",
        "etc/opt/edge/native-messaging-hosts",
    ):
        (root / browser_dir).mkdir(parents=True)
        (root / browser_dir / f"{HOST_NAME}.json").write_text(manifest + "\n")
    (root / "etc" / "klasblik").mkdir(parents=True)
    (root / "etc" / "klasblik" / "agent.toml").write_text(_EXAMPLE_CONFIG)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(_CONTROL.format(version=VERSION, arch=arch))
    (root / "DEBIAN" / "conffiles").write_text("/etc/klasblik/agent.toml\n")
    (root / "DEBIAN" / "postinst").write_text(_POSTINST)
    (root / "DEBIAN" / "postinst").chmod(0o755)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod((mode & 0o111 and 0o755) or 0o644 if path.is_file() else 0o755)
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    deb = out_dir / f"{NAME}_{VERSION}_{arch}.deb"
    env = _env()
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(deb)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return deb


WXS = REPO / "deploy" / "agent" / "windows" / "klasblik-agent.wxs"


def make_msi(frozen: Path, out_dir: Path, version: str = VERSION) -> Path:
    """The Windows MSI from a frozen Windows folder, with wixl (Debian msitools) on Linux.

    ``frozen`` holds klasblik-agent.exe and _internal/ as PyInstaller made them on Windows
    (the CI workflow's artifact). wixl-heat lists every file as a component of its own.
    """
    if not (frozen / "klasblik-agent.exe").is_file():
        raise FileNotFoundError(f"{frozen} has no klasblik-agent.exe (build it on Windows)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Chrome and Edge find the host through HKLM (the .wxs); on Windows the manifest's path
    # is relative to the manifest itself.
    (frozen / f"{HOST_NAME}.json").write_text(
        json.dumps(host_manifest(f"{NAME}.exe", extension_ids()), indent=2, sort_keys=True) + "\n"
    )
    files = sorted(
        str(p.relative_to(frozen.parent)).replace(os.sep, "/")
        for p in frozen.rglob("*")
        if p.is_file()
    )
    heat = subprocess.run(
        [
            "wixl-heat",
            "--prefix",
            frozen.name + "/",
            "--directory-ref",
            "INSTALLDIR",
            "--component-group",
            "AgentFiles",
            "--var",
            "var.SourceDir",
            "--win64",
        ],
        input="\n".join(files) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fragment = out_dir / "agent-files.wxs"
    fragment.write_text(heat)
    msi = out_dir / f"klasblik-agent-{version}-x64.msi"
    subprocess.run(
        [
            "wixl",
            "-a",
            "x64",
            "-D",
            f"Version={version}",
            "-D",
            f"SourceDir={frozen.name}",  # wixl wants it relative: run from its parent
            "-D",
            "Win64=yes",
            "-o",
            str(msi),
            str(WXS),
            str(fragment),
        ],
        check=True,
        capture_output=True,
        cwd=frozen.parent,
    )
    return msi


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["freeze", "deb", "msi", "lock"])
    parser.add_argument("--build", type=Path, default=REPO / "build" / "agent")
    parser.add_argument(
        "--frozen", type=Path, help="msi: the frozen Windows folder (from the CI workflow)"
    )
    args = parser.parse_args(argv)
    build: Path = args.build.resolve()
    build.mkdir(parents=True, exist_ok=True)
    if args.what == "lock":
        subprocess.run(
            [
                "uv",
                "pip",
                "compile",
                "--universal",
                "--generate-hashes",
                "--python-version",
                "3.11",
                "-q",
                "-o",
                str(LOCK),
                str(AGENT / "requirements.in"),
            ],
            check=True,
        )
        return 0
    if args.what == "msi":
        if args.frozen is None:
            parser.error("msi needs --frozen <folder with klasblik-agent.exe>")
        print(f"msi: {make_msi(args.frozen.resolve(), build)}")
        return 0
    started = time.monotonic()
    frozen = freeze(build)
    print(f"frozen: {frozen} ({time.monotonic() - started:.0f} s)")
    if args.what == "deb":
        deb = make_deb(frozen, build)
        print(f"deb: {deb} sha256 {sha256(deb)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
