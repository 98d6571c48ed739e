"""Reaching the real services the tests use; a missing one fails the test with a message
that says how to start it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.timing import timeout

PG_ADMIN_DSN = os.environ.get("KLASBLIK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KLASBLIK_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _psql(sql: str) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed: run scripts/test, which installs PostgreSQL")
    done = subprocess.run(
        ["psql", PG_ADMIN_DSN, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    if done.returncode != 0:
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_DSN} did not accept {sql!r}: {done.stderr.strip()} "
            "(scripts/lib/services starts it)"
        )


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """Create database ``name``; yield its asyncpg URL; drop it afterwards."""
    _psql(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
