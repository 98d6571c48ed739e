"""The do-not-view list (objection, restriction, erasure): capture stops at once, the tile
says why, and an erased student stays out of view across roster syncs until IT clears it."""

from __future__ import annotations

import json

from sqlalchemy import select

from klasblik.server.access import audit
from tests.privacy.conftest import ANNA, IT, TEACHER, csrf, entries, make_admin
from tests.support.live import TestAgent, frame
from tests.support.timing import timeout, wait_for


async def _watch_class(server, class_id):
    teacher = await server.login(TEACHER)
    ws = await server.dashboard(teacher)
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": class_id}))
    while True:
        msg = json.loads((await ws.receive(timeout=timeout(5))).data)
        if msg["type"] == "result":
            return ws, msg


async def _status_until(ws, sid, key):
    while True:
        msg = await ws.receive(timeout=timeout(5))
        if msg.type.name != "TEXT":
            continue
        m = json.loads(msg.data)
        if m["type"] == "status" and m["student_id"] == sid and m["state"].get(key):
            return m["state"]


async def _no_view(server, client, on, reason="objection of the parents"):
    headers = await csrf(server, client)
    return await client.post(
        server.base_url + "/api/admin/students/no-view",
        json={"username": ANNA[0], "on": on, "reason": reason},
        headers=headers,
    )


async def test_it_sets_do_not_view_and_capture_stops_at_once(server):
    """Watched in the grid, the agent sends frames; IT sets the flag: the agent is told
    mode off, frames are no longer relayed, and the tile's status says no_view. Clearing it
    brings the grid back."""
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    await make_admin(server)
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        ws, _ = await _watch_class(server, ids["class_id"])
        await wait_for(lambda: agent.mode == "grid", message="agent asked for grid frames")
        it = await server.login(IT)
        r = await _no_view(server, it, True)
        assert r.status == 200
        await wait_for(lambda: agent.mode == "off", message="agent told to stop at once")
        state = await _status_until(ws, sid, "no_view")
        assert state["mode"] == "off"
        before = server.hub.frames_relayed
        await agent.send(frame())
        await agent.send(json.dumps({"type": "tabs", "tabs": [{"title": "x", "url": "y"}]}))
        # a second hello is answered with an error: once it is, the frame and tabs before
        # it have been handled
        await agent.send(
            json.dumps(
                {
                    "type": "hello",
                    "protocol": 1,
                    "token": "t",
                    "account": ANNA[0],
                    "device": {"id": "d", "kind": "desktop"},
                }
            )
        )
        await wait_for(lambda: agent.errors, message="the agent's messages were handled")
        assert server.hub.frames_relayed == before
        assert server.hub.agents[sid].tabs == []
        assert [e.detail for e in await entries(server, action=audit.Actions.NO_VIEW_SET)] == [
            "objection of the parents"
        ]
        r = await _no_view(server, it, False, "")
        assert r.status == 200
        await wait_for(lambda: agent.mode == "grid", message="grid again after clearing")
        await ws.close()
    finally:
        await agent.close()


async def test_erasure_is_not_undone_by_the_next_roster_sync(server):
    """After erasure the roster lists the student again (a new record): their agent is
    accepted but never asked for frames, until IT clears the do-not-view entry."""
    ids = await server.add_class("7B", [ANNA])
    await make_admin(server)
    it = await server.login(IT)
    headers = await csrf(server, it)
    r = await it.post(
        server.base_url + "/api/admin/students/erase", json={"username": ANNA[0]}, headers=headers
    )
    assert r.status == 200
    again = await server.add_class("7B-new", [ANNA])  # what a roster sync does
    sid = again["students"][ANNA[0]]
    assert sid != ids["students"][ANNA[0]]
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        ws, result = await _watch_class(server, again["class_id"])
        assert result["result"]["students"][0]["state"]["no_view"] is True
        await wait_for(lambda: sid in server.hub.agents)
        assert agent.mode == "off"
        r = await _no_view(server, it, False, "")
        assert r.status == 200
        await wait_for(lambda: agent.mode == "grid", message="watched after IT cleared it")
        await ws.close()
    finally:
        await agent.close()


CSV = (
    "Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Groep;M365 gebruikersnaam;BRIN;"
    "Vestiging;Niet bekijken\n"
    "1001;Anna;;Bakker;7B;anna.bakker@school.example;12AB;00;ja\n"
    "1002;Bram;de;Vries;7B;bram.devries@school.example;12AB;00;\n"
)


async def test_roster_column_sets_do_not_view_and_only_clears_its_own(sm):
    """A "ja" in the student administration's column puts the student on the list; a later
    "nee" takes off only what the roster set, never IT's entry."""
    from klasblik.server.access import no_view
    from klasblik.server.roster.csv_import import CsvImportError, import_students_csv

    await import_students_csv(sm, CSV.encode())
    entry = await no_view.entry(sm, ANNA[0])
    assert entry is not None and entry.source == "roster"
    assert await no_view.entry(sm, "bram.devries@school.example") is None
    await import_students_csv(sm, CSV.replace(";ja\n", ";nee\n").encode())
    assert await no_view.entry(sm, ANNA[0]) is None
    await no_view.block(sm, ANNA[0], None, "it", IT, "objection")
    await import_students_csv(sm, CSV.replace(";ja\n", ";nee\n").encode())
    assert (await no_view.entry(sm, ANNA[0])).source == "it"
    try:
        await import_students_csv(sm, CSV.replace(";ja\n", ";misschien\n").encode())
    except CsvImportError as exc:
        assert "line 2" in str(exc) and "niet bekijken" in str(exc)
    else:
        raise AssertionError("a bad value must be refused")


async def test_an_entry_made_on_another_instance_reaches_a_connected_agent(db_url, tmp_path):
    """The list is read again every access_check_s: an entry written by another instance
    (here: straight into the database) stops this instance's agent within that time."""
    from klasblik.server.access import no_view
    from tests.support.live import start_live_server

    server = await start_live_server(tmp_path, database_url=db_url, access_check_s=1)
    try:
        ids = await server.add_class("7B", [ANNA])
        agent = TestAgent(server, ANNA[0])
        try:
            await agent.connect()
            ws, _ = await _watch_class(server, ids["class_id"])
            await wait_for(lambda: agent.mode == "grid", message="grid")
            await no_view.block(server.sm, ANNA[0], ids["school_id"], "it", IT, "elsewhere")
            await wait_for(lambda: agent.mode == "off", timeout(10), "stopped by the recheck")
            await no_view.clear(server.sm, ANNA[0])
            await wait_for(lambda: agent.mode == "grid", timeout(10), "watched again")
            await ws.close()
        finally:
            await agent.close()
    finally:
        await server.stop()


async def test_an_agent_whose_student_is_gone_is_not_captured(sm):
    """What a connected agent may not capture: listed students and students no longer in
    the database (erased on another instance while the agent stayed connected here)."""
    from klasblik.server.access import no_view
    from klasblik.server.roster.csv_import import import_students_csv
    from klasblik.server.storage.models import Student

    await import_students_csv(sm, CSV.replace(";ja\n", ";nee\n").encode())
    async with sm() as session:
        ids = sorted(await session.scalars(select(Student.id)))
    gone = max(ids) + 1000
    assert await no_view.not_to_capture(sm, [*ids, gone]) == {gone}
    await no_view.block(sm, ANNA[0], None, "it", IT, "objection")
    async with sm() as session:
        anna = await session.scalar(select(Student.id).where(Student.username == ANNA[0]))
    assert await no_view.not_to_capture(sm, [*ids, gone]) == {anna, gone}
    assert await no_view.not_to_capture(sm, []) == set()


async def test_do_not_view_hides_and_deletes_the_stored_picture(server):
    """Offline, a listed student's tile says no_view and offers no stored picture; the
    stored screenshot and tabs are deleted when IT sets the flag, and the thumbnail API
    refuses (logged) even if one were stored again."""
    from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
    from tests.support.live import jpeg

    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    await make_admin(server)
    await server.store_thumbnail(sid, jpeg())
    await server.store.put(tabs_name(sid), b"[]")
    it = await server.login(IT)
    assert (await _no_view(server, it, True)).status == 200
    assert await server.store.get(thumbnail_name(sid)) is None
    assert await server.store.get(tabs_name(sid)) is None
    ws, result = await _watch_class(server, ids["class_id"])
    tile = result["result"]["students"][0]
    assert tile["state"]["no_view"] is True and tile["has_thumbnail"] is False
    await ws.close()
    await server.store_thumbnail(sid, jpeg())
    teacher = await server.login(TEACHER)
    r = await teacher.get(f"{server.base_url}/api/students/{sid}/thumbnail")
    assert r.status == 403 and (await r.json())["error"]["code"] == "no_view"
    refused = await entries(server, action=audit.Actions.VIEW_REFUSED)
    assert refused and refused[-1].subject == f"student:{sid}"
