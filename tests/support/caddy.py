"""Debian's Caddy running the shipped deploy/compose/Caddyfile, unchanged, on free ports:
what would be the compose file's environment is given to the process instead."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support.timing import timeout, wait_for_sync

__all__ = ["SHIPPED_CADDYFILE", "CaddyProcess", "FixedResolver"]

SHIPPED_CADDYFILE = Path(__file__).parents[2] / "deploy" / "compose" / "Caddyfile"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FixedResolver(AbstractResolver):
    """Every name resolves to 127.0.0.1 (the test hostname has no DNS record)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class CaddyProcess:
    """``caddy run`` with a copy of the shipped Caddyfile, Caddy's internal CA, and
    ``upstreams`` as the Klasblik instances."""

    def __init__(self, workdir: Path, hostname: str, upstreams: list[str]) -> None:
        exe = shutil.which("caddy")
        if exe is None:
            pytest.fail("caddy is not installed: scripts/test installs it (Debian)")
        self.exe = exe
        self.workdir = workdir
        self.hostname = hostname
        self.https_port = _free_port()
        self.http_port = _free_port()
        self.upstreams = upstreams
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"https://{self.hostname}:{self.https_port}"

    @property
    def root_ca(self) -> Path:
        return self.workdir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        caddyfile = self.workdir / "Caddyfile"
        shutil.copyfile(SHIPPED_CADDYFILE, caddyfile)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "PUBLIC_HOSTNAME": self.hostname,
            "CADDY_TLS": "internal",
            "UPSTREAMS": " ".join(self.upstreams),
            "CADDY_HTTP_PORT": str(self.http_port),
            "CADDY_HTTPS_PORT": str(self.https_port),
        }
        self._log = open(self.workdir / "caddy.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.exe, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            env=env,
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def serving() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"caddy exited {self.proc.returncode}:\n{self.log()}")
            if not self.root_ca.exists():
                return False
            # a whole TLS handshake for the site's name: the port opens before Caddy has
            # issued the site's certificate, and a handshake then ends in an internal error
            context = ssl.create_default_context(cafile=str(self.root_ca))
            try:
                with (
                    socket.create_connection(
                        ("127.0.0.1", self.https_port), timeout=timeout(1)
                    ) as raw,
                    context.wrap_socket(raw, server_hostname=self.hostname),
                ):
                    return True
            except OSError:  # ssl.SSLError included
                return False

        wait_for_sync(serving, timeout(30), lambda: f"caddy to serve:\n{self.log()}", interval=0.1)

    def log(self) -> str:
        return (self.workdir / "caddy.log").read_text(errors="replace")[-4000:]

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts Caddy's internal root CA only."""
        return ssl.create_default_context(cafile=str(self.root_ca))

    def session(self, source: str, **kw: Any) -> aiohttp.ClientSession:
        """An HTTP client whose connections come from ``source`` and trust Caddy's CA."""
        connector = aiohttp.TCPConnector(
            local_addr=(source, 0), ssl=self.ssl_context(), resolver=FixedResolver()
        )
        return aiohttp.ClientSession(connector=connector, **kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()
