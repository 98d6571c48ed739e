"""Azurite, Microsoft's Azure Storage emulator, started from tests/services for a test and
killed afterwards. Missing Azurite is a test failure that says how to install it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.timing import timeout, wait_for_sync

__all__ = ["AZURITE_BIN", "Azurite", "connection_string", "free_port"]

#: The blob service alone: ``azurite`` would also open the queue and table services on fixed
#: ports (10001, 10002), which collide when several Azurites run at once.
AZURITE_BIN = (
    Path(__file__).resolve().parents[1] / "services" / "node_modules" / ".bin" / "azurite-blob"
)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: Azurite is a Node process: starting it takes a second or two on a busy machine.
START_TIMEOUT_S = timeout(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


class Azurite:
    """One Azurite blob service on 127.0.0.1, in-memory; ``stop()``/``start()`` keep the port."""

    def __init__(
        self, port: int | None = None, binary: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.port = port or free_port()
        self.binary = binary or AZURITE_BIN
        self.proc: subprocess.Popen[bytes] | None = None
        #: more of Azurite's options (``--oauth basic --cert ... --key ...``)
        self.extra_args = extra_args

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self) -> None:
        if not self.binary.exists():
            pytest.fail(
                f"Azurite is not installed ({self.binary} missing): run scripts/lib/node-packages "
                "or scripts/test, which install it from tests/services/package.json"
            )
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--inMemoryPersistence",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--silent",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"Azurite exited at start (code {self.proc.returncode}): {err[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(0.5)):
                    return True
            except OSError:
                return False

        try:
            wait_for_sync(
                listening, START_TIMEOUT_S, f"Azurite to listen on port {self.port}", interval=0.1
            )
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout(10))
