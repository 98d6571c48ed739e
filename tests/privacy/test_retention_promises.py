"""48 hours at every moment: a late sweep still runs, a sweep is cut off at its budget,
leftovers of cut-off writes are swept, a lone instance cannot switch the jobs off, and an
Azure account that keeps deleted or overwritten blobs is refused. Logs: 6 months unless
the notified exception is stated."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from pathlib import Path

import pytest
from aiohttp import web

from klasblik.server.retention import schedule
from klasblik.server.retention.purge import sweep
from klasblik.server.settings import SettingsError, load_settings
from klasblik.server.storage.blobs.azure import AzureBlobStore
from klasblik.server.storage.blobs.base import BlobStoreRefused
from klasblik.server.storage.blobs.local import LocalBlobStore
from tests.support.azurite import Azurite
from tests.support.live import start_live_server
from tests.support.timing import wait_for

BASE = {"enrollment_token": "t"}


@pytest.fixture(scope="module")
def azurite():
    service = Azurite()
    service.start()
    try:
        yield service
    finally:
        service.stop()


async def test_a_late_sweep_still_runs(db_url, tmp_path, monkeypatch):
    """The event loop is blocked past the sweep's due time (APScheduler's default grace of
    1 s would skip it): the sweep runs anyway, once the loop is free."""
    monkeypatch.setattr(schedule, "FIRST_SWEEP_S", 0.3)
    runs: list[float] = []
    original = schedule.JobRunner.run_sweep

    async def counted(self):
        runs.append(time.monotonic())
        return await original(self)

    monkeypatch.setattr(schedule.JobRunner, "run_sweep", counted)
    server = await start_live_server(tmp_path, database_url=db_url)
    try:
        time.sleep(2.5)  # the loop is blocked: the sweep misses its time by over 2 s
        await wait_for(lambda: runs, message="the late sweep ran")
    finally:
        await server.stop()


class _SlowStore(LocalBlobStore):
    async def list(self, prefix: str = ""):
        await asyncio.sleep(30)
        if False:  # pragma: no cover
            yield None


async def test_a_sweep_over_its_budget_is_cut_off_and_logged(db_url, tmp_path, caplog):
    """A sweep that takes longer than its budget is cancelled and logged as an error."""
    from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database

    engine = create_engine(db_url)
    await upgrade_database(engine)
    store = _SlowStore(tmp_path / "b")
    settings = load_settings(env={}, overrides=BASE)
    runner = schedule.JobRunner(engine, sessionmaker(engine), store, settings)
    runner.budget_s = 0.2
    with caplog.at_level(logging.ERROR):
        started = time.monotonic()
        assert await runner.run_sweep() == "over-budget"
    assert time.monotonic() - started < 10
    assert runner.over_budget == 1
    assert "cut off" in caplog.text and "sweep_budget_min" in caplog.text
    await store.close()
    await engine.dispose()


async def test_tmp_leftovers_of_cut_off_writes_are_swept(tmp_path):
    """A .tmp- file older than a few minutes (a write cut off by a crash) is deleted by the
    sweep; a fresh one (a write in progress) is left alone."""
    store = LocalBlobStore(tmp_path / "b")
    await store.put("students/1/thumbnail", b"\xff\xd8\xff x")
    folder = tmp_path / "b" / "students" / "1"
    old, fresh = folder / ".tmp-abc", folder / ".tmp-def"
    old.write_bytes(b"half a screenshot")
    fresh.write_bytes(b"being written")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    deleted = await sweep(store, lambda: dt.datetime.now(dt.UTC), dt.timedelta(hours=47))
    assert deleted == 1
    assert not old.exists() and fresh.exists()
    assert (folder / "thumbnail").exists()
    await store.close()


def test_jobs_off_on_a_lone_instance_is_refused():
    """jobs = false without redis_url (a lone instance) would stop every sweep: refused."""
    with pytest.raises(SettingsError, match="lone instance"):
        load_settings(env={}, overrides={**BASE, "jobs": False})
    ok = load_settings(env={}, overrides={**BASE, "jobs": False, "redis_url": "redis://x"})
    assert ok.jobs is False


def test_logs_longer_than_six_months_need_the_stated_exception():
    """audit_retention_months above 6 is refused unless the notified exception is stated."""
    with pytest.raises(SettingsError, match="audit_retention_exception"):
        load_settings(env={}, overrides={**BASE, "audit_retention_months": 7})
    s = load_settings(
        env={},
        overrides={
            **BASE,
            "audit_retention_months": 12,
            "audit_retention_exception": "board decision 2026-03-01, notified to the DPO",
        },
    )
    assert s.audit_retention_months == 12
    assert load_settings(env={}, overrides={**BASE, "audit_retention_months": 6})


async def test_azure_with_soft_delete_is_refused_at_start(azurite, tmp_path):
    """Azurite reports the blob service's DeleteRetentionPolicy like Azure: with soft delete
    on, the store refuses (and refuses writes), and the server does not start."""
    from azure.storage.blob import RetentionPolicy
    from azure.storage.blob.aio import BlobServiceClient

    store = AzureBlobStore(azurite.connection_string, "softdel")
    await store.check()  # off by default: accepted, and the probe leaves nothing behind
    assert [b.name async for b in store.list("")] == []
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    await service.set_service_properties(
        delete_retention_policy=RetentionPolicy(enabled=True, days=7)
    )
    try:
        with pytest.raises(BlobStoreRefused, match="soft delete"):
            await store.check()
        with pytest.raises(Exception, match="refused"):
            await store.put("students/1/thumbnail", b"x")
        with pytest.raises(BlobStoreRefused):
            await start_live_server(
                tmp_path,
                blob_store="azure:softdel",
                azure_connection_string=azurite.connection_string,
            )
    finally:
        await service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))
        await service.close()
        await store.close()


async def test_blob_versioning_is_refused(azurite):
    """Azurite has no versioning, so its writes carry no version id; an account that answers
    with one (as Azure does with versioning on) is refused. The answer is shaped as the
    SDK returns it."""
    store = AzureBlobStore(azurite.connection_string, "versioned")
    original = store._container.get_blob_client

    def versioned(name):
        client = original(name)
        upload = client.upload_blob

        async def upload_blob(*args, **kwargs):
            answer = await upload(*args, **kwargs)
            return {**answer, "version_id": "2026-11-23T10:00:00.0000000Z"}

        async def delete_blob(*args, **kwargs):
            return None

        client.upload_blob = upload_blob
        client.delete_blob = delete_blob
        return client

    store._container.get_blob_client = versioned
    with pytest.raises(BlobStoreRefused, match="versioning"):
        await store.check()
    await store.close()


def test_azure_template_keeps_its_lifecycle_rule():
    """deploy/azure/main.bicep keeps a lifecycle rule that deletes blobs as a backstop."""
    text = (Path(__file__).parents[2] / "deploy" / "azure" / "main.bicep").read_text()
    assert "managementPolicies" in text
    assert "delete" in text and "daysAfterModificationGreaterThan" in text
    _ = web
