"""The 48-hour promise: the sweep the guarantee relies on removes what is 48 hours old and
keeps what is 47; the settings refuse a schedule that could break the promise."""

from __future__ import annotations

import datetime as dt

import pytest

from klasblik.server.keys import RETENTION_JOBS
from klasblik.server.retention.purge import sweep
from klasblik.server.retention.schedule import JobRunner
from klasblik.server.settings import SettingsError, load_settings
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from tests.support.timing import timeout, wait_for


async def test_47_hour_old_screenshot_kept_48_hour_old_gone(store, settings):
    """With the default threshold, a sweep 47 h after a write keeps it, 48 h after removes it."""
    await store.put(thumbnail_name(1), b"\xff\xd8\xff")
    await store.put(tabs_name(1), b"[]")
    stamps = [b.last_modified async for b in store.list()]
    written = max(stamps)  # the store's own clock, not ours
    max_age = dt.timedelta(hours=settings.sweep_max_age_h)

    assert await sweep(store, lambda: written + dt.timedelta(hours=47), max_age) == 0
    assert await store.get(thumbnail_name(1)) is not None
    assert await sweep(store, lambda: written + dt.timedelta(hours=48), max_age) == 2
    assert await store.get(thumbnail_name(1)) is None
    assert [b async for b in store.list()] == []


async def test_scheduled_sweep_job_uses_the_threshold(store, settings, tmp_path, clock):
    """The job runner's sweep (what the scheduler calls) applies sweep_max_age_h."""
    engine = create_engine(settings.database_url)
    await upgrade_database(engine)
    runner = JobRunner(engine, sessionmaker(engine), store, settings, now=clock)
    try:
        await store.put(thumbnail_name(5), b"\xff\xd8\xff")
        clock.offset = dt.timedelta(hours=47)
        assert await runner.run_sweep() == "done"
        assert await store.get(thumbnail_name(5)) is not None
        clock.offset = dt.timedelta(hours=48, minutes=1)
        assert await runner.run_sweep() == "done"
        assert await store.get(thumbnail_name(5)) is None
    finally:
        await engine.dispose()


def test_worst_case_age_stays_under_48_hours_with_the_defaults():
    """Threshold + interval + sweep budget, as configured by default, is under 48 hours."""
    s = load_settings(env={}, overrides={"enrollment_token": "t"})
    worst = (
        dt.timedelta(hours=s.sweep_max_age_h)
        + dt.timedelta(minutes=s.sweep_interval_min)
        + dt.timedelta(minutes=s.sweep_budget_min)
    )
    assert worst < dt.timedelta(hours=48)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sweep_max_age_h": 47, "sweep_interval_min": 60},
        {"sweep_max_age_h": 46, "sweep_interval_min": 60, "sweep_budget_min": 60},
        {"sweep_max_age_h": 47.5, "sweep_budget_min": 20},
    ],
)
def test_settings_refuse_a_schedule_that_breaks_the_promise(overrides):
    """A threshold, interval and budget that add up to 48 h or more stop the server."""
    with pytest.raises(SettingsError, match="under 48 h"):
        load_settings(env={}, overrides={"enrollment_token": "t", **overrides})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("purge_time", "25:00", "HH:MM"),
        ("school_year_end", "13-01", "MM-DD"),
        ("timezone", "Mars/Olympus", "IANA"),
    ],
)
def test_bad_retention_settings_name_the_setting(name, value, message):
    """A bad retention setting is refused with its name and what it should be."""
    with pytest.raises(SettingsError, match=f"{name}.*{message}"):
        load_settings(env={}, overrides={"enrollment_token": "t", name: value})


async def test_running_server_sweeps_shortly_after_start(tmp_path):
    """The scheduler in a running server sweeps within seconds of start: a 49-hour-old
    stored thumbnail goes, a fresh one stays."""
    import os
    import time

    from tests.support.live import start_live_server

    old = tmp_path / "blobs" / "students" / "1" / "thumbnail"
    fresh = tmp_path / "blobs" / "students" / "2" / "thumbnail"
    for path in (old, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\xff\xd8\xff")
    past = time.time() - 49 * 3600
    os.utime(old, (past, past))
    server = await start_live_server(tmp_path)
    try:
        assert server.app[RETENTION_JOBS] is not None
        await wait_for(lambda: not old.exists(), timeout=timeout(30), message="startup sweep")
        assert fresh.exists()
    finally:
        await server.stop()


async def test_sweep_deletes_the_old_keeps_the_young_and_removes_empty_folders(tmp_path):
    """Over a local store of many students: every blob past the age goes, every younger one
    stays, the folders the sweep empties go (and empty ones left from before), folders that
    still hold a blob stay, and nothing outside the blobs is touched."""
    import os

    from klasblik.server.storage.blobs.local import LIST_CHUNK, LocalBlobStore

    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    try:
        n = LIST_CHUNK * 2 + 7  # students: more than one listing hand-off
        for sid in range(n):
            await store.put(thumbnail_name(sid), b"\xff\xd8\xff")
            await store.put(tabs_name(sid), b"[]")
        now = dt.datetime.now(dt.UTC)
        old = (now - dt.timedelta(hours=49)).timestamp()
        # even students: both blobs old; students divisible by 3: only the thumbnail old
        for sid in range(n):
            if sid % 2 == 0:
                os.utime(root / thumbnail_name(sid), (old, old))
                os.utime(root / tabs_name(sid), (old, old))
            elif sid % 3 == 0:
                os.utime(root / thumbnail_name(sid), (old, old))
        (root / "students" / "left-empty").mkdir()  # an earlier sweep's leftover
        (root / "students" / "left-empty" / "nested").mkdir()
        expected = sum(2 if s % 2 == 0 else 1 if s % 3 == 0 else 0 for s in range(n))
        deleted = await sweep(store, lambda: now, dt.timedelta(hours=48))
        assert deleted == expected
        for sid in range(n):
            folder = root / "students" / str(sid)
            if sid % 2 == 0:
                assert not folder.exists(), sid
            elif sid % 3 == 0:
                assert sorted(p.name for p in folder.iterdir()) == ["tabs"], sid
            else:
                assert sorted(p.name for p in folder.iterdir()) == ["tabs", "thumbnail"], sid
        assert not (root / "students" / "left-empty").exists()
        assert root.is_dir()
        left = {b.name async for b in store.list()}
        assert len(left) == 2 * n - expected
    finally:
        await store.close()


async def test_azure_sweep_over_several_batches_removes_exactly_the_old(azure_either):
    """On Azurite, a sweep over more than one listing page and several delete batches
    deletes every old blob and no young one; old blobs that another deleter removes while
    the sweep runs (404 inside its batches) neither fail the sweep nor cost the other
    deletes of those batches."""
    import asyncio

    from klasblik.server.storage.blobs.azure import BATCH_LIMIT, LIST_PAGE

    store = azure_either
    sem = asyncio.Semaphore(32)

    async def put_all(names):
        async def put(name):
            async with sem:
                await store.put(name, b"[]")

        await asyncio.gather(*(put(n) for n in names))

    n = max(LIST_PAGE, BATCH_LIMIT) + 50  # old blobs: two pages, two batches
    old = [tabs_name(i) for i in range(n)]
    await put_all(old)
    old_max = max([b.last_modified async for b in store.list()])

    async def store_clock_moved_on():  # Azurite's timestamps have whole seconds
        await store.put("probe/clock", b"[]")
        (stamp,) = [b.last_modified async for b in store.list("probe/")]
        return stamp > old_max

    await wait_for(store_clock_moved_on, timeout(10), "Azurite's clock to pass a second")
    young = [thumbnail_name(i) for i in range(n)]
    await put_all(young)

    taken: list[str] = []  # listed old blobs that someone else deletes meanwhile
    real_list = store.list

    async def listing(prefix=""):
        seen: list[str] = []
        async for info in real_list(prefix):
            yield info
            seen.append(info.name)
            if len(seen) == LIST_PAGE + 10:  # into the second page
                taken.extend([name for name in seen if name in set(old)][:20])
                await store._container.delete_blob(taken[0])
                assert await store.delete(taken[1:]) == len(taken) - 1

    store.list = listing  # type: ignore[method-assign]
    swept_names: list[str] = []
    try:
        swept = await sweep(
            store,
            lambda: old_max + dt.timedelta(seconds=0.5) + dt.timedelta(hours=48),
            dt.timedelta(hours=48),
            names=swept_names,
        )
    finally:
        del store.list
    left = sorted([b.name async for b in store.list()])
    assert left == sorted([*young, "probe/clock"])
    assert set(swept_names) == set(old) and len(swept_names) == n
    assert len(taken) == 20 and swept == n - len(taken)
    assert store.batch_delete_works is True
