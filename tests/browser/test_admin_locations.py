"""IT's location page in real Chromium: lists locations, switches remote-lesson mode on
with the CSRF token, offers the letter, ends the mode; no CSP violation or script error."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from klasblik.server.access import audit
from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.storage.models import RemoteMode, Staff
from tests.locations.conftest import make_school
from tests.support.live import start_live_server
from tests.support.sourced import audit_entries
from tests.support.timing import timeout_ms


async def test_admin_switches_remote_mode_on_and_off_in_the_browser(tmp_path, browser: Any) -> None:
    """The page shows both locations, switches remote mode on (stored, audit-logged, letter
    links shown) and ends it again, without console errors."""
    server = await start_live_server(tmp_path)
    try:
        school = await make_school(server)
        staff_id = await _staff_id(server, school.admin)
        token, _ = await create_session(server.sm, staff_id, "127.0.0.1", server.settings)
        context = await browser.new_context()
        context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
        await context.add_cookies([{"name": COOKIE, "value": token, "url": server.base_url}])
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(msg.text)
                if msg.type == "error" and "favicon" not in msg.text
                else None
            ),
        )
        await page.goto(server.base_url + "/admin/locations")
        await page.wait_for_selector("#locations tr >> nth=1")
        rows = await page.locator("#locations tr").all_inner_texts()
        assert "Hoofdgebouw" in rows[0] and "127.0.0.0/30" in rows[0]
        assert "Dependance" in rows[1]
        assert "127.0.0.1" in await page.inner_text("#whereami")

        await (
            page.locator("#locations tr")
            .first.get_by_role("button", name="Remote-lesson mode")
            .click()
        )
        until = (dt.datetime.now(ZoneInfo("Europe/Amsterdam")) + dt.timedelta(days=2)).replace(
            second=0, microsecond=0
        )
        await page.fill("#remote-form input[name=until]", until.strftime("%Y-%m-%dT%H:%M"))
        await page.fill("#remote-form textarea[name=reason]", "Schoolgebouw gesloten")
        await page.click("#remote-form button[type=submit]")
        await page.wait_for_selector("#remote-on:not([hidden])")
        assert "lang=nl" in (await page.get_attribute("#letter-nl", "href") or "")
        assert "on until" in (await page.locator("#locations tr").first.inner_text())
        async with server.sm() as session:
            mode = await session.scalar(select(RemoteMode))
        assert mode is not None and mode.until == until.astimezone(dt.UTC)
        assert mode.reason == "Schoolgebouw gesloten"
        assert len(await audit_entries(server, audit.Actions.REMOTE_MODE_ON)) == 1

        await page.click("#remote-end")  # asks first
        await page.click("#remote-end-confirm")
        await page.wait_for_selector("#remote-on[hidden]", state="attached")
        assert len(await audit_entries(server, audit.Actions.REMOTE_MODE_OFF)) == 1
        assert problems == []
        await context.close()
    finally:
        await server.stop()


async def _staff_id(server: Any, username: str) -> int:
    async with server.sm() as session:
        staff = await session.scalar(select(Staff).where(Staff.username == username))
    assert staff is not None
    return staff.id
