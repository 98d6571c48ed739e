"""IT's roster-sync page in Debian's Chromium: it shows that viewing is refused before the
first sync, the permission check's result, and "Sync now" runs a sync against the Graph
emulator (app tokens from the OIDC provider process) after which the page says so."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.keys import M365
from klasblik.server.storage.models import Staff
from tests.m365.roster_fixture import fill
from tests.support.chromium import launch
from tests.support.graph_emulator import GraphEmulator, start_graph_emulator
from tests.support.live import start_live_server
from tests.support.timing import timeout_ms, wait_for

pytestmark = pytest.mark.browser


async def test_it_sees_health_and_syncs_from_the_page(tmp_path, provider):
    """Stale verdict and permissions shown; the button starts a sync; "Sync done"."""
    provider.app_roles = ["EduRoster.Read.All", "User.Read.All"]
    graph, runner = await start_graph_emulator(GraphEmulator(page_size=50))
    jwks = await asyncio.to_thread(provider.jwks)
    graph.require_app_tokens(jwks, provider.tenant, provider.app_token_issuer)
    school = fill(graph)
    # IT's own account is in Microsoft 365 too (else the sync would end its session)
    it_id = graph.add_user("it@school.example", "Ivo", "Tak", "faculty", school.school)
    server = await start_live_server(tmp_path, **provider.settings(graph_url=graph.base_url))
    try:
        await wait_for(lambda: server.app[M365].app_roles is not None)
        await server.add_class("0A", [], teacher="it@school.example")
        async with server.sm() as s, s.begin():
            row = await s.scalar(select(Staff).where(Staff.username == "it@school.example"))
            row.is_admin, row.m365_id = True, it_id
            staff_id = row.id
        token, _ = await create_session(server.sm, staff_id, "127.0.0.1", server.settings)
        async with launch() as browser:
            context = await browser.new_context()
            context.set_default_timeout(timeout_ms(30_000))
            await context.add_cookies([{"name": COOKIE, "value": token, "url": server.base_url}])
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(server.base_url + "/admin/roster")
            verdict = page.locator("#verdict")
            await verdict.filter(has_text="Viewing is refused").wait_for()
            assert await page.locator("#last-success").inner_text() == "never"
            assert await page.locator("#perm-superfluous").inner_text() == "User.Read.All"
            assert await page.locator("#perm-missing").inner_text() == "none"
            await page.get_by_role("button", name="Sync now").click()
            await (
                page.locator("#sync-status")
                .filter(has_text="Sync done")
                .wait_for(timeout=timeout_ms(30_000))
            )
            assert "follows Microsoft 365" in await verdict.inner_text()
            assert await page.locator("#last-success").inner_text() != "never"
            assert problems == []
            await context.close()
    finally:
        await server.stop()
        await runner.cleanup()
