"""Roster sync through the real Graph client against the local Graph emulator: paging,
delta links, a removed member, a disabled account, a deleted account, throttling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from klasblik.server.roster.sync import GROUPS_DELTA_KEY, USERS_DELTA_KEY, sync_roster
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import (
    Location,
    School,
    SchoolClass,
    Staff,
    Student,
    SyncState,
    class_students,
    class_teachers,
)
from tests.m365.roster_fixture import ANNA, BRAM, CHRIS, T1, T2, fill
from tests.support.graph_emulator import GraphEmulator, start_graph_emulator


@pytest.fixture
async def school():
    graph, runner = await start_graph_emulator(GraphEmulator(page_size=2))
    try:
        yield fill(graph)
    finally:
        await runner.cleanup()


@pytest.fixture
async def sm(db_url) -> AsyncIterator:
    engine = create_engine(db_url)
    await upgrade_database(engine)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _sync(school, sm):
    async with school.client() as graph:
        return await sync_roster(sm, graph)


async def _members(sm, class_name):
    async with sm() as s:
        cls = await s.scalar(select(SchoolClass).where(SchoolClass.name == class_name))
        students = set(
            (
                await s.execute(
                    select(Student.username)
                    .join(class_students, class_students.c.student_id == Student.id)
                    .where(class_students.c.class_id == cls.id)
                )
            ).scalars()
        )
        teachers = set(
            (
                await s.execute(
                    select(Staff.username)
                    .join(class_teachers, class_teachers.c.staff_id == Staff.id)
                    .where(class_teachers.c.class_id == cls.id)
                )
            ).scalars()
        )
    return students, teachers


async def _row(sm, model, username):
    async with sm() as s:
        return await s.scalar(select(model).where(model.username == username))


async def test_first_sync_builds_the_roster(school, sm):
    """A first sync creates school, location, classes, staff and students, following pages."""
    summary = await _sync(school, sm)
    assert summary.created == {"school": 1, "location": 1, "class": 2, "staff": 2, "student": 3}
    assert sum(summary.disabled.values()) == sum(summary.removed.values()) == 0
    async with sm() as s:
        sch = await s.scalar(select(School))
        loc = await s.scalar(select(Location))
        names = sorted((await s.execute(select(Student.display_name))).scalars())
        state = {r.key: r.value for r in await s.scalars(select(SyncState))}
    assert (sch.name, sch.brin, loc.code) == ("De Regenboog", "12AB", "12AB00")
    assert names == ["Anna B.", "Bram J.", "Chris B."]
    assert await _members(sm, "7B") == ({ANNA, BRAM}, {T1})
    assert await _members(sm, "8C") == ({CHRIS}, {T2})
    assert "$deltatoken=" in state[USERS_DELTA_KEY] and "$deltatoken=" in state[GROUPS_DELTA_KEY]
    assert any("$skiptoken=" in path for _t, path, _s in school.graph.requests)


async def test_second_sync_uses_delta_links_and_changes_nothing(school, sm):
    """Without changes, a second sync creates and updates nothing and reads no class members."""
    await _sync(school, sm)
    before = len(school.graph.requests)
    summary = await _sync(school, sm)
    assert summary.text() == "created 0; updated 0; disabled 0; removed 0; throttled 0"
    paths = [path for _t, path, _s in school.graph.requests[before:]]
    assert any(p.startswith("/v1.0/education/users/delta") and "$deltatoken=" in p for p in paths)
    assert any(p.startswith("/v1.0/education/classes/delta") and "$deltatoken=" in p for p in paths)
    assert not any("/members" in p for p in paths)


async def test_removed_member_leaves_the_class(school, sm):
    """A student removed from a class in Microsoft 365 is no longer in it after the sync."""
    await _sync(school, sm)
    school.graph.remove_member(school.c7b, school.bram)
    summary = await _sync(school, sm)
    assert await _members(sm, "7B") == ({ANNA}, {T1})
    assert summary.updated["class"] == 1
    assert (await _row(sm, Student, BRAM)).active  # still a student of the school


async def test_disabled_account_is_disabled(school, sm):
    """accountEnabled false makes the account inactive, and is counted as disabled."""
    await _sync(school, sm)
    school.graph.disable_user(school.chris)
    summary = await _sync(school, sm)
    assert summary.disabled == {"student": 1}
    assert not (await _row(sm, Student, CHRIS)).active


async def test_deleted_teacher_is_removed_and_loses_access(school, sm):
    """A teacher deleted in Microsoft 365 (@removed) is inactive and listed as lost access."""
    await _sync(school, sm)
    school.graph.delete_user(school.t2)
    summary = await _sync(school, sm)
    t2 = await _row(sm, Staff, T2)
    assert not t2.active
    assert summary.removed == {"staff": 1}
    assert summary.lost_access == {t2.id}
    assert await _members(sm, "8C") == ({CHRIS}, set())


async def test_throttled_requests_wait_for_retry_after(school, sm):
    """429 answers are retried after Retry-After, and the sync still completes."""
    school.graph.throttle_next = 2
    school.graph.retry_after_s = 1
    summary = await _sync(school, sm)
    assert summary.throttled == 2
    assert summary.created["student"] == 3
    log = school.graph.requests
    first_429 = next(i for i, r in enumerate(log) if r[2] == 429)
    ok = next(i for i, r in enumerate(log) if r[2] == 200)
    assert log[ok][0] - log[first_429][0] >= 2 * school.graph.retry_after_s - 0.05


async def test_graph_failure_changes_nothing(school, sm):
    """A sync whose token Graph refuses changes nothing in the database."""
    from klasblik.server.roster.graph import GraphError

    with pytest.raises(GraphError, match="401"):
        async with school.client("a-token-graph-refuses") as graph:
            await sync_roster(sm, graph)
    async with sm() as s:
        assert (await s.scalar(select(School))) is None
        assert (await s.scalar(select(SyncState))) is None


async def test_expired_delta_link_starts_a_full_read(school, sm):
    """A delta link past its lifetime is answered 400 syncStateNotFound (Microsoft: "The
    sync state generation is not found. The delta token is expired and data must be
    synchronized again", https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources):
    the sync reads everything again and works, once and not forever."""
    await _sync(school, sm)
    school.graph.expire_delta_links()
    school.graph.disable_user(school.anna)
    before = len(school.graph.requests)
    summary = await _sync(school, sm)
    statuses = [(path.split("?")[0], status) for _t, path, status in school.graph.requests[before:]]
    assert ("/v1.0/education/users/delta", 400) in statuses
    assert ("/v1.0/education/classes/delta", 400) in statuses
    assert 410 not in {status for _p, status in statuses}
    assert summary.disabled == {"student": 1}
    async with sm() as s:
        link = await s.get(SyncState, USERS_DELTA_KEY)
    assert f"$deltatoken={school.graph.version}" in link.value
    before = len(school.graph.requests)
    await _sync(school, sm)
    assert all(status == 200 for _t, _p, status in school.graph.requests[before:])


async def test_synchronization_reset_410_starts_a_full_read(school, sm):
    """A synchronization reset (410 Gone, https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset)
    also leads to a full read."""
    await _sync(school, sm)
    school.graph.reset_delta_links()
    school.graph.delete_user(school.bram)
    before = len(school.graph.requests)
    summary = await _sync(school, sm)
    statuses = [(path.split("?")[0], status) for _t, path, status in school.graph.requests[before:]]
    assert ("/v1.0/education/users/delta", 410) in statuses
    assert summary.removed == {"student": 1}


async def test_other_graph_errors_are_not_taken_for_expiry(school, sm):
    """Only syncStateNotFound (or 410) means "read everything": another 400 fails the sync
    and changes nothing."""
    from klasblik.server.roster.graph import DeltaExpired, GraphError

    async with school.client() as graph:
        with pytest.raises(GraphError, match="400") as err:
            await graph.get("/education/users/delta?$deltatoken=notanumber")
    assert not isinstance(err.value, DeltaExpired)
