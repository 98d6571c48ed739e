"""The do-not-view list (objection, restriction, erasure): capture stops at once, the tile
says why, and an erased student stays out of view across roster syncs until IT clears it."""

from __future__ import annotations

import json

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
