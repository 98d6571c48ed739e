"""A plain, non-editable install serves the whole dashboard.

The wheel is built from the working tree (a copy of it, so that no stale ``build/`` folder
can hide a missing file), installed with ``--no-deps`` into a fresh virtual environment, and
``klasblik serve --demo`` is started from that environment with its embedded defaults. The
dependencies come from the project's own environment through a ``.pth`` file that lists
its site-packages folder as a plain path: such a line adds the folder to ``sys.path`` but
its own ``.pth`` files are not processed, so the editable install's finder never loads and
every ``klasblik`` module is the installed one.

Everything lives under this module's temporary folder; nothing is shared with other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from tests.support.timing import timeout, wait_for_sync

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]

#: Where each dashboard page is served; a new page needs its route here.
PAGES = {
    "signin.html": "/signin",
    "index.html": "/",
    "admin-locations.html": "/admin/locations",
    "admin-audit.html": "/admin/audit",
    "admin-roster.html": "/admin/roster",
}
#: Pages with no route of their own: the refusal page answers a refused page request
#: (server/klasblik/server/web/error_page.py; tests/browser/test_dashboard_states.py).
TEMPLATES = {"error.html"}
#: The content type a browser needs for each kind of asset (module scripts are refused
#: under any other type).
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}

#: Folders of the working tree that are never part of a build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "node_modules",
    ".pytest_cache",
    ".artifacts",
    "klasblik-data",
)


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout(120), **kwargs)
    assert done.returncode == 0, (
        f"{what} failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    )
    return done


def _package_dir(package: str) -> Path:
    """The source folder of ``package`` under pyproject's package-dir mapping."""
    mapping = SETUPTOOLS["package-dir"]
    root = max(
        (k for k in mapping if package == k or package.startswith(k + ".")),
        key=len,
        default=None,
    )
    assert root is not None, f"package {package} is under no package-dir root"
    rest = package[len(root) :].lstrip(".")
    return ROOT / mapping[root] / Path(*rest.split(".")) if rest else ROOT / mapping[root]


def _package_folders() -> dict[str, Path]:
    """Every folder under a package-dir root that holds Python code (an ``__init__.py``, or
    any module, as alembic's versions folder does), by the package name it ships as."""
    found: dict[str, Path] = {}
    for root_pkg, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for d in [base, *sorted(p for p in base.rglob("*") if p.is_dir())]:
            if "__pycache__" in d.parts or not any(d.glob("*.py")):
                continue
            rel = d.relative_to(base).parts
            found[".".join((root_pkg, *rel))] = d
    return found


def _shipped_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix != ".pyc" and p.name != ".DS_Store"
    )


@dataclass
class Install:
    wheel: Path
    python: Path
    klasblik: Path
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Install:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE, symlinks=True)
    out = tmp / "wheel"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        "building the wheel",
    )
    (wheel,) = out.glob("klasblik-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the venv")
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        "installing the wheel",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "KLASBLIK_", "VIRTUAL_ENV"))
    }
    env["PYTHONNOUSERSITE"] = "1"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        "asking the venv for its site-packages",
        env=env,
    ).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "_klasblik_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return Install(wheel, python, venv / "bin" / "klasblik", env, tmp)


def test_every_package_folder_is_listed_in_pyproject():
    """A folder of code under server/, agent/ or dashboard/ that pyproject does not list
    would be left out of the wheel; a listed package whose folder is gone breaks the build."""
    listed = set(SETUPTOOLS["packages"])
    found = _package_folders()
    missing = {name: str(d.relative_to(ROOT)) for name, d in found.items() if name not in listed}
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(p for p in listed if not _package_dir(p).is_dir())
    assert not stale, f"pyproject.toml lists packages whose folder does not exist: {stale}"


def test_the_wheel_holds_every_file_of_every_package(install):
    """Every file of every package folder is in the wheel: the dashboard, the migrations,
    the letters, py.typed."""
    with zipfile.ZipFile(install.wheel) as whl:
        names = set(whl.namelist())
    expected: dict[str, str] = {}
    for package, folder in _package_folders().items():
        for f in _shipped_files(folder):
            expected["/".join([*package.split("."), f.name])] = str(f.relative_to(ROOT))
    missing = sorted(src for arc, src in expected.items() if arc not in names)
    assert not missing, f"the wheel {install.wheel.name} lacks: {missing}"

    # The groups a plain install cannot do without, named, so that none of them can pass
    # by being empty or by its folder dropping out of the search above.
    server = ROOT / "server/klasblik/server"
    groups = {
        "klasblik/dashboard": [p for p in _shipped_files(DASHBOARD) if p.suffix != ".py"],
        "klasblik/server/storage/migrations/versions": sorted(
            (server / "storage/migrations/versions").glob("*.py")
        ),
        "klasblik/server/storage/migrations": [server / "storage/migrations/script.py.mako"],
        "klasblik/server/locations/letters": sorted((server / "locations/letters").glob("*.txt")),
    }
    for arc_dir, files in groups.items():
        assert files and all(f.is_file() for f in files), f"no source files for {arc_dir}"
        absent = [f.name for f in files if f"{arc_dir}/{f.name}" not in names]
        assert not absent, f"{arc_dir}: not in the wheel: {absent}"


def test_the_installed_modules_come_from_the_venv_not_the_source_tree(install):
    """In the venv, the server and the dashboard it serves are the wheel's files: neither
    the source tree nor the editable install's finder is reachable from there."""
    done = _run(
        [
            str(install.python),
            "-c",
            "import json, sys, klasblik.server.app as a, klasblik.dashboard as d;"
            "print(json.dumps([a.__file__, d.__file__, str(a.DASHBOARD_DIR),"
            " [m for m in sys.modules if m.startswith('__editable__')]]))",
        ],
        "importing klasblik in the venv",
        env=install.env,
        cwd=install.tmp,
    )
    app_file, dashboard_file, dashboard_dir, editable = json.loads(done.stdout)
    venv = install.python.parent.parent
    for path in (app_file, dashboard_file, dashboard_dir):
        assert Path(path).is_relative_to(venv), f"{path} is not inside the venv {venv}"
        assert not Path(path).is_relative_to(ROOT), f"{path} is in the source tree"
    assert editable == [], f"the editable install leaked in: {editable}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _fetch(url: str, cookie: str = "", data: bytes | None = None, origin: str = ""):
    headers = {"Cookie": cookie} if cookie else {}
    if origin:
        headers["Origin"] = origin
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _opener.open(req, timeout=timeout(10)) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def _referenced_files() -> set[str]:
    """The local files the pages link to and the scripts import."""
    refs: set[str] = set()
    for html in DASHBOARD.glob("*.html"):
        for ref in re.findall(r'(?:src|href)="([^"#?]+)"', html.read_text()):
            name = ref.removeprefix("/")
            if "/" not in name and "." in name:
                refs.add(name)
    for js in DASHBOARD.glob("*.js"):
        refs.update(re.findall(r"""\bfrom\s+["']\./([^"']+)["']""", js.read_text()))
        refs.update(re.findall(r"""\bimport\s*\(\s*["']\./([^"']+)["']""", js.read_text()))
    return refs


def test_a_plain_install_serves_every_dashboard_page_and_asset(install):
    """`klasblik serve --demo` from the venv, with its defaults (its data folder under a
    temporary working directory), serves every page and asset byte for byte."""
    dashboard_files = {p.name for p in _shipped_files(DASHBOARD) if p.suffix != ".py"}
    unknown = sorted(
        n for n in dashboard_files if n.endswith(".html") and n not in {*PAGES, *TEMPLATES}
    )
    assert not unknown, f"pages with no route in this test's PAGES: {unknown}"
    dangling = sorted(_referenced_files() - dashboard_files)
    assert not dangling, f"the dashboard refers to files that are not in dashboard/: {dangling}"
    assets = sorted(n for n in dashboard_files if not n.endswith(".html"))
    assert all(Path(n).suffix in ASSET_TYPES for n in assets), assets

    work = install.tmp / "serve"
    work.mkdir()
    env = {**install.env, "KLASBLIK_DEMO_STUDENTS": "2"}
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(install.klasblik), "serve", "--demo", "--port", "0"],
            env=env,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = _wait_until_healthy(proc, log_path)
        status, headers, _ = _fetch(base + "/")
        assert (status, headers["Location"]) == (303, "/signin"), _log(log_path)

        status, headers, _ = _fetch(base + "/auth/demo", data=b"", origin=base)
        assert status == 303, _log(log_path)
        jar = SimpleCookie("; ".join(headers.get_all("Set-Cookie") or []))
        assert jar, f"the demo sign-in set no cookie: {headers}"
        cookie = "; ".join(f"{k}={m.value}" for k, m in jar.items())
        # The demo teacher is not an IT admin; make them one so the admin pages are
        # reachable too (the database is this test's own, under its working directory).
        with sqlite3.connect(work / "klasblik-data" / "klasblik.db") as db:
            sql = "UPDATE staff SET is_admin = 1 WHERE username LIKE 'demo.teacher@%'"
            assert db.execute(sql).rowcount == 1

        wrong: list[str] = []
        for name, path in [*PAGES.items(), *((n, "/" + n) for n in assets)]:
            status, headers, body = _fetch(base + path, cookie=cookie)
            want = (DASHBOARD / name).read_bytes()
            if status != 200:
                wrong.append(f"{path}: {status} {body[:200]!r}")
            elif body != want:
                wrong.append(f"{path}: {len(body)} bytes differ from dashboard/{name}")
            elif Path(name).suffix in ASSET_TYPES and ASSET_TYPES[Path(name).suffix] not in (
                headers.get("Content-Type", "")
            ):
                wrong.append(f"{path}: Content-Type {headers.get('Content-Type')}")
        assert not wrong, "the installed server does not serve the dashboard:\n" + "\n".join(wrong)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout(15))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = _log(log_path)
    assert proc.returncode == 0, text
    assert "Klasblik is stopping." in text
    assert "Traceback" not in text, text


def _log(path: Path) -> str:
    return path.read_text(errors="replace")


def _wait_until_healthy(
    proc: subprocess.Popen[bytes], log_path: Path, within: float = timeout(30)
) -> str:
    """The server's address once it prints it and /healthz answers 200."""
    base = ""

    def healthy() -> str:
        nonlocal base
        if proc.poll() is not None:
            raise AssertionError(f"klasblik serve exited {proc.returncode}:\n{_log(log_path)}")
        if not base:
            m = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/", _log(log_path))
            base = m.group(1) if m else ""
        if base:
            try:
                status, _, _ = _fetch(base + "/healthz")
                if status == 200:
                    return base
            except OSError:
                pass
        return ""

    return wait_for_sync(
        healthy,
        within,
        lambda: f"klasblik serve to answer /healthz:\n{_log(log_path)}",
        interval=0.1,
    )
