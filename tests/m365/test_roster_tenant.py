"""Roster sync as a real school tenant behaves, against the Graph emulator: paging links
to another host are not followed, ended classes link nobody, guests are not staff, object
ids (never usernames) own rows, the IT admin group is read by the sync."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from sqlalchemy import select

from klasblik.server.roster.graph import ForeignLink
from klasblik.server.roster.sync import class_ended, sync_roster
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import SchoolClass, Staff, class_students, class_teachers
from tests.m365.roster_fixture import T1, fill
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


async def _sync(school, sm, **kwargs):
    async with school.client() as graph:
        return await sync_roster(sm, graph, **kwargs)


async def _links(sm, name):
    async with sm() as s:
        cls = await s.scalar(select(SchoolClass).where(SchoolClass.name == name))
        students = (
            await s.execute(select(class_students).where(class_students.c.class_id == cls.id))
        ).all()
        teachers = (
            await s.execute(select(class_teachers).where(class_teachers.c.class_id == cls.id))
        ).all()
    return len(students), len(teachers)


async def test_next_link_to_another_host_is_not_followed(school, sm):
    """A page whose @odata.nextLink names another host (same address, other port here: a
    different origin) fails the sync before any request goes there: the bearer token is
    never sent to it, and nothing changes."""
    seen: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"value": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", trap)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        school.graph.next_link_base = f"http://127.0.0.1:{port}/v1.0"
        with pytest.raises(ForeignLink, match=f"127.0.0.1:{port}"):
            await _sync(school, sm)
        async with school.client() as graph:
            with pytest.raises(ForeignLink):
                await graph.get("https://evil.example/v1.0/education/schools")
            with pytest.raises(ForeignLink):
                await graph.get("//evil.example/v1.0/education/schools")
    finally:
        await runner.cleanup()
    assert seen == []
    async with sm() as s:
        assert (await s.scalar(select(SchoolClass))) is None


async def test_ended_class_stops_linking(school, sm):
    """A class whose SDS academic session (educationTerm.endDate) has passed unlinks its
    teachers and students at the next sync, without reading them; a running term or no
    term keeps them (https://learn.microsoft.com/graph/api/resources/educationterm)."""
    today = dt.date(2026, 12, 1)
    school.graph.set_term(
        school.c7b, {"displayName": "2026-2027", "startDate": "2026-08-20", "endDate": "2027-07-10"}
    )
    await _sync(school, sm, today=today)
    assert await _links(sm, "7B") == (2, 1)
    school.graph.set_term(
        school.c7b, {"displayName": "2025-2026", "startDate": "2025-08-20", "endDate": "2026-07-10"}
    )
    before = len(school.graph.requests)
    summary = await _sync(school, sm, today=today)
    assert await _links(sm, "7B") == (0, 0)
    assert await _links(sm, "8C") == (1, 1)
    paths = [p for _t, p, _s in school.graph.requests[before:]]
    assert not any(school.c7b in p and "/members" in p for p in paths)
    assert summary.changed_classes


def test_class_ended_reads_sds_shapes():
    """Term dates as Graph sends them (Date "YYYY-MM-DD"); missing or empty pieces mean
    the class runs; the end date itself is still a school day."""
    today = dt.date(2026, 12, 1)
    assert class_ended({"term": {"endDate": "2026-11-30"}}, today)
    assert not class_ended({"term": {"endDate": "2026-12-01"}}, today)
    assert not class_ended({"term": None}, today)
    assert not class_ended({"term": {"endDate": None}}, today)
    assert not class_ended({"term": {"endDate": "garbage"}}, today)
    assert not class_ended({}, today)


async def test_guest_is_never_staff(school, sm):
    """A guest account (userType Guest: a user of another tenant invited into this one),
    listed as a teacher of a school and of a class, is not taken into the roster."""
    guest = school.graph.add_user(
        "visitor_other.example#EXT#@school.example",
        "Vera",
        "Bezoek",
        "teacher",
        school.school,
        user_type="Guest",
    )
    school.graph.classes[school.c7b].teachers.add(guest)
    school.graph.add_member(school.c7b, guest)
    summary = await _sync(school, sm)
    async with sm() as s:
        staff = set((await s.execute(select(Staff.m365_id))).scalars())
    assert guest not in staff and school.t1 in staff
    assert any("guest" in w for w in summary.warnings)


async def test_reused_username_does_not_take_over_a_row(school, sm):
    """When Microsoft 365 gives a departed teacher's username to a different account (new
    object id), the old row is not handed to the new account: it keeps its object id and
    is removed; the newcomer is not merged into it."""
    await _sync(school, sm)
    school.graph.delete_user(school.t1)
    newcomer = school.graph.add_user(T1, "Nina", "Nieuw", "teacher", school.school)
    await _sync(school, sm)
    async with sm() as s:
        row = await s.scalar(select(Staff).where(Staff.username == T1))
    assert row.m365_id == school.t1 and not row.active
    assert row.m365_id != newcomer


async def test_admin_group_is_read_by_the_sync(school, sm):
    """With an IT admin group, the sync sets the IT-admin flag from its members
    (/groups/{id}/transitiveMembers) and takes it away when someone leaves the group."""
    gid = "0a0a0a0a-0000-4000-8000-000000000001"
    school.graph.groups[gid] = {school.t1}
    first = await _sync(school, sm, admin_group=gid)
    assert first.updated["it admin"] == 0  # new rows are created, not updated
    async with sm() as s:
        flags = {m: a for m, a in (await s.execute(select(Staff.m365_id, Staff.is_admin))).all()}
    assert flags == {school.t1: True, school.t2: False}
    school.graph.groups[gid] = {school.t2}
    summary = await _sync(school, sm, admin_group=gid)
    async with sm() as s:
        flags = {m: a for m, a in (await s.execute(select(Staff.m365_id, Staff.is_admin))).all()}
    assert flags == {school.t1: False, school.t2: True}
    assert summary.updated["it admin"] == 2


async def test_failure_while_reading_classes_is_one_graph_error(school, sm):
    """A class read that fails (Graph answers 503 without Retry-After past the retries)
    while several classes are read at once fails the sync with that GraphError, not a
    group of errors; nothing is written."""
    from klasblik.server.roster.graph import GraphClient, GraphError

    school.graph.fail_path_contains = f"/education/classes/{school.c8c}/members"

    async def token() -> str:
        return school.graph.token

    async with GraphClient(school.graph.base_url, token, max_retries=0) as graph:
        with pytest.raises(GraphError, match="HTTP 503"):
            await sync_roster(sm, graph)
    async with sm() as s:
        assert (await s.scalar(select(SchoolClass))) is None


async def test_sds_v2_shapes(school, sm):
    """School Data Sync v2 as Microsoft documents its objects: a school with its number
    only in ``externalId`` (no ``schoolNumber``), staff with ``primaryRole`` faculty, a
    class with a term but no end date (https://learn.microsoft.com/graph/api/resources/educationschool,
    https://learn.microsoft.com/graph/api/resources/educationuser)."""
    from klasblik.server.storage.models import Location

    sid = school.graph.add_school("Het Anker", "34CD01")
    school.graph.schools[sid]["schoolNumber"] = None
    head = school.graph.add_user("dir@school.example", "Dirk", "Rector", "faculty", sid)
    kid = school.graph.add_user("kim@school.example", "Kim", "de Wit", "student", sid)
    school.graph.add_class("3A", sid, [kid], [head], term={"displayName": "2026", "endDate": None})
    await _sync(school, sm)
    async with sm() as s:
        loc = await s.scalar(select(Location).where(Location.code == "34CD01"))
        staff = await s.scalar(select(Staff).where(Staff.m365_id == head))
    assert loc is not None and loc.name == "Het Anker"
    assert staff is not None and staff.active
    assert await _links(sm, "3A") == (1, 1)
