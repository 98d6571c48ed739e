"""Fixtures of the privacy tests: a real server on SQLite and on PostgreSQL, and helpers to
act as IT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from klasblik.server.storage.models import AuditEntry, Staff
from tests.support.live import LiveServer, start_live_server

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.devries@school.example", "Bram", "de Vries")
IT = "it@school.example"
TEACHER = "teacher@school.example"


@pytest.fixture
async def server(db_url, tmp_path) -> AsyncIterator[LiveServer]:
    """A real server on 127.0.0.1, on SQLite and on PostgreSQL."""
    live = await start_live_server(tmp_path, database_url=db_url)
    try:
        yield live
    finally:
        await live.stop()


async def make_admin(server: LiveServer, username: str = IT, brin: str = "12AB") -> int:
    """An IT administrator of the school ``brin``; returns the school id."""
    ids = await server.add_class("IT-" + brin, [], teacher=username, teacher_name="IT", brin=brin)
    async with server.sm() as session, session.begin():
        await session.execute(update(Staff).where(Staff.username == username).values(is_admin=True))
    return int(ids["school_id"])


async def csrf(server: LiveServer, client: aiohttp.ClientSession) -> dict[str, str]:
    me = await (await client.get(server.base_url + "/api/me")).json()
    return {"X-CSRF-Token": me["csrf_token"], "Origin": server.base_url}


async def entries(server: LiveServer, **where: Any) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    for key, value in where.items():
        query = query.where(getattr(AuditEntry, key) == value)
    async with server.sm() as session:
        return list(await session.scalars(query))


@pytest.fixture
async def sm(db_url: str):
    """A session maker on a migrated database (SQLite and PostgreSQL)."""
    from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database

    engine = create_engine(db_url)
    await upgrade_database(engine)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def settings(tmp_path):
    from klasblik.server.settings import load_settings

    return load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/k.db",
            "blob_store": f"file:{tmp_path}/blobs",
        },
    )
