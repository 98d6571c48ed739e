"""Several real Klasblik server processes on one PostgreSQL database and one Redis.

The Redis here is a private ``redis-server`` on a free port (no persistence), so a test can
stop and restart it without touching the machine's Redis on 6379.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.settings import load_settings
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import Staff
from tests.support.live import TOKEN, LiveServer, LoopbackUrls
from tests.support.timing import timeout, wait_for, wait_for_sync

__all__ = ["RedisProcess", "ServerProcess", "SharedDatabase", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private redis-server on 127.0.0.1 that the test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: run scripts/test, which installs Redis")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def answering() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"redis-server on port {self.port} exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(0.2)) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for_sync(
            answering, timeout(10), f"redis-server on port {self.port} to answer", interval=0.05
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout(10))
        self.proc = None


@dataclass
class ServerProcess(LoopbackUrls):
    """``klasblik serve`` as a subprocess (a real instance, as operators run it)."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    token: str = TOKEN
    proc: subprocess.Popen[bytes] | None = None
    _clients: list[aiohttp.ClientSession] = field(default_factory=list)

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "klasblik.server.cli", "serve", "--port", str(self.port)],
            # the protocol-speaking test agents carry no identity proof: the transition
            # policy, as for the in-process servers (tests/support/live.py)
            env={**os.environ, "KLASBLIK_AGENT_IDENTITY": "token", **self.env},
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        async with aiohttp.ClientSession() as http:

            async def answering() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    pytest.fail(f"server {self.name} exited at start:\n{self.log_text()}")
                try:
                    async with http.get(self.base_url + "/healthz") as r:
                        return r.status in (200, 503)
                except aiohttp.ClientError:
                    return False

            await wait_for(
                answering,
                timeout(30),
                lambda: f"server {self.name} to answer /healthz:\n{self.log_text()}",
                interval=0.1,
            )

    def log_text(self) -> str:
        return (self.workdir / f"{self.name}.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """Die at once, as a crashed machine would (no goodbye to the other instances)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout(10))

    async def stop(self) -> None:
        for client in self._clients:
            await client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout(15))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout(10))
        if hasattr(self, "_log"):
            self._log.close()

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.get(self.base_url + "/healthz") as r:
                return dict(await r.json())

    def client(self, token: str) -> aiohttp.ClientSession:
        jar = aiohttp.CookieJar(unsafe=True)
        jar.update_cookies({COOKIE: token}, response_url=URL(self.base_url))
        client = aiohttp.ClientSession(cookie_jar=jar)
        self._clients.append(client)
        return client

    async def dashboard(self, client: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        return await client.ws_connect(self.dashboard_url, origin=self.base_url)


class SharedDatabase:
    """The PostgreSQL database all instances share, reached directly by the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sm = sessionmaker(self.engine)
        self.settings = load_settings(env={}, overrides={"enrollment_token": TOKEN})

    async def migrate(self) -> None:
        await upgrade_database(self.engine)

    async def add_class(self, name: str, students: list[tuple[str, str, str]]) -> dict[str, Any]:
        shim = SimpleNamespace(sm=self.sm, app={})
        return await LiveServer.add_class(shim, name, students)  # type: ignore[arg-type]

    async def session_token(self, username: str) -> str:
        """A signed-in dashboard session, written where every instance looks it up."""
        async with self.sm() as session:
            staff = await session.scalar(select(Staff).where(Staff.username == username))
        assert staff is not None, f"no staff member {username}"
        token, _ = await create_session(self.sm, staff.id, "127.0.0.1", self.settings)
        return token

    async def close(self) -> None:
        await self.engine.dispose()
