"""What the server tells a dashboard about a tile's state, and how long its socket lives:
a capture error cleared by the next frame, and the socket closed when its sign-in ends."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from sqlalchemy import select, update

from klasblik import protocol as p
from klasblik.server.storage.models import WebSession
from tests.support.live import TestAgent, frame, start_live_server
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, class_id: int) -> dict[str, Any]:
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": class_id}))
    while True:
        d = json.loads(await ws.receive_str(timeout=timeout(5)))
        if d["type"] == "result" and d["id"] == 1:
            assert d["success"], d
            return d


async def _next_status(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next ``status`` event (frames and other events in between are skipped)."""
    while True:
        m = await ws.receive(timeout=timeout(5))
        assert m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), m
        if m.type == aiohttp.WSMsgType.TEXT:
            d = json.loads(m.data)
            if d["type"] == "status":
                return dict(d["state"])


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], int | None]:
    """The ``closed`` event and the close code, skipping everything before them."""
    closed: dict[str, Any] = {}
    while True:
        m = await ws.receive(timeout=timeout(10))
        if m.type == aiohttp.WSMsgType.TEXT:
            d = json.loads(m.data)
            if d["type"] == "closed":
                closed = d
        elif m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return closed, ws.close_code


@contextlib.asynccontextmanager
async def _watched_agent(
    server: Any,
) -> AsyncIterator[tuple[dict[str, Any], TestAgent, aiohttp.ClientWebSocketResponse]]:
    """A class of one with a connected agent, and a teacher's dashboard subscribed to it."""
    ids = await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0])
    client = await server.login("teacher@school.example")
    try:
        await agent.connect()
        ws = await server.dashboard(client)
        await _subscribe(ws, ids["class_id"])
        yield ids, agent, ws
    finally:
        await agent.close()


async def test_next_frame_clears_capture_error(live_server: Any) -> None:
    """A capture error reaches the dashboard; the next frame clears it (``capture_error``
    null), so the tile stops saying it cannot capture."""
    async with _watched_agent(live_server) as (ids, agent, ws):
        await agent.send(json.dumps({"type": "capture_error", "reason": "screen locked"}))
        state = await _next_status(ws)
        while state.get("capture_error") is None:  # the grid watch's own status first
            state = await _next_status(ws)
        assert state["capture_error"] == "screen locked"
        await agent.send(frame(seq=2))
        state = await _next_status(ws)
        assert state["capture_error"] is None, state
        assert state["online"] is True
        sid = ids["students"][ANNA[0]]
        assert live_server.hub.agents[sid].capture_error is None


async def test_capture_error_code_reaches_the_dashboard_and_unknown_codes_are_other(
    live_server: Any,
) -> None:
    """The agent's code for the cause travels as ``capture_code`` (for the teacher's
    words); a code the server does not know is ``other``; a code that is not a string is
    refused with ``invalid_format`` and changes nothing."""
    async with _watched_agent(live_server) as (ids, agent, ws):

        async def reported(reason: str, code: object) -> dict[str, Any]:
            await agent.send(json.dumps({"type": "capture_error", "reason": reason, "code": code}))
            state = await _next_status(ws)
            while state.get("capture_error") != reason:
                state = await _next_status(ws)
            return state

        assert (await reported("screen locked", "locked"))["capture_code"] == "locked"
        assert (await reported("a new kind of trouble", "quantum"))["capture_code"] == "other"
        await agent.send(json.dumps({"type": "capture_error", "reason": "x", "code": 7}))
        await wait_for(lambda: agent.errors, message="the refusal of a bad code")
        assert agent.errors[-1]["code"] == p.ErrorCode.INVALID_FORMAT
        conn = live_server.hub.agents[ids["students"][ANNA[0]]]
        assert (conn.capture_error, conn.capture_code) == ("a new kind of trouble", "other")


async def test_sign_out_closes_the_dashboard_socket_at_once(live_server: Any) -> None:
    """Signing out (another tab of the same sign-in) closes that sign-in's open dashboard
    with ``session_ended`` and 4011; another teacher's sign-in is left alone."""
    ids = await live_server.add_class("7B", [ANNA])
    client = await live_server.login("teacher@school.example")
    other = await live_server.login("teacher@school.example")  # a second sign-in
    ws = await live_server.dashboard(client)
    ws_other = await live_server.dashboard(other)
    await _subscribe(ws, ids["class_id"])
    await _subscribe(ws_other, ids["class_id"])
    me = await (await client.get(live_server.base_url + "/api/me")).json()
    reading = asyncio.create_task(_closed(ws))  # a browser answers the close at once too
    r = await client.post(
        live_server.base_url + "/auth/signout",
        headers={"X-CSRF-Token": me["csrf_token"], "Origin": live_server.base_url},
    )
    assert r.status == 200, await r.text()
    closed, code = await reading
    assert closed["error"]["code"] == p.ErrorCode.SESSION_ENDED, closed
    assert code == p.CloseCode.SESSION_ENDED
    await ws_other.send_str(json.dumps({"type": "ping", "id": 5}))
    answer = json.loads(await ws_other.receive_str(timeout=timeout(5)))
    assert answer == {"type": "result", "id": 5, "success": True, "result": {}}


async def test_expired_session_closes_the_dashboard_socket(tmp_path: Any) -> None:
    """A sign-in that expires while its dashboard is open closes the socket within
    ``dashboard_session_check_s``; the socket does not outlive it."""
    server = await start_live_server(tmp_path, dashboard_session_check_s=0.3)
    try:
        ids = await server.add_class("7B", [ANNA])
        client = await server.login("teacher@school.example")
        ws = await server.dashboard(client)
        await _subscribe(ws, ids["class_id"])
        async with server.sm() as session, session.begin():
            past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            await session.execute(update(WebSession).values(expires_at=past))
        closed, code = await _closed(ws)
        assert closed["error"]["code"] == p.ErrorCode.SESSION_ENDED, closed
        assert code == p.CloseCode.SESSION_ENDED
        assert not server.hub.viewers
    finally:
        await server.stop()


async def test_one_round_checks_every_open_dashboard_and_closes_only_ended_sign_ins(
    tmp_path: Any,
) -> None:
    """The open dashboards' sign-ins are checked together, in one query, not a transaction
    each; of four sockets from three sign-ins, an expired sign-in closes its own two, a
    disabled teacher's closes, and the live one stays open."""
    from sqlalchemy import event

    from klasblik.server.live.dashboard_endpoint import check_sessions
    from klasblik.server.storage.models import Staff

    server = await start_live_server(tmp_path, dashboard_session_check_s=600)
    try:
        ids = await server.add_class("7B", [ANNA])
        other = await server.add_class("7C", [ANNA], teacher="other@school.example")
        expiring = await server.login("teacher@school.example")
        staying = await server.login("teacher@school.example")
        disabled = await server.login("other@school.example")
        sockets = {
            "expiring": [await server.dashboard(expiring), await server.dashboard(expiring)],
            "staying": [await server.dashboard(staying)],
            "disabled": [await server.dashboard(disabled)],
        }
        for name, wss in sockets.items():
            for ws in wss:
                await _subscribe(ws, (other if name == "disabled" else ids)["class_id"])
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        engine = server.sm.kw["bind"].sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert await check_sessions(server.app) == 0  # all live: nothing closes
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1, statements
        assert len(server.hub.viewers) == 4

        expired_id = next(v.session_id for v in server.hub.viewers if v in _viewers(server, 2))
        async with server.sm() as session, session.begin():
            past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            await session.execute(
                update(WebSession).where(WebSession.id == expired_id).values(expires_at=past)
            )
            await session.execute(
                update(Staff).where(Staff.id == other["teacher_id"]).values(active=False)
            )
        checking = asyncio.create_task(check_sessions(server.app))
        ended = [*sockets["expiring"], *sockets["disabled"]]
        for closed, code in await asyncio.gather(*(_closed(ws) for ws in ended)):
            assert closed["error"]["code"] == p.ErrorCode.SESSION_ENDED, closed
            assert code == p.CloseCode.SESSION_ENDED
        assert await checking == 3
        (ws,) = sockets["staying"]
        await ws.send_str(json.dumps({"type": "ping", "id": 5}))
        answer = json.loads(await ws.receive_str(timeout=timeout(5)))
        assert answer == {"type": "result", "id": 5, "success": True, "result": {}}
        async with server.sm() as session:  # the ended sign-ins are gone, the live one kept
            left = (await session.execute(select(WebSession.id))).scalars().all()
        assert left == [next(iter(server.hub.viewers)).session_id]
    finally:
        await server.stop()


def _viewers(server: Any, count: int) -> list[Any]:
    """The viewers of the sign-in that has ``count`` open dashboards."""
    by_session: dict[str, list[Any]] = {}
    for viewer in server.hub.viewers:
        by_session.setdefault(viewer.session_id, []).append(viewer)
    (found,) = [vs for vs in by_session.values() if len(vs) == count]
    return found
