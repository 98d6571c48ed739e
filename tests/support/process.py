"""Running `klasblik serve` as a user does: a subprocess on a free port; and ending an
asyncio subprocess the way a session ends a program."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.timing import timeout, wait_for_sync

KLASBLIK = str(Path(sys.executable).with_name("klasblik"))


async def terminate(proc: asyncio.subprocess.Process, within: float | None = None) -> None:
    """SIGTERM, as a session's end sends it; SIGKILL if it has not ended ``within``."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout(10) if within is None else within)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`klasblik serve` in a subprocess, writing only under ``tmp``."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        full_env = {
            **os.environ,
            "KLASBLIK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/klasblik.db",
            "KLASBLIK_BLOB_STORE": f"file:{tmp}/blobs",
            **(env or {}),
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [KLASBLIK, "serve", "--port", str(self.port), *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, within: float = timeout(60)) -> dict:
        """/healthz's answer once the server gives one; fail at once if it exits."""
        import json

        def health() -> dict | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"klasblik serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=timeout(2)) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        return wait_for_sync(
            health,
            within,
            lambda: f"klasblik serve to answer /healthz; its log:\n{self.log()}",
            interval=0.2,
        )

    def stop(self, within: float = timeout(15)) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
