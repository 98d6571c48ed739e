"""Roster-sync health and what follows from it, on a live server signed in to the OIDC
provider process as the app (its client-credentials grant) and reading the Graph
emulator with those tokens: the permission check of the app token's ``roles``, roster
health in /healthz and on IT's admin API (see it, run a sync by hand), viewing refused
when the roster has gone too long without a successful sync, national clouds, and msal
keeping no teacher tokens."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import aiohttp
import jwt
import pytest
from sqlalchemy import select

from klasblik import protocol as p
from klasblik.server.access import audit
from klasblik.server.auth.m365.client import authority_of
from klasblik.server.keys import M365, ROSTER_JOBS
from klasblik.server.roster import jobs as roster_jobs
from klasblik.server.settings import load_settings
from klasblik.server.storage.models import (
    AuditEntry,
    Location,
    SchoolClass,
    Staff,
    Student,
    SyncState,
)
from tests.m365 import signin_flow as f
from tests.m365.roster_fixture import ANNA, T1, T2, fill
from tests.support.graph_emulator import GraphEmulator, start_graph_emulator
from tests.support.live import start_live_server
from tests.support.timing import timeout, wait_for


@pytest.fixture
async def graph(provider):
    """The Graph emulator answering only app tokens of ``provider``, with one school."""
    emulator, runner = await start_graph_emulator(GraphEmulator(page_size=50))
    jwks = await asyncio.to_thread(provider.jwks)
    emulator.require_app_tokens(jwks, provider.tenant, provider.app_token_issuer)
    school = fill(emulator)
    try:
        yield school
    finally:
        await runner.cleanup()


async def _server(tmp_path, provider, graph, **extra):
    return await start_live_server(
        tmp_path, **provider.settings(graph_url=graph.graph.base_url, access_check_s=3600, **extra)
    )


async def _healthz(server):
    async with aiohttp.ClientSession() as http, http.get(server.base_url + "/healthz") as resp:
        return await resp.json()


_SYNC_AGE = "klasblik_roster_sync_age_seconds"


async def _scrape(server) -> dict[str, float]:
    """The unlabelled samples of /metrics."""
    headers = {"Authorization": "Bearer scrape-me"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.base_url + "/metrics", headers=headers) as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def _sync_done(server):
    await server.app[ROSTER_JOBS].get_job(roster_jobs.SYNC_JOB).func()


async def _admin(server, username=T1):
    async with server.sm() as s, s.begin():
        row = await s.scalar(select(Staff).where(Staff.username == username))
        row.is_admin = True
    client = await server.login(username)
    async with client.get(server.base_url + "/api/me") as resp:
        csrf = (await resp.json())["csrf_token"]
    return client, csrf


async def test_permission_check_names_missing_and_superfluous(tmp_path, provider, graph, caplog):
    """The app token of a registration granted the wrong permissions (ReadBasic instead
    of EduRoster.Read.All, plus tenant-wide User.Read.All): at start a warning names what
    is missing and what is superfluous, /healthz says degraded with both lists, the sync
    fails on Graph's 403 and the failure is in /healthz (code) and on the admin API
    (message)."""
    provider.app_roles = ["EduRoster.ReadBasic.All", "User.Read.All"]
    caplog.set_level(logging.INFO, logger="klasblik.server.roster.health")
    server = await _server(tmp_path, provider, graph)
    try:
        m365 = server.app[M365]
        await wait_for(lambda: m365.app_roles is not None, message="no permission check")
        await wait_for(lambda: any("permissions" in r.getMessage() for r in caplog.records))
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "missing EduRoster.Read.All" in warning.getMessage()
        assert "superfluous EduRoster.ReadBasic.All, User.Read.All" in warning.getMessage()
        health = await _healthz(server)
        assert health["status"] == "degraded"
        assert health["roster"]["permissions"]["missing"] == ["EduRoster.Read.All"]
        assert health["roster"]["permissions"]["superfluous"] == [
            "EduRoster.ReadBasic.All",
            "User.Read.All",
        ]
        await _sync_done(server)
        health = await _healthz(server)
        assert health["roster"]["failing"] and health["roster"]["last_error"]["code"] == (
            "graph_error"
        )
        assert "message" not in health["roster"]["last_error"]
        await server.add_class("7B", [], teacher="it@school.example")
        client, _csrf = await _admin(server, "it@school.example")
        async with client.get(server.base_url + "/api/admin/roster") as resp:
            detail = await resp.json()
        assert resp.status == 200
        assert "403" in detail["last_error"]["message"]
        assert "Authorization_RequestDenied" in detail["last_error"]["message"]
    finally:
        await server.stop()


async def test_exact_permissions_and_a_fresh_sync_are_healthy(tmp_path, provider, graph):
    """With exactly EduRoster.Read.All, before the first sync /healthz says the roster is
    stale (never synced); IT starts a sync from the admin API (CSRF, audit-logged), after
    which /healthz is ok with the last success and its age, and no error. A teacher who is
    not IT admin can neither see nor start it; no CSRF token, no sync."""
    server = await _server(tmp_path, provider, graph, metrics_token="scrape-me")
    try:
        await wait_for(lambda: server.app[M365].app_roles is not None)
        assert _SYNC_AGE not in await _scrape(server)  # never synced: no age to give
        health = await _healthz(server)
        assert health["roster"]["last_success"] is None and health["roster"]["stale"]
        assert health["status"] == "degraded"
        assert health["roster"]["permissions"] == {
            "checked_at": health["roster"]["permissions"]["checked_at"],
            "ok": True,
            "needed": ["EduRoster.Read.All"],
            "missing": [],
            "superfluous": [],
        }
        await server.add_class("0A", [], teacher="it@school.example")
        await server.add_class("0B", [], teacher="teacher@school.example")
        teacher = await server.login("teacher@school.example")
        async with teacher.get(server.base_url + "/api/admin/roster") as resp:
            assert resp.status == 403
        client, csrf = await _admin(server, "it@school.example")
        origin = {"Origin": server.base_url}
        async with client.post(server.base_url + "/api/admin/roster/sync", headers=origin) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf_failed"
        async with client.post(
            server.base_url + "/api/admin/roster/sync", headers={"X-CSRF-Token": csrf}
        ) as resp:
            assert resp.status == 403  # no Origin: refused too
        async with client.post(
            server.base_url + "/api/admin/roster/sync", headers={"X-CSRF-Token": csrf, **origin}
        ) as resp:
            assert resp.status == 202, await resp.text()

        async def synced():
            return (await _healthz(server))["roster"]["last_success"]

        async def poll():
            while not await synced():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), timeout(10))
        health = await _healthz(server)
        assert health["status"] == "ok", health
        assert health["roster"]["age_s"] < 60 and not health["roster"]["stale"]
        assert health["roster"]["last_error"] is None
        # /metrics reads the last success from the database, as /healthz does
        assert 0 <= (await _scrape(server))[_SYNC_AGE] < 60
        async with server.sm() as s:
            assert await s.scalar(select(Staff.id).where(Staff.username == T2))
            entries = (
                await s.scalars(select(AuditEntry).where(AuditEntry.action == "roster.sync"))
            ).all()
        assert [(e.actor, e.detail) for e in entries] == [("it@school.example", "by hand")]
        assert audit.Actions.ROSTER_SYNC == "roster.sync"
    finally:
        await server.stop()


async def test_healthz_has_no_roster_part_without_microsoft_365(live_server):
    """Without a tenant there is no roster sync, so /healthz has no roster part."""
    health = await _healthz(live_server)
    assert "roster" not in health


async def _subscribe(ws, class_id):
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": class_id}))
    while True:
        msg = json.loads((await ws.receive(timeout=timeout(5))).data)
        if msg["type"] == "result":
            return msg


async def _age_sync(server, hours):
    async with server.sm() as s, s.begin():
        row = await s.get(SyncState, "roster.sync.ok")
        row.updated_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)


async def test_stale_roster_refuses_viewing(tmp_path, provider, graph):
    """After a successful sync a teacher views their class; 25 hours later without a
    successful sync (roster_max_age_h 24) the open view is closed and a new one refused,
    both with roster_stale, as is the stored thumbnail; a sync that succeeds again lets
    viewing back in."""
    server = await _server(tmp_path, provider, graph)
    try:
        await _sync_done(server)
        async with server.sm() as s, s.begin():
            for loc in await s.scalars(select(Location)):
                loc.networks = "127.0.0.0/8 ::1/128"
        from klasblik.server.locations.policy import policy_of

        await policy_of(server.app).reload()
        async with server.sm() as s:
            class_id = await s.scalar(select(SchoolClass.id).where(SchoolClass.name == "7B"))
        client = await server.login(T1)
        ws = await server.dashboard(client)
        assert (await _subscribe(ws, class_id))["success"]

        await _age_sync(server, 25)
        await server.app[ROSTER_JOBS].get_job(roster_jobs.ACCESS_JOB).func()
        closed = None
        while True:
            m = await ws.receive(timeout=timeout(5))
            if m.type.name == "TEXT" and json.loads(m.data)["type"] == "closed":
                closed = json.loads(m.data)
            if m.type.name in ("CLOSE", "CLOSED", "CLOSING"):
                break
        assert closed is not None and closed["error"]["code"] == p.ErrorCode.ROSTER_STALE, closed
        ws2 = await server.dashboard(client)
        refused = await _subscribe(ws2, class_id)
        assert not refused["success"]
        assert refused["error"]["code"] == "roster_stale"
        assert "25 hours" in refused["error"]["message"]
        async with server.sm() as s:
            anna = await s.scalar(select(Student.id).where(Student.username == ANNA))
        async with client.get(f"{server.base_url}/api/students/{anna}/thumbnail") as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "roster_stale"

        await _sync_done(server)
        assert (await _subscribe(ws2, class_id))["success"]
    finally:
        await server.stop()


async def test_never_synced_refuses_and_zero_switches_the_limit_off(tmp_path, provider, graph):
    """A tenant configured but never synced: viewing refused (roster_stale). With
    roster_max_age_h 0 the same roster is viewable."""
    for max_age, ok in ((24, False), (0, True)):
        folder = tmp_path / str(max_age)
        folder.mkdir()
        server = await _server(folder, provider, graph, roster_max_age_h=max_age)
        try:
            ids = await server.add_class("7B", [], teacher=T1)
            client = await server.login(T1)
            ws = await server.dashboard(client)
            msg = await _subscribe(ws, ids["class_id"])
            if ok:
                assert msg["success"] or msg["error"]["code"] != "roster_stale", msg
            else:
                assert msg["error"]["code"] == "roster_stale" and "never" in msg["error"]["message"]
        finally:
            await server.stop()


def test_national_cloud_hosts_come_from_settings():
    """m365_cloud gives the sign-in host, Graph's host and the token's resource; graph_url
    and m365_authority still override (https://learn.microsoft.com/graph/deployments)."""
    tenant = "5f0c2a1e-7b4d-4c3e-9a11-2b8c6d0e4f70"
    base = {
        "m365_tenant_id": tenant,
        "m365_client_id": "c",
        "m365_client_secret": "s",
        "enrollment_token": "x" * 32,
    }
    cases = {
        "global": ("login.microsoftonline.com", "graph.microsoft.com"),
        "usgov": ("login.microsoftonline.us", "graph.microsoft.us"),
        "usgovdod": ("login.microsoftonline.us", "dod-graph.microsoft.us"),
        "china": ("login.chinacloudapi.cn", "microsoftgraph.chinacloudapi.cn"),
    }
    for cloud, (login, graph_host) in cases.items():
        settings = load_settings(env={}, overrides={**base, "m365_cloud": cloud})
        assert authority_of(settings) == f"https://{login}/{tenant}/v2.0"
        assert settings.effective_graph_url == f"https://{graph_host}/v1.0"
        assert settings.graph_scope == [f"https://{graph_host}/.default"]
    with pytest.raises(ValueError, match="m365_cloud"):
        load_settings(env={}, overrides={**base, "m365_cloud": "mars"})


async def test_national_cloud_token_end_to_end(tmp_path, provider):
    """In the US Government cloud the sync asks the provider for a token for
    https://graph.microsoft.us/.default; Graph (the emulator set to that audience) accepts
    it and the sync works; a token for the global Graph would be refused there."""
    provider.graph_resources = ["https://graph.microsoft.us"]
    emulator, runner = await start_graph_emulator(GraphEmulator(page_size=50))
    try:
        jwks = await asyncio.to_thread(provider.jwks)
        emulator.require_app_tokens(
            jwks, provider.tenant, provider.app_token_issuer, audience="https://graph.microsoft.us"
        )
        fill(emulator)
        server = await start_live_server(
            tmp_path,
            **provider.settings(m365_cloud="usgov", graph_url=emulator.base_url),
        )
        try:
            await wait_for(lambda: server.app[M365].app_roles is not None)
            await _sync_done(server)
            [token] = provider.app_tokens  # the start check's, from msal's cache since
            assert jwt.decode(token, options={"verify_signature": False})["aud"] == (
                "https://graph.microsoft.us"
            )
            assert set(emulator.seen_tokens) == {token}
            async with server.sm() as s:
                assert await s.scalar(select(Staff.id).where(Staff.username == T1))
        finally:
            await server.stop()
    finally:
        await runner.cleanup()


async def test_msal_keeps_no_teacher_tokens(m365_server, provider):
    """Sign-in asks for no refresh token (no offline_access in the authorize request) and,
    once the ID token is validated, msal's cache holds no account, no ID token and no
    refresh token of the teacher: only app-only tokens may stay."""
    await m365_server.add_class("7B", [], teacher=T1)
    sub = provider.add_user(T1)
    async with f.new_client() as http:
        authorize_url = await f.start(http, m365_server)
        scopes = dict(kv.split("=", 1) for kv in authorize_url.split("?", 1)[1].split("&"))["scope"]
        assert "offline_access" not in scopes
        out = await f.callback(http, await f.provider_login(provider, authorize_url, sub))
    assert (out.status, out.location) == (303, "/")
    msal_app = m365_server.app[M365]._app
    assert msal_app is not None
    assert msal_app.get_accounts() == []
    cache = msal_app.token_cache
    for kind in ("RefreshToken", "IdToken", "Account"):
        assert list(cache.search(kind)) == [], kind
    assert all(at.get("home_account_id") in (None, "") for at in cache.search("AccessToken"))
