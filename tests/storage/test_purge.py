"""The nightly purge: school-year end, 6-month audit, orphans, sessions; interrupted runs
finish on the next run; several instances purge once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from klasblik.server.retention import purge as retention
from klasblik.server.retention.purge import months_before, purge, school_year_boundary
from klasblik.server.retention.schedule import NIGHTLY, JobRunner
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import (
    AuditEntry,
    JobRun,
    Staff,
    Student,
    WebSession,
    class_students,
)
from tests.storage.conftest import Clock
from tests.support.roster import add_audit, add_staff, add_student
from tests.support.timing import timeout, wait_for

UTC = dt.UTC


async def _count(sm, model) -> int:
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _usernames(sm, model) -> list[str]:
    async with sm() as session:
        return sorted(await session.scalars(select(model.username)))


async def _blob_names(store) -> list[str]:
    return [b.name async for b in store.list()]


async def _student_with_blobs(sm, store, username, created_at, class_name=None) -> int:
    sid = await add_student(sm, username, created_at=created_at, class_name=class_name)
    await store.put(thumbnail_name(sid), b"\xff\xd8\xff" + username.encode())
    await store.put(tabs_name(sid), b"[]")
    return sid


def test_school_year_boundary_is_the_day_after_the_end_in_local_time():
    """07-31 ends the year at local midnight; before it passes, last year's end counts."""
    after = school_year_boundary(
        dt.datetime(2026, 8, 1, 3, tzinfo=UTC), "07-31", "Europe/Amsterdam"
    )
    assert after == dt.datetime(2026, 7, 31, 22, tzinfo=UTC)  # 1 August 00:00 CEST
    before = school_year_boundary(
        dt.datetime(2026, 7, 31, 12, tzinfo=UTC), "07-31", "Europe/Amsterdam"
    )
    assert before == dt.datetime(2025, 7, 31, 22, tzinfo=UTC)
    assert (
        school_year_boundary(dt.datetime(2026, 7, 1, tzinfo=UTC), "2026-07-31", "Europe/Amsterdam")
        is None
    )


def test_months_before_clamps_to_the_end_of_the_month():
    """Six months before 31 August is 28 February; before 23 November is 23 May."""
    assert months_before(dt.datetime(2026, 8, 31, 5, tzinfo=UTC), 6) == dt.datetime(
        2026, 2, 28, 5, tzinfo=UTC
    )
    assert months_before(dt.datetime(2026, 11, 23, tzinfo=UTC), 6) == dt.datetime(
        2026, 5, 23, tzinfo=UTC
    )
    assert months_before(dt.datetime(2026, 3, 15, tzinfo=UTC), 6) == dt.datetime(
        2025, 9, 15, tzinfo=UTC
    )


async def test_school_year_end_removes_records_and_their_blobs(sm, store, settings):
    """After 31 July, students and staff created before it go with their blobs; newer stay."""
    old_sid = await _student_with_blobs(
        sm, store, "old@school.example", dt.datetime(2026, 7, 15, tzinfo=UTC), "7B"
    )
    new_sid = await _student_with_blobs(
        sm, store, "new@school.example", dt.datetime(2026, 8, 1, 8, tzinfo=UTC), "7B"
    )
    await add_staff(sm, "oldteacher@school.example", created_at=dt.datetime(2026, 1, 5, tzinfo=UTC))
    await add_staff(
        sm, "newteacher@school.example", created_at=dt.datetime(2026, 8, 1, 9, tzinfo=UTC)
    )

    # On 31 July the year has not ended yet: nothing goes.
    report = await purge(sm, store, settings, lambda: dt.datetime(2026, 7, 31, 12, tzinfo=UTC))
    assert report.students == [] and report.staff == []
    assert await _count(sm, Student) == 2

    report = await purge(sm, store, settings, lambda: dt.datetime(2026, 8, 2, 2, tzinfo=UTC))
    assert report.students == ["old@school.example"]
    assert report.staff == ["oldteacher@school.example"]
    assert await _usernames(sm, Student) == ["new@school.example"]
    assert await _usernames(sm, Staff) == ["newteacher@school.example"]
    assert sorted(await _blob_names(store)) == [tabs_name(new_sid), thumbnail_name(new_sid)]
    async with sm() as session:
        links = list(await session.scalars(select(class_students.c.student_id)))
    assert links == [new_sid] and old_sid != new_sid


async def test_school_year_purge_makes_the_next_roster_sync_read_everything(sm, store, settings):
    """After removing last year's records, the roster's delta links are forgotten (so the
    next sync lists continuing students again); other sync state stays."""
    from klasblik.server.roster.sync import GROUPS_DELTA_KEY, USERS_DELTA_KEY
    from klasblik.server.storage.models import SyncState

    await add_student(sm, "old@school.example", created_at=dt.datetime(2026, 7, 1, tzinfo=UTC))
    async with sm() as session, session.begin():
        for key in (GROUPS_DELTA_KEY, USERS_DELTA_KEY, "other.key"):
            session.add(SyncState(key=key, value="https://graph.example/delta?token=1"))
    await purge(sm, store, settings, lambda: dt.datetime(2026, 7, 31, 12, tzinfo=UTC))
    async with sm() as session:
        assert len(list(await session.scalars(select(SyncState.key)))) == 3
    await purge(sm, store, settings, lambda: dt.datetime(2026, 8, 2, tzinfo=UTC))
    async with sm() as session:
        assert list(await session.scalars(select(SyncState.key))) == ["other.key"]


async def test_audit_entries_older_than_six_months_go(sm, store, settings, clock):
    """An entry 6 months and a day old is removed; one 6 months less a day old stays."""
    now = clock()
    old = await add_audit(sm, months_before(now, 6) - dt.timedelta(days=1))
    kept = await add_audit(sm, months_before(now, 6) + dt.timedelta(days=1))
    report = await purge(sm, store, settings, clock)
    assert report.audit_entries == 1
    async with sm() as session:
        ids = list(await session.scalars(select(AuditEntry.id)))
    assert ids == [kept] and old not in ids


async def test_orphaned_blobs_and_expired_sessions_go(sm, store, settings, clock):
    """Blobs of a student that does not exist and sessions past their end are removed."""
    sid = await _student_with_blobs(sm, store, "anna@school.example", None)
    await store.put(thumbnail_name(sid + 1000), b"\xff\xd8\xff")
    staff_id = await add_staff(sm, "t@school.example")
    now = clock()
    async with sm() as session, session.begin():
        session.add(
            WebSession(
                id="a" * 64,
                staff_id=staff_id,
                csrf_token="x",
                ip=None,
                created_at=now,
                last_used_at=now,
                expires_at=now - dt.timedelta(seconds=1),
            )
        )
        session.add(
            WebSession(
                id="b" * 64,
                staff_id=staff_id,
                csrf_token="x",
                ip=None,
                created_at=now,
                last_used_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
        )
    report = await purge(sm, store, settings, clock)
    assert report.orphaned_blobs == [thumbnail_name(sid + 1000)]
    assert report.sessions == 1
    assert sorted(await _blob_names(store)) == [tabs_name(sid), thumbnail_name(sid)]
    async with sm() as session:
        assert list(await session.scalars(select(WebSession.id))) == ["b" * 64]


async def test_dry_run_lists_and_removes_nothing(sm, store, settings):
    """--dry-run reports the same student as the real run would, and deletes nothing."""
    await _student_with_blobs(sm, store, "old@school.example", dt.datetime(2026, 7, 1, tzinfo=UTC))
    await store.put(thumbnail_name(4242), b"\xff\xd8\xff")
    when = lambda: dt.datetime(2026, 8, 2, tzinfo=UTC)  # noqa: E731
    report = await purge(sm, store, settings, when, dry_run=True)
    assert report.students == ["old@school.example"]
    assert report.orphaned_blobs == [thumbnail_name(4242)]
    assert "would remove" in report.summary()
    assert await _count(sm, Student) == 1
    assert len(await _blob_names(store)) == 3


class _Breaking:
    """A store that works for ``good`` delete calls, then fails (raise) or hangs (hang)."""

    def __init__(self, inner, good: int, mode: str) -> None:
        self.inner = inner
        self.good = good
        self.mode = mode
        self.calls = 0

    async def delete(self, names):
        self.calls += 1
        if self.calls > self.good:
            if self.mode == "raise":
                raise ConnectionError("connection lost")
            await asyncio.Event().wait()
        return await self.inner.delete(names)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("mode", ["raise", "cancel"])
async def test_purge_cut_off_halfway_finishes_on_the_next_run(
    sm, store, settings, monkeypatch, mode
):
    """A purge that dies after its first batch leaves only whole records; the next run ends it."""
    monkeypatch.setattr(retention, "BATCH", 2)
    year_ago = dt.datetime(2026, 7, 1, tzinfo=UTC)
    sids = [
        await _student_with_blobs(sm, store, f"s{i}@school.example", year_ago) for i in range(5)
    ]
    when = lambda: dt.datetime(2026, 8, 2, tzinfo=UTC)  # noqa: E731
    broken = _Breaking(store, good=1, mode=mode)
    task = asyncio.create_task(purge(sm, broken, settings, when))
    if mode == "cancel":
        await wait_for(lambda: broken.calls >= 2, timeout(5), "the second batch's delete")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(ConnectionError):
            await task
    # The first batch is gone entirely (blobs, then rows); the rest is untouched.
    remaining = await _usernames(sm, Student)
    assert remaining == [f"s{i}@school.example" for i in range(2, 5)]
    names = await _blob_names(store)
    for sid in sids[:2]:
        assert thumbnail_name(sid) not in names
    report = await purge(sm, store, settings, when)
    assert report.students == remaining
    assert await _count(sm, Student) == 0
    assert await _blob_names(store) == []


async def test_nightly_job_runs_once_per_night_and_redoes_a_cut_off_run(store, settings):
    """A second trigger the same night does nothing; a run left unfinished is done again."""
    engine = create_engine(settings.database_url)
    await upgrade_database(engine)
    sm = sessionmaker(engine)
    clock = Clock(dt.datetime(2026, 8, 2, 1, 30, tzinfo=UTC))  # 03:30 in Amsterdam
    runner = JobRunner(engine, sm, store, settings, now=clock)
    try:
        assert runner.night_key() == "2026-08-02"
        async with sm() as session, session.begin():
            session.add(JobRun(job=NIGHTLY, run_key="2026-08-02", started_at=clock()))
        await add_student(sm, "old@school.example", created_at=dt.datetime(2026, 7, 1, tzinfo=UTC))
        assert await runner.run_nightly() == "done"  # the unfinished run is redone
        assert await _count(sm, Student) == 0
        assert await runner.run_nightly() == "already-done"
        clock.offset = dt.timedelta(days=1)
        assert await runner.run_nightly() == "done"
    finally:
        await engine.dispose()


async def test_two_instances_starting_the_nightly_job_together_run_it_once(pg_url, tmp_path):
    """Two engines and job runners on one PostgreSQL database fire at once: one purges."""
    from klasblik.server.settings import load_settings
    from klasblik.server.storage.blobs.local import LocalBlobStore

    settings = load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "database_url": pg_url,
            "blob_store": f"file:{tmp_path}/b",
        },
    )
    engines = [create_engine(pg_url), create_engine(pg_url)]
    await upgrade_database(engines[0])
    store = LocalBlobStore(tmp_path / "b")
    sms = [sessionmaker(e) for e in engines]
    for i in range(3):
        await _student_with_blobs(
            sms[0], store, f"s{i}@school.example", dt.datetime(2026, 7, 1, tzinfo=UTC)
        )

    class _Slow:
        """Keeps the winner busy long enough that the other really overlaps it."""

        async def delete(self, names):
            await asyncio.sleep(0.5)  # a slow store: the overlap this test is about
            return await store.delete(names)

        def __getattr__(self, name):
            return getattr(store, name)

    when = lambda: dt.datetime(2026, 8, 2, 2, tzinfo=UTC)  # noqa: E731
    runners = [
        JobRunner(e, s, _Slow(), settings, now=when) for e, s in zip(engines, sms, strict=False)
    ]
    start = asyncio.Barrier(2)

    async def fire(runner):
        await start.wait()
        return await runner.run_nightly()

    try:
        outcomes = sorted(await asyncio.gather(*(fire(r) for r in runners)))
        assert outcomes == ["busy", "done"]
        assert await runners[1].run_nightly() == "already-done"
        assert await _count(sms[1], Student) == 0
        async with sms[1]() as session:
            runs = (await session.execute(select(JobRun.run_key, JobRun.finished_at))).all()
            purges = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "purge.run")
            )
        assert len(runs) == 1 and runs[0][1] is not None
        assert purges == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_azure_orphans_over_several_batches_go_and_the_rest_stay(
    sm, azure_either, settings, clock
):
    """On Azurite, orphans spread over several listing pages, orphan checks and delete
    batches all go, and every blob of a student who exists stays."""
    from klasblik.server.storage.blobs.azure import BATCH_LIMIT, LIST_PAGE

    store = azure_either
    kept: list[str] = []
    for i in range(12):
        sid = await _student_with_blobs(sm, store, f"s{i}@school.example", None)
        kept += [thumbnail_name(sid), tabs_name(sid)]
    n = max(LIST_PAGE, BATCH_LIMIT) // 2 + 30  # orphaned students: > one page, > one batch
    orphans = [f(100_000 + i) for i in range(n) for f in (thumbnail_name, tabs_name)]
    sem = asyncio.Semaphore(32)

    async def put(name):
        async with sem:
            await store.put(name, b"[]")

    await asyncio.gather(*(put(name) for name in orphans))
    report = await purge(sm, store, settings, clock)
    assert sorted(report.orphaned_blobs) == sorted(orphans)
    assert report.expired_blob_count == 0
    assert sorted(await _blob_names(store)) == sorted(kept)
    assert store.batch_delete_works is True
