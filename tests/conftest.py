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

os.environ.pop("REQUESTS_CA_BUNDLE", None)  # requests would ignore verify= (see FACTS.md)
os.environ.pop("CURL_CA_BUNDLE", None)


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
