"""The IT admin API and page: audit log as JSON pages and CSV, export and erasure over
HTTP with CSRF; only administrators, and every refusal is logged. Also: a view whose audit
entry cannot be written does not open."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import aiohttp
import pytest
from sqlalchemy import select, update

from klasblik.server.access import audit
from klasblik.server.storage.blobs.base import thumbnail_name
from klasblik.server.storage.models import AuditEntry, Staff, Student
from tests.support.live import TestAgent, frame
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
IT = "it@school.example"
TEACHER = "teacher@school.example"


async def _admin(server) -> aiohttp.ClientSession:
    ids = await server.add_class("7B", [ANNA])
    await server.add_class("IT", [], teacher=IT, teacher_name="IT Beheer")
    async with server.sm() as session, session.begin():
        await session.execute(update(Staff).where(Staff.username == IT).values(is_admin=True))
    server.ids = ids
    return await server.login(IT)


async def _csrf(server, client) -> dict[str, str]:
    me = await (await client.get(server.base_url + "/api/me")).json()
    return {"X-CSRF-Token": me["csrf_token"], "Origin": server.base_url}


async def _actions(server, action):
    async with server.sm() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def test_admin_api_is_for_administrators_only(live_server):
    """No session: 401. A teacher: 403 on every admin route, each refusal audit-logged."""
    await _admin(live_server)
    base = live_server.base_url
    async with aiohttp.ClientSession() as anon:
        assert (await anon.get(base + "/api/admin/audit")).status == 401
    teacher = await live_server.login(TEACHER)
    for path in ("/api/admin/audit", "/api/admin/audit.csv", "/admin/audit"):
        r = await teacher.get(base + path)
        assert r.status == 403, path
        assert (await r.json())["error"]["code"] == "forbidden"
    headers = await _csrf(live_server, teacher)
    r = await teacher.post(
        base + "/api/admin/students/erase", json={"username": ANNA[0]}, headers=headers
    )
    assert r.status == 403
    refused = await _actions(live_server, audit.Actions.ADMIN_REFUSED)
    assert [e.actor for e in refused] == [TEACHER] * 4
    assert refused[-1].subject == "POST /api/admin/students/erase"
    async with live_server.sm() as session:
        assert await session.scalar(select(Student).where(Student.username == ANNA[0])) is not None


async def test_audit_json_pages_newest_first_and_filters(live_server):
    """limit/before_id walk the log newest first without gaps; action=view.* filters."""
    client = await _admin(live_server)
    for n in range(5):
        await audit.record(
            live_server.sm, TEACHER, "view.grid.start", f"class:{n}", "", "192.0.2.1"
        )
    await audit.record(live_server.sm, IT, "student.export", "student:1", "", "192.0.2.2")
    base = live_server.base_url + "/api/admin/audit"
    seen: list[int] = []
    before = None
    while True:
        params = {"limit": "2", "action": "view.*"} | ({"before_id": str(before)} if before else {})
        page = await (await client.get(base, params=params)).json()
        seen += [e["id"] for e in page["entries"]]
        assert all(e["action"] == "view.grid.start" for e in page["entries"])
        before = page["next_before_id"]
        if before is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    r = await client.get(base, params={"limit": "0"})
    assert r.status == 400 and "limit" in (await r.json())["error"]["message"]
    r = await client.get(base, params={"since": "yesterday"})
    assert r.status == 400 and "since" in (await r.json())["error"]["message"]


async def test_audit_csv_download_is_complete_and_logged(live_server):
    """The CSV has a header and one row per entry (formulas defused); the download is logged."""
    client = await _admin(live_server)
    await audit.record(
        live_server.sm, TEACHER, "view.focus.start", "student:1", "=HYPERLINK(1)", "192.0.2.1"
    )
    r = await client.get(live_server.base_url + "/api/admin/audit.csv", params={"actor": TEACHER})
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await r.text())))
    assert rows[0] == ["id", "at", "actor", "action", "subject", "detail", "ip"]
    assert [row[3] for row in rows[1:]] == ["view.focus.start"]
    assert rows[1][5] == "'=HYPERLINK(1)"
    logged = await _actions(live_server, audit.Actions.AUDIT_EXPORT)
    assert [(e.actor, json.loads(e.detail)) for e in logged] == [(IT, {"actor": TEACHER})]


async def test_admin_page_is_served_to_administrators_with_the_csp(live_server):
    """/admin/audit is the audit page for IT, under the same Content-Security-Policy."""
    client = await _admin(live_server)
    r = await client.get(live_server.base_url + "/admin/audit")
    assert r.status == 200
    text = await r.text()
    assert "/admin-audit.js" in text and "<script>" not in text and "style=" not in text
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    js = await client.get(live_server.base_url + "/admin-audit.js")
    assert js.status == 200 and "/api/admin/audit" in await js.text()


async def test_export_and_erase_need_csrf_and_erase_disconnects_the_agent(live_server):
    """Without the CSRF token: 403. With it: a zip export; then erasure closes the student's
    agent, removes row and blobs, and logs both."""
    client = await _admin(live_server)
    sid = live_server.ids["students"][ANNA[0]]
    base = live_server.base_url
    await live_server.store.put(thumbnail_name(sid), frame()[16:])
    r = await client.post(
        base + "/api/admin/students/export", json={"username": ANNA[0]}, headers={"Origin": base}
    )
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    headers = await _csrf(live_server, client)
    r = await client.post(
        base + "/api/admin/students/export", json={"username": ANNA[0]}, headers=headers
    )
    assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await r.read())) as zf:
        assert zf.namelist() == ["data.json"]  # no reason given: no screenshot
    r = await client.post(
        base + "/api/admin/students/export", json={"username": "x@y"}, headers=headers
    )
    assert r.status == 404

    agent = TestAgent(live_server, ANNA[0])
    try:
        await agent.connect()
        await wait_for(lambda: sid in live_server.hub.agents, message="agent attached")
        r = await client.post(
            base + "/api/admin/students/erase", json={"username": ANNA[0]}, headers=headers
        )
        assert r.status == 200
        assert (await r.json())["erased"] is True
        await wait_for(lambda: agent.ws.closed, message="agent disconnected")
        assert agent.ws.close_code == 4010
        assert sid not in live_server.hub.agents
    finally:
        await agent.close()
    assert [b.name async for b in live_server.store.list(f"students/{sid}/")] == []
    async with live_server.sm() as session:
        assert await session.get(Student, sid) is None
    assert len(await _actions(live_server, audit.Actions.STUDENT_EXPORT)) == 1
    assert [e.subject for e in await _actions(live_server, audit.Actions.STUDENT_ERASE)] == [
        f"student:{sid}"
    ]


async def test_a_view_whose_audit_entry_cannot_be_written_does_not_open(live_server, monkeypatch):
    """If the audit write fails, subscribe answers an error and no frames are asked for."""
    ids = await live_server.add_class("7B", [ANNA])
    agent = TestAgent(live_server, ANNA[0])
    client = await live_server.login(TEACHER)

    async def broken(*args, **kwargs):
        raise RuntimeError("database refused the write")

    try:
        await agent.connect()
        ws = await live_server.dashboard(client)
        monkeypatch.setattr(audit, "record", broken)
        monkeypatch.setattr(audit, "record_many", broken)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        answer = json.loads((await ws.receive(timeout=timeout(5))).data)
        assert (answer["type"], answer["id"], answer["success"]) == ("result", 1, False)
        assert "audit" in answer["error"]["message"]
        assert live_server.hub.watchers.get(ids["students"][ANNA[0]]) in (None, {})
        assert agent.mode == "off"
    finally:
        await agent.close()


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": 5}, "not json"])
async def test_bad_erase_bodies_get_a_clear_error(live_server, body):
    """A missing or malformed username is a 400 that says what is needed."""
    client = await _admin(live_server)
    headers = await _csrf(live_server, client)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    r = await client.post(
        live_server.base_url + "/api/admin/students/erase", headers=headers, **kwargs
    )
    assert r.status == 400
    assert (await r.json())["error"]["code"] in ("invalid_format", "invalid_json")


async def test_refused_thumbnail_request_is_audit_logged(live_server):
    """A teacher asking for the stored thumbnail of a student not theirs gets 403, logged."""
    await _admin(live_server)
    other = await live_server.add_class(
        "8C",
        [("cas@school.example", "Cas", "Smit")],
        teacher="other@school.example",
        teacher_name="Other",
    )
    cas = other["students"]["cas@school.example"]
    teacher = await live_server.login(TEACHER)
    r = await teacher.get(f"{live_server.base_url}/api/students/{cas}/thumbnail")
    assert r.status == 403
    refused = await _actions(live_server, audit.Actions.VIEW_REFUSED)
    assert [(e.actor, e.subject) for e in refused] == [(TEACHER, f"student:{cas}")]
    assert refused[0].detail.startswith("stored thumbnail:")
