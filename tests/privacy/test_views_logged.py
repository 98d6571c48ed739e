"""Every view is logged, and a student's export holds every view of them, grid views
included. IT reads, exports and erases only for its own school; the stored screenshot and
tabs go into an export only with a stated, logged reason."""

from __future__ import annotations

import io
import json
import zipfile

from klasblik.server.access import audit
from klasblik.server.storage.blobs.base import tabs_name
from tests.privacy.conftest import ANNA, BRAM, IT, TEACHER, csrf, entries, make_admin
from tests.support.live import jpeg
from tests.support.timing import timeout

OTHER_IT = "it@other.example"


async def _export(server, client, username, **extra):
    headers = await csrf(server, client)
    return await client.post(
        server.base_url + "/api/admin/students/export",
        json={"username": username, **extra},
        headers=headers,
    )


async def _data(response) -> tuple[list[str], dict]:
    with zipfile.ZipFile(io.BytesIO(await response.read())) as zf:
        return sorted(zf.namelist()), json.loads(zf.read("data.json"))


async def test_grid_view_and_stored_thumbnail_are_in_the_students_export(server):
    """A teacher opens the class grid and fetches a stored thumbnail; both are audit entries
    about the student, so the student's export lists them under who watched when."""
    ids = await server.add_class("7B", [ANNA, BRAM])
    anna = ids["students"][ANNA[0]]
    await make_admin(server)
    teacher = await server.login(TEACHER)
    ws = await server.dashboard(teacher)
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
    answer = json.loads((await ws.receive(timeout=timeout(5))).data)
    assert answer["success"] is True
    await ws.send_str(json.dumps({"type": "unsubscribe", "id": 2, "class_id": ids["class_id"]}))
    assert json.loads((await ws.receive(timeout=timeout(5))).data)["success"] is True
    await ws.close()
    await server.store_thumbnail(anna, jpeg())
    r = await teacher.get(f"{server.base_url}/api/students/{anna}/thumbnail")
    assert r.status == 200
    stored = await entries(server, action=audit.Actions.VIEW_STORED)
    assert [(e.actor, e.subject) for e in stored] == [(TEACHER, f"student:{anna}")]

    it = await server.login(IT)
    r = await _export(server, it, ANNA[0])
    assert r.status == 200
    _names, data = await _data(r)
    views = [(v["by"], v["how"]) for v in data["views"]]
    assert views == [
        (TEACHER, "view.grid.start"),
        (TEACHER, "view.stored"),
    ]
    actions = [e["action"] for e in data["audit"]]
    assert actions == ["view.grid.start", "view.grid.end", "view.stored", "student.export"]
    assert all(e["subject"] == f"student:{anna}" for e in data["audit"])


async def test_reading_the_audit_log_is_itself_logged(server):
    """A page of the audit log is an audit entry (who, which filter)."""
    await make_admin(server)
    it = await server.login(IT)
    r = await it.get(server.base_url + "/api/admin/audit", params={"actor": TEACHER})
    assert r.status == 200
    reads = await entries(server, action=audit.Actions.AUDIT_READ)
    assert [(e.actor, json.loads(e.detail)) for e in reads] == [(IT, {"actor": TEACHER})]


async def test_screenshot_and_tabs_only_with_a_logged_reason(server):
    """Without a reason: data.json only. include_latest without a reason: refused. With a
    reason: both files, and the reason is in the export's audit entry."""
    ids = await server.add_class("7B", [ANNA])
    anna = ids["students"][ANNA[0]]
    await make_admin(server)
    await server.store_thumbnail(anna, jpeg())
    await server.store.put(tabs_name(anna), b"[]")
    it = await server.login(IT)
    names, _ = await _data(await _export(server, it, ANNA[0]))
    assert names == ["data.json"]
    r = await _export(server, it, ANNA[0], include_latest=True, reason="")
    assert r.status == 400 and (await r.json())["error"]["code"] == "reason_required"
    reason = "request of the parents, letter of 3 March"
    names, data = await _data(
        await _export(server, it, ANNA[0], include_latest=True, reason=reason)
    )
    assert names == ["data.json", "tabs.json", "thumbnail.jpg"]
    exports = await entries(server, action=audit.Actions.STUDENT_EXPORT)
    assert reason in exports[-1].detail
    assert reason in data["audit"][-1]["detail"]


async def test_it_of_another_school_cannot_export_erase_or_read_this_school(server):
    """An IT admin of school B gets "not found" for school A's student (export, erasure,
    do-not-view), and the audit log shows only school B's entries."""
    ids = await server.add_class("7B", [ANNA])
    anna = ids["students"][ANNA[0]]
    await make_admin(server)
    await make_admin(server, OTHER_IT, brin="99ZZ")
    await audit.record(server.sm, TEACHER, "view.focus.start", f"student:{anna}", "Anna B.")
    other = await server.login(OTHER_IT)
    headers = await csrf(server, other)
    base = server.base_url + "/api/admin/students/"
    for path, body in (
        ("export", {"username": ANNA[0]}),
        ("erase", {"username": ANNA[0]}),
        ("no-view", {"username": ANNA[0], "on": True, "reason": "x"}),
    ):
        r = await other.post(base + path, json=body, headers=headers)
        assert r.status == 404, path
        assert ANNA[0] in (await r.json())["error"]["message"]  # same answer as nobody
    page = await (await other.get(server.base_url + "/api/admin/audit")).json()
    assert page["entries"], "school B's own entries are visible"
    assert all(e["actor"] == OTHER_IT for e in page["entries"])
    assert not any(e["subject"] == f"student:{anna}" for e in page["entries"])
    csv_text = await (await other.get(server.base_url + "/api/admin/audit.csv")).text()
    assert TEACHER not in csv_text and f"student:{anna}" not in csv_text
    # school A's own IT sees it
    own = await server.login(IT)
    page = await (await own.get(server.base_url + "/api/admin/audit")).json()
    assert any(e["subject"] == f"student:{anna}" for e in page["entries"])
