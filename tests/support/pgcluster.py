"""A private PostgreSQL server (initdb in a temporary folder, a free port) that a test may
stop and start again, to see what the server does while its database is away. The
machine's own PostgreSQL is never touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.timing import timeout, wait_for_sync

__all__ = ["PrivatePostgres"]


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's initdb is missing: run scripts/test, which installs postgresql")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` on 127.0.0.1 and a free port; trust authentication, user
    ``postgres``. As root the server runs as the ``postgres`` user (it refuses root)."""

    def __init__(self) -> None:
        self.bin = _bindir()
        # its own folder under /tmp: pytest's are private to the user running the tests,
        # and the server may run as the postgres user
        self.root = root = Path(tempfile.mkdtemp(prefix="klasblik-pg-"))
        self.data = root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.fail("runuser is missing: cannot run PostgreSQL as its own user")
            shutil.chown(root, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout(60),
            cwd=self.root,
        )
        if done.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

        def answering() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(0.5)):
                    return True
            except OSError:
                return False

        wait_for_sync(answering, timeout(30), f"private PostgreSQL on {self.port}", interval=0.05)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
