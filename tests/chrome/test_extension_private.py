"""Private use is spared: a page on the school's private list is blanked by the extension
before capture (in real Chromium, against the real server): no frame leaves the device, the
tab list carries no title or address for it, and the teacher's tile says "private page"."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..support.live import start_live_server
from ..support.timing import timeout, wait_for
from .extension import running_agent
from .pages import serve_pages, solid_page_html
from .test_extension_live import GREEN, RED, STUDENT, TEACHER, HubSpy, Teacher, _hex

pytestmark = pytest.mark.browser


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    html = {
        "/red": solid_page_html("Rood vlak", _hex(RED), "Rekenen"),
        "/bank/home": solid_page_html("Mijn Bank - saldo", _hex(GREEN)),
    }
    async with serve_pages(html) as base:
        yield base


async def test_private_page_is_blanked_on_the_device(pages: str, tmp_path: Path) -> None:
    server = await start_live_server(tmp_path, private_pages=("127.0.0.1/bank", "mail.google.com"))
    private_reports: list[bool] = []
    hub = server.hub
    on_private = hub.on_private_page

    def spy(conn: Any, on: bool) -> None:
        private_reports.append(on)
        on_private(conn, on)

    hub.on_private_page = spy  # type: ignore[method-assign]
    try:
        ids = await server.add_class("7B", [STUDENT], teacher=TEACHER)
        sid = ids["students"][STUDENT[0]]
        frames = HubSpy()
        frames.attach(server)
        async with running_agent(
            tmp_path, server_url=server.agent_url, token=server.token, account=STUDENT[0]
        ) as agent:
            await agent.open_page(pages + "/red")
            bank = await agent.open_page(pages + "/bank/home")
            await wait_for(lambda: sid in hub.agents, timeout(30), "the extension to connect")
            teacher = Teacher(await server.dashboard(await server.login(TEACHER)))
            try:
                await teacher.command({"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
                await teacher.command({"type": "focus", "id": 2, "student_id": sid})
                await wait_for(lambda: True in private_reports, timeout(20), "private page")
                assert hub.status(sid)["private_page"] is True
                tabs = await wait_for(
                    lambda: [t for t in teacher.tabs if len(t) >= 2], timeout(10), "all tabs"
                )
                private = [t for t in tabs[-1] if t.get("private")]
                assert private == [
                    {
                        "title": "",
                        "url": "",
                        "active": True,
                        "window": private[0]["window"],
                        "private": True,
                    }
                ]
                assert not any("Bank" in t["title"] or "/bank" in t["url"] for t in tabs[-1])
                since = time.monotonic()
                # a few capture intervals pass: nothing leaves the device
                settle = time.monotonic() + timeout(2)
                while time.monotonic() < settle:
                    await bank.wait_for_timeout(200)
                assert frames.frames_since(since) == []
                await bank.close()  # the red page is in front again: frames flow
                await wait_for(lambda: False in private_reports, timeout(20), "private off")
                await wait_for(
                    lambda: frames.frames_since(since), timeout(20), "frames of the red page"
                )
                assert "private_page" not in hub.status(sid)
            finally:
                await teacher.close()
    finally:
        await server.stop()
