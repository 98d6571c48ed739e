"""Fixtures of the storage tests: Azurite (one per module), a blob store of each kind, a
database with the schema, and a clock that tests can move."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from klasblik.server.settings import Settings, load_settings
from klasblik.server.storage.blobs.azure import AzureBlobStore
from klasblik.server.storage.blobs.base import BlobStore
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from tests.support.azurite import Azurite


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    """One Azurite blob service for the module's tests, killed afterwards."""
    service = Azurite()
    service.start()
    try:
        yield service
    finally:
        service.stop()


def _container() -> str:
    return "t" + secrets.token_hex(6)


@pytest.fixture(params=["local", "azure"])
async def store(request, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """The same test against the local folder and against Azure (Azurite)."""
    if request.param == "local":
        blob_store: BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        az = request.getfixturevalue("azurite")
        blob_store = AzureBlobStore(az.connection_string, _container())
    await blob_store.check()
    try:
        yield blob_store
    finally:
        await blob_store.close()


@pytest.fixture
async def azure_store(azurite: Azurite) -> AsyncIterator[AzureBlobStore]:
    blob_store = AzureBlobStore(azurite.connection_string, _container())
    await blob_store.check()
    try:
        yield blob_store
    finally:
        await blob_store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/k.db",
            "blob_store": f"file:{tmp_path}/blobs",
        },
    )


@pytest.fixture
async def sm(db_url: str):
    """A session maker on a migrated database (SQLite and PostgreSQL)."""
    engine = create_engine(db_url)
    await upgrade_database(engine)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


class Clock:
    """A clock the test moves: ``now()`` is ``base + offset``."""

    def __init__(self, base: dt.datetime | None = None) -> None:
        self.base = base or dt.datetime.now(dt.UTC)
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return self.base + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["threads", "worker"])
async def azure_either(request, azurite: Azurite) -> AsyncIterator[AzureBlobStore]:
    """An Azure store that lists and deletes on its own threads, and one that does it in
    its worker process (the server's way)."""
    blob_store = AzureBlobStore(
        azurite.connection_string, _container(), worker=request.param == "worker"
    )
    await blob_store.check()
    try:
        yield blob_store
    finally:
        await blob_store.close()
