"""The rules a machine checks, run by the test command: ruff (lint and format), mypy
--strict over server/ and agent/, and the layer contracts of import-linter (pyproject.toml,
``[tool.importlinter]``). Each fails the suite when the tree breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.support.timing import timeout

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["server", "agent", "tests", "bench"]


def _run(
    *cmd: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout(600), check=False
    )


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the tree at ``root``. klasblik is a namespace package spread over
    server/ and agent/: both go on the path, and ``-S`` keeps the editable install's finder
    (a .pth file) from pointing the analysis back at the working tree."""
    site = sysconfig.get_paths()["purelib"]
    path = os.pathsep.join([str(root / "server"), str(root / "agent"), site])
    env = {**os.environ, "PYTHONPATH": path}
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    config = str(root / "pyproject.toml")
    return _run(sys.executable, "-S", "-c", code, "--no-cache", config, cwd=root, env=env)


def test_ruff_lint_is_clean():
    """ruff check finds nothing in server/, agent/, tests/ and bench/."""
    done = _run(str(BIN / "ruff"), "check", "--no-cache", *CHECKED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_kept():
    """Every Python file is as ruff format writes it."""
    done = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", *CHECKED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean():
    """mypy --strict (pyproject.toml, [tool.mypy]) over server/ and agent/ finds nothing."""
    done = _run(str(BIN / "mypy"), "--no-incremental")
    assert done.returncode == 0, done.stdout + done.stderr


def test_layer_contracts_are_kept():
    """Every import-linter contract is kept: the protocol is pure, the server's layers hold,
    storage imports no HTTP, the location and access rules stay pure."""
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_layer_contracts_catch_a_violation(tmp_path):
    """The contracts can fail: a copy of the tree whose location rule imports the hub, and
    whose storage imports aiohttp, is refused, naming both imports."""
    for part in ("server", "agent"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    server = tmp_path / "server" / "klasblik" / "server"
    rule = server / "locations" / "rule.py"
    rule.write_text(rule.read_text() + "\nfrom klasblik.server.live.hub import Hub  # noqa\n")
    models = server / "storage" / "models.py"
    models.write_text(models.read_text() + "\nimport aiohttp  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "klasblik.server.locations.rule -> klasblik.server.live.hub" in done.stdout
    assert "klasblik.server.storage.models -> aiohttp" in done.stdout


def _wait_for_calls(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if "asyncio.wait_for(" in line]


def test_no_asyncio_wait_for_in_the_server_or_the_agent():
    """Python 3.11's ``asyncio.wait_for`` can swallow a cancellation (it returns the result
    when the cancellation comes after the awaited thing finished but before it woke the
    caller; fixed in 3.12), so a task told to stop runs on; a cluster link that did so hung
    a server's shutdown. ``async with asyncio.timeout(...)`` has no such window."""
    assert _wait_for_calls("x = 1\nawait asyncio.wait_for(f(), 2)\n") == [2]  # the rule bites
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("server/klasblik", "agent/klasblik")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n in _wait_for_calls(path.read_text())
    ]
    assert found == [], "use asyncio.timeout instead of asyncio.wait_for: " + ", ".join(found)
