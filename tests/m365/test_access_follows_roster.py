"""Access follows the roster: after a sync, a teacher disabled or removed in Microsoft 365
has no session and no open view left; a student no longer in the roster is refused as an
agent; an IT admin sees no student of a class they do not teach."""

from __future__ import annotations

import json

import aiohttp
import pytest
from sqlalchemy import select

from klasblik import protocol as p
from klasblik.server.locations.policy import policy_of
from klasblik.server.roster.jobs import run_sync
from klasblik.server.storage.models import Location, SchoolClass, Staff
from tests.m365.roster_fixture import ANNA, CHRIS, T1, fill
from tests.support.graph_emulator import GraphEmulator, start_graph_emulator
from tests.support.live import TestAgent, start_live_server
from tests.support.timing import timeout


@pytest.fixture
async def setup(tmp_path):
    graph, runner = await start_graph_emulator(GraphEmulator(page_size=3))
    server = await start_live_server(tmp_path, access_check_s=3600)
    school = fill(graph)
    try:
        yield server, school
    finally:
        await server.stop()
        await runner.cleanup()


async def _sync(server, school):
    """Sync, then put every location on this machine's network (the test clients are
    here) and let the location rules reload, as IT would after defining networks."""
    async with school.client() as graph:
        summary = await run_sync(server.sm, graph, server.hub)
    await _on_site(server)
    return summary


async def _on_site(server):
    async with server.sm() as s, s.begin():
        for loc in await s.scalars(select(Location)):
            loc.networks = "127.0.0.0/8 ::1/128"
    policy = policy_of(server.app)
    if policy is not None:
        await policy.reload()


async def _class_id(server, name):
    async with server.sm() as s:
        return await s.scalar(select(SchoolClass.id).where(SchoolClass.name == name))


async def _open_view(server, username, class_name):
    client = await server.login(username)
    ws = await server.dashboard(client)
    class_id = await _class_id(server, class_name)
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": class_id}))
    while True:
        msg = json.loads((await ws.receive(timeout=timeout(5))).data)
        if msg["type"] == "result":
            assert msg["success"], msg
            return client, ws


async def _closed(ws):
    """The 'closed' message and the close code a revoked view gets."""
    closed = None
    while True:
        m = await ws.receive(timeout=timeout(5))
        if m.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(m.data)
            if data["type"] == "closed":
                closed = data
        elif m.type == aiohttp.WSMsgType.CLOSE:
            return closed, m.data
        elif m.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return closed, ws.close_code


@pytest.mark.parametrize("change", ["delete", "disable"])
async def test_sync_that_removes_a_teacher_closes_their_open_view(setup, change):
    """A teacher deleted or disabled in Microsoft 365: the next sync closes their open
    view (access_revoked) and ends their session."""
    server, school = setup
    await _sync(server, school)
    client, ws = await _open_view(server, T1, "7B")
    assert len(server.hub.viewers) == 1
    getattr(school.graph, f"{change}_user")(school.t1)
    summary = await _sync(server, school)
    assert len(summary.lost_access) == 1
    closed, code = await _closed(ws)
    assert code == p.CloseCode.ACCESS_REVOKED
    assert closed["error"]["code"] == "forbidden"
    assert server.hub.viewers == set()
    async with client.get(server.base_url + "/api/me") as resp:
        assert resp.status == 401


async def test_teacher_removed_from_class_loses_that_view(setup):
    """A teacher taken off a class in Microsoft 365 has that class's view closed."""
    server, school = setup
    await _sync(server, school)
    _client, ws = await _open_view(server, T1, "7B")
    school.graph.remove_member(school.c7b, school.t1)
    summary = await _sync(server, school)
    assert summary.lost_access == set()
    closed, code = await _closed(ws)
    assert code == p.CloseCode.ACCESS_REVOKED and "do not teach" in closed["error"]["message"]


async def test_view_of_other_teacher_stays_open(setup):
    """Removing one teacher leaves another teacher's view open."""
    server, school = setup
    await _sync(server, school)
    _c1, ws1 = await _open_view(server, T1, "7B")
    school.graph.delete_user(school.t2)
    await _sync(server, school)
    assert not ws1.closed
    assert len(server.hub.viewers) == 1


async def test_periodic_check_closes_views_after_sync_elsewhere(tmp_path):
    """A roster change made by another process (the CLI) closes open views within
    access_check_s."""
    graph, runner = await start_graph_emulator()
    server = await start_live_server(tmp_path, access_check_s=1)
    try:
        school = fill(graph)
        await _sync(server, school)
        _client, ws = await _open_view(server, T1, "7B")
        async with server.sm() as s, s.begin():
            staff = await s.scalar(select(Staff).where(Staff.username == T1))
            staff.active = False
        _closed_msg, code = await _closed(ws)
        assert code == p.CloseCode.ACCESS_REVOKED
    finally:
        await server.stop()
        await runner.cleanup()


async def test_disabled_student_agent_refused_after_sync(setup):
    """A student disabled in Microsoft 365 is refused as an agent (unknown_account)."""
    server, school = setup
    await _sync(server, school)
    school.graph.disable_user(school.chris)
    await _sync(server, school)
    agent = TestAgent(server, CHRIS)
    try:
        answer = await agent.connect()
        assert answer["error"]["code"] == "unknown_account"
    finally:
        await agent.close()
    other = TestAgent(server, ANNA)
    try:
        assert (await other.connect())["type"] == "welcome"
    finally:
        await other.close()


async def test_staff_agent_refused(setup):
    """A synced teacher's account can never connect an agent (not_a_student)."""
    server, school = setup
    await _sync(server, school)
    agent = TestAgent(server, T1)
    try:
        assert (await agent.connect())["error"]["code"] == "not_a_student"
    finally:
        await agent.close()


async def test_it_admin_cannot_view_a_class_they_do_not_teach(setup):
    """Being IT admin grants no class: subscribing to another teacher's class is forbidden."""
    server, school = setup
    await _sync(server, school)
    async with server.sm() as s, s.begin():
        t2 = await s.scalar(select(Staff).where(Staff.username == "j.jansen@school.example"))
        t2.is_admin = True
    client = await server.login("j.jansen@school.example")
    ws = await server.dashboard(client)
    await ws.send_str(
        json.dumps({"type": "subscribe", "id": 1, "class_id": await _class_id(server, "7B")})
    )
    while True:
        msg = json.loads((await ws.receive(timeout=timeout(5))).data)
        if msg["type"] == "result":
            break
    assert msg["success"] is False and msg["error"]["code"] == "forbidden"
    await ws.close()


async def test_scheduled_sync_job_syncs_and_closes_views(tmp_path, monkeypatch):
    """The server schedules roster.sync at roster_sync_interval_min; its run syncs the
    roster and closes the views of a teacher removed in Microsoft 365."""
    from klasblik.server.auth.m365.client import M365Client
    from klasblik.server.keys import ROSTER_JOBS
    from klasblik.server.roster import jobs as roster_jobs

    graph, runner = await start_graph_emulator()
    school = fill(graph)

    async def app_token(self):
        return graph.token

    # the Graph emulator stands in for Graph; the app token for the emulator's own
    monkeypatch.setattr(M365Client, "graph_token", app_token)
    server = await start_live_server(
        tmp_path,
        graph_url=graph.base_url,
        m365_tenant_id="t",
        m365_client_id="c",
        m365_client_secret="s",
        roster_sync_interval_min=15,
        access_check_s=3600,
    )
    try:
        scheduler = server.app[ROSTER_JOBS]
        job = scheduler.get_job(roster_jobs.SYNC_JOB)
        assert job.trigger.interval.total_seconds() == 15 * 60
        await job.func()
        await _on_site(server)
        _client, ws = await _open_view(server, T1, "7B")
        school.graph.delete_user(school.t1)
        await job.func()
        _closed_msg, code = await _closed(ws)
        assert code == p.CloseCode.ACCESS_REVOKED
    finally:
        await server.stop()
        await runner.cleanup()
