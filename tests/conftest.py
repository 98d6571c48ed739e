"""Shared fixtures: a real Klasblik server on a free loopback port, real PostgreSQL.

A service the tests need that is not there is a failure with a clear message, never a
skip: `scripts/test` installs and starts what it can before pytest runs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.live import LiveServer, start_live_server
from tests.support.services import postgres_database
from tests.support.timing import ENV_VAR, TIMEOUT_FACTOR, timeout

os.environ.pop("REQUESTS_CA_BUNDLE", None)  # requests would ignore verify= (see FACTS.md)
os.environ.pop("CURL_CA_BUNDLE", None)


def pytest_report_header(config: pytest.Config) -> str:
    return f"timeouts x{TIMEOUT_FACTOR:g} ({ENV_VAR})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-timeout's per-test limit (``timeout`` in pyproject.toml) scales with
    KLASBLIK_TEST_TIMEOUT_FACTOR like every other timeout: each test without a timeout
    marker of its own gets the scaled limit as its marker. A limit given for the run
    (``--timeout``, PYTEST_TIMEOUT) is taken as given."""
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return
    ini = config.getini("timeout")
    if not ini:
        return
    limit = pytest.mark.timeout(timeout(float(ini)))
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(limit)


@pytest.fixture
async def live_server(tmp_path) -> AsyncIterator[LiveServer]:
    """A real server (SQLite, local blob folder) on 127.0.0.1 and a free port."""
    server = await start_live_server(tmp_path)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with postgres_database("klasblik_t_" + secrets.token_hex(4)) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/klasblik.db"
    else:
        with postgres_database("klasblik_t_" + secrets.token_hex(4)) as url:
            yield url
