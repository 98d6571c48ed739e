"""Fixtures for browser tests: the real `klasblik serve --demo` and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.chromium import launch
from tests.support.timing import timeout, wait_for_sync

__all__ = ["DEMO_STUDENTS", "ENROLLMENT_TOKEN", "KlasblikServer"]

ROOT = Path(__file__).resolve().parents[2]
#: How long the server may take to answer /healthz after start (a loaded 2-core machine
#: with other test runs: generous, the wait ends as soon as it answers).
STARTUP_TIMEOUT_S = timeout(45.0)
#: Demo students to seed; the demo puts two thirds in its first class.
DEMO_STUDENTS = 45
#: The demo server's enrollment token, so a test can connect an agent of its own.
ENROLLMENT_TOKEN = "browser-test-enrollment-token"
#: How often an open dashboard's sign-in is re-checked (short: the expiry test waits on it).
SESSION_CHECK_S = 0.5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KlasblikServer:
    """A running `klasblik serve --demo` subprocess and its base URL."""

    def __init__(
        self, base_url: str, process: subprocess.Popen[bytes], log: Path, database: Path
    ) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log
        self.database = database

    def class_student_names(self, class_id: int) -> list[str]:
        """Display names of a class's active students, read from the server's database."""
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT s.display_name FROM students s"
                " JOIN class_students cs ON cs.student_id = s.id"
                " WHERE cs.class_id = ? AND s.active",
                (class_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


def _wait_healthy(server: KlasblikServer) -> None:
    last_error = "no answer"

    def healthy() -> bool:
        nonlocal last_error
        if server.process.poll() is not None:
            pytest.fail(
                f"klasblik serve exited with {server.process.returncode} before /healthz "
                f"answered; its log:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=timeout(2)) as answer:
                if answer.status == 200:
                    return True
                last_error = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        return False

    wait_for_sync(
        healthy,
        STARTUP_TIMEOUT_S,
        lambda: f"klasblik serve to answer /healthz ({last_error}); its log:\n{server.log_tail()}",
        interval=0.2,
    )


@pytest.fixture(scope="module")
def klasblik_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KlasblikServer]:
    """`klasblik serve --demo` on a free loopback port, writing only under a tmp dir."""
    exe = ROOT / ".venv" / "bin" / "klasblik"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: run scripts/lib/venv test first")
    tmp = tmp_path_factory.mktemp("klasblik")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_")}
    # 45 demo students make a first class of 30, a full class on one screen.
    env["KLASBLIK_DEMO_STUDENTS"] = str(DEMO_STUDENTS)
    env["KLASBLIK_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp}/k.db"
    env["KLASBLIK_BLOB_STORE"] = f"file:{tmp}/blobs"
    env["KLASBLIK_ENROLLMENT_TOKEN"] = ENROLLMENT_TOKEN
    env["KLASBLIK_DASHBOARD_SESSION_CHECK_S"] = str(SESSION_CHECK_S)
    env["KLASBLIK_LOCATION_CHECK_INTERVAL_S"] = "0.5"  # a location change applies fast
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(exe), "serve", "--demo", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = KlasblikServer(f"http://127.0.0.1:{port}", process, log, tmp / "k.db")
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout(10))


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Headless Debian Chromium through Playwright (never a downloaded browser)."""
    async with launch() as instance:
        yield instance
