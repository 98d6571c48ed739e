"""Access follows the roster: after a sync, a teacher disabled or removed in Microsoft 365
has no session and no open view left; a student no longer in the roster is refused as an
agent; an IT admin sees no student of a class they do not teach."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import jwt
import pytest
from sqlalchemy import select

from klasblik import protocol as p
from klasblik.server.locations.policy import policy_of
from klasblik.server.roster.jobs import run_sync
from klasblik.server.storage.models import Location, SchoolClass, Staff, Student, SyncState
from tests.m365.roster_fixture import ANNA, CHRIS, T1, fill
from tests.support.graph_emulator import GRAPH_AUDIENCE, GraphEmulator, start_graph_emulator
from tests.support.live import TestAgent, start_live_server
from tests.support.timing import timeout, wait_for


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
    """A synced teacher's account can never connect an agent (refused like an unknown one)."""
    server, school = setup
    await _sync(server, school)
    agent = TestAgent(server, T1)
    try:
        assert (await agent.connect())["error"]["code"] == "unknown_account"
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


@pytest.fixture
async def app_token_graph(provider):
    """The Graph emulator answering only app tokens of ``provider``, with the school."""
    graph, runner = await start_graph_emulator()
    jwks = await asyncio.to_thread(provider.jwks)
    graph.require_app_tokens(jwks, provider.tenant, provider.app_token_issuer)
    school = fill(graph)
    try:
        yield school
    finally:
        await runner.cleanup()


async def _scheduled_server(tmp_path, provider, graph, **extra):
    """A live server signed in to ``provider`` as the app, Graph at the emulator, with the
    roster sync scheduled every 15 minutes."""
    return await start_live_server(
        tmp_path,
        **provider.settings(
            graph_url=graph.base_url, roster_sync_interval_min=15, access_check_s=3600, **extra
        ),
    )


async def test_scheduled_sync_job_syncs_and_closes_views(
    tmp_path, provider, app_token_graph, graph_clients
):
    """The server schedules roster.sync at roster_sync_interval_min. Its run gets an app
    token from the provider through the app's one M365 client (msal's client-credentials
    grant), reads Graph with it, syncs the roster and closes its Graph client; the next
    run, with the same client, takes the token from msal's cache and closes the views of
    a teacher removed in Microsoft 365."""
    from klasblik.server.keys import M365, ROSTER_JOBS
    from klasblik.server.roster import jobs as roster_jobs

    school = app_token_graph
    server = await _scheduled_server(tmp_path, provider, school.graph)
    try:
        job = server.app[ROSTER_JOBS].get_job(roster_jobs.SYNC_JOB)
        assert job.trigger.interval.total_seconds() == 15 * 60
        m365 = server.app[M365]
        # the permission check at start got the app token (and read its roles) ...
        await wait_for(lambda: m365.app_roles is not None, message="no permission check")
        assert m365.app_roles == {"EduRoster.Read.All"}

        await job.func()
        # ... one client-credentials request, answered with a token Graph accepted; the
        # sync took it from msal's cache
        [call] = provider.token_calls
        assert (call.grant_type, call.path, call.status) == (
            "client_credentials",
            f"/{provider.tenant}/oauth2/v2.0/token",
            200,
        )
        [token] = provider.app_tokens
        assert school.graph.seen_tokens and set(school.graph.seen_tokens) == {token}
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["appid"] == provider.client_id and claims["aud"] == GRAPH_AUDIENCE
        assert len(graph_clients) == 1 and graph_clients[0]._http.closed
        async with server.sm() as s:
            assert await s.scalar(select(Staff.id).where(Staff.username == T1)) is not None
        msal_app = m365._app
        assert msal_app is not None, "the job did not use the app's M365 client"

        await _on_site(server)
        _client, ws = await _open_view(server, T1, "7B")
        school.graph.delete_user(school.t1)
        seen = len(school.graph.seen_tokens)
        await job.func()
        _closed_msg, code = await _closed(ws)
        assert code == p.CloseCode.ACCESS_REVOKED
        # the same client and msal app; the token came from msal's cache
        assert server.app[M365] is m365 and m365._app is msal_app
        assert provider.token_requests == 1 and provider.app_tokens == [token]
        assert len(school.graph.seen_tokens) > seen
        assert set(school.graph.seen_tokens) == {token}
        assert len(graph_clients) == 2 and all(g._http.closed for g in graph_clients)
    finally:
        await server.stop()


async def _roster_rows(server):
    """Everything the sync writes, as comparable tuples."""
    async with server.sm() as s:
        return {
            "staff": sorted(
                (x.username, x.active, x.m365_id) for x in await s.scalars(select(Staff))
            ),
            "students": sorted(
                (x.username, x.active, x.m365_id) for x in await s.scalars(select(Student))
            ),
            "classes": sorted(x.name for x in await s.scalars(select(SchoolClass))),
            "locations": sorted(x.code for x in await s.scalars(select(Location))),
            # the failure record is health, not roster (checked by the tests of health)
            "sync_state": sorted(
                (x.key, x.value)
                for x in await s.scalars(select(SyncState))
                if x.key != "roster.sync.error"
            ),
        }


async def test_scheduled_sync_with_a_wrong_client_secret_fails_clearly(
    tmp_path, provider, app_token_graph, graph_clients, caplog
):
    """With a client secret Entra refuses, the scheduled run logs why (invalid_client,
    AADSTS7000215) in one error line, reads nothing from Graph, changes nothing in the
    roster and still closes its Graph client; the next run asks again."""
    from klasblik.server.keys import ROSTER_JOBS
    from klasblik.server.roster import jobs as roster_jobs

    school = app_token_graph
    server = await _scheduled_server(
        tmp_path, provider, school.graph, m365_client_secret="not-the-secret"
    )
    try:
        await server.add_class("7B", [(ANNA, "Anna", "Bakker")], teacher=T1)
        before = await _roster_rows(server)
        job = server.app[ROSTER_JOBS].get_job(roster_jobs.SYNC_JOB)
        caplog.set_level(logging.INFO, logger=roster_jobs.__name__)
        # the permission check at start was refused too (a warning, nothing else)
        await wait_for(lambda: len(provider.token_calls) == 1, message="no start check")
        await wait_for(
            lambda: any("permissions not checked" in r.getMessage() for r in caplog.records)
        )
        caplog.clear()
        provider.token_calls.clear()
        await job.func()

        [record] = [
            r
            for r in caplog.records
            if r.name == roster_jobs.__name__ and r.levelno >= logging.ERROR
        ]
        [age] = [
            r.getMessage()
            for r in caplog.records
            if r.name == roster_jobs.__name__ and r.levelno == logging.WARNING
        ]
        assert "since the last successful sync (never)" in age and "refused" in age
        assert record.levelno == logging.ERROR and record.exc_info is None
        message = record.getMessage()
        assert message.startswith("roster sync failed; the roster is unchanged: ")
        assert "no Graph token for the app registration: invalid_client: AADSTS7000215" in message
        assert "\n" not in message and "correlation id" in message
        assert [(c.grant_type, c.status) for c in provider.token_calls] == [
            ("client_credentials", 401)
        ]
        assert provider.app_tokens == []
        assert school.graph.requests == [] and school.graph.seen_tokens == []
        assert await _roster_rows(server) == before
        assert len(graph_clients) == 1 and graph_clients[0]._http.closed

        await job.func()  # msal does not keep a 401: the next run asks the provider again
        assert [c.status for c in provider.token_calls] == [401, 401]
        assert await _roster_rows(server) == before
    finally:
        await server.stop()
