"""The server fails closed when its database goes away mid-session, on SQLite and on
PostgreSQL: every WebSocket answers in the protocol (``internal_error``, close 1011 where the
connection cannot go on), never with an HTTP page in the upgraded socket; live agents keep
streaming; HTTP answers a JSON 503 and /healthz says the database is down.

How the database goes away, for real:

- PostgreSQL: the test's own throwaway database gets ``ALLOW_CONNECTIONS false`` and every
  connection to it is ended with ``pg_terminate_backend``; the server's pooled connections
  are dead and new ones are refused ("not currently accepting connections").
- SQLite: the folder holding the database file is moved away and the server's pooled
  connections are closed (as a lost disk would end them), so every query has to open the
  file anew and cannot ("unable to open database file").

Where only writes fail (``writes_fail``): on PostgreSQL the database turns
``default_transaction_read_only`` and its connections are ended; on SQLite another
connection holds ``BEGIN EXCLUSIVE`` (WAL: readers go on, writers get "database is locked"
after the 5 s busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from klasblik import protocol as p
from klasblik.server.keys import ENGINE
from klasblik.server.live.agent_endpoint import OPEN_WEBSOCKET
from klasblik.server.web.middleware import middlewares
from tests.support.live import LiveServer, TestAgent, frame, next_viewer_frame, start_live_server
from tests.support.services import PG_ADMIN_DSN, postgres_database
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")
TEACHER = "teacher@school.example"

#: a write on SQLite waits out the 5 s busy timeout before it fails
ANSWER_S = timeout(15.0)


class Database:
    """The test's own database, which the test takes away and gives back."""

    url: str
    server: LiveServer | None = None

    async def down(self) -> None:
        raise NotImplementedError

    async def up(self) -> None:
        raise NotImplementedError

    async def writes_fail(self) -> None:
        raise NotImplementedError

    async def writes_work(self) -> None:
        raise NotImplementedError

    async def restore(self) -> None:
        """Whatever the test left it in: back to normal."""
        raise NotImplementedError


class SqliteDatabase(Database):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.away = folder.with_name(folder.name + "-away")
        self.url = f"sqlite+aiosqlite:///{folder}/klasblik.db"
        self._lock: sqlite3.Connection | None = None

    async def down(self) -> None:
        assert self.server is not None
        self.folder.rename(self.away)
        await self.server.app[ENGINE].dispose()  # what a lost disk does to open connections

    async def up(self) -> None:
        self.away.rename(self.folder)

    async def writes_fail(self) -> None:
        self._lock = sqlite3.connect(self.folder / "klasblik.db", isolation_level=None)
        self._lock.execute("BEGIN EXCLUSIVE")

    async def writes_work(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None

    async def restore(self) -> None:
        await self.writes_work()
        if self.away.exists():
            await self.up()


class PostgresDatabase(Database):
    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _end_connections(self) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
            await conn.execute(sql, self.name)

            async def none_left() -> bool:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                return await conn.fetchval(sql, self.name) == 0

            await wait_for(none_left, message=f"no connection left to {self.name}")
        finally:
            await conn.close()

    async def down(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self._end_connections()

    async def up(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    async def writes_fail(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on')
        await self._end_connections()  # the pool reconnects, read-only

    async def writes_work(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')
        await self._end_connections()

    async def restore(self) -> None:
        await self.up()
        await self._admin(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, tmp_path) -> AsyncIterator[Database]:
    """The test's own database on SQLite and on PostgreSQL (a throwaway one, dropped after)."""
    if request.param == "sqlite":
        db: Database = SqliteDatabase(tmp_path / "db")
        try:
            yield db
        finally:
            await db.restore()
    else:
        name = "klasblik_fc_" + secrets.token_hex(4)
        with postgres_database(name) as url:
            db = PostgresDatabase(url, name)
            try:
                yield db
            finally:
                await db.restore()


@pytest.fixture
async def server(database, tmp_path) -> AsyncIterator[LiveServer]:
    """A live server on the test's database (blobs in a folder of their own)."""
    live = await start_live_server(tmp_path, database_url=database.url)
    database.server = live
    try:
        yield live
    finally:
        await database.restore()
        await live.stop()


# ---- talking to the server -----------------------------------------------------------


async def _command(ws, command: dict[str, Any], within: float = ANSWER_S) -> dict[str, Any]:
    """Send a dashboard command; its answer (other messages and frames are passed over)."""
    await ws.send_str(json.dumps(command))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        m = await ws.receive(timeout=max(0.1, deadline - loop.time()))
        if m.type == aiohttp.WSMsgType.BINARY:
            continue
        assert m.type == aiohttp.WSMsgType.TEXT, f"socket ended: {m} ({ws.close_code})"
        d = json.loads(m.data)
        if d["type"] == "result" and d["id"] == command["id"]:
            return d


async def _get(server: LiveServer, path: str, client=None) -> tuple[int, str, Any]:
    own = client is None
    http = client or aiohttp.ClientSession()
    try:
        async with http.get(server.base_url + path) as r:
            return r.status, r.content_type, await r.json()
    finally:
        if own:
            await http.close()


async def _refused_hello(server: LiveServer, account: str, token: str) -> tuple[dict, int | None]:
    """A hello the server refuses: its answer and the close code that follows."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.agent_url)
        device = {"id": "refused-device", "kind": "desktop"}
        hello = {"type": "hello", "protocol": 1, "token": token, "account": account}
        await ws.send_str(json.dumps({**hello, "device": device}))
        answer = json.loads(await ws.receive_str(timeout=ANSWER_S))
        closing = await ws.receive(timeout=timeout(5))
        assert closing.type == aiohttp.WSMsgType.CLOSE, closing
        return answer, ws.close_code


def _internal_error(answer: dict[str, Any], msg_id: int | None = None) -> bool:
    error = answer.get("error") or {}
    shape = (
        {"type": "result", "id": msg_id, "success": False, "error": error}
        if msg_id is not None
        else {"type": "error", "error": error}
    )
    return (
        answer == shape
        and error.get("code") == "internal_error"
        and isinstance(error.get("message"), str)
        and error["message"] != ""
    )


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---- the dashboard ---------------------------------------------------------------------


async def test_subscribe_while_database_down_is_internal_error_and_same_socket_retries(
    database, server, caplog
):
    """A subscribe while the database is down is answered internal_error with its id, logged
    once naming the teacher, the socket stays open; once the database is back, the same
    socket's subscribe succeeds."""
    ids = await server.add_class("7B", [ANNA])
    client = await server.login(TEACHER)
    ws = await server.dashboard(client)
    await database.down()
    caplog.clear()

    answer = await _command(ws, {"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
    assert _internal_error(answer, 1), answer
    assert (await _command(ws, {"type": "ping", "id": 2}))["success"] is True
    assert not ws.closed
    errors = _errors(caplog)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert f"staff {ids['teacher_id']}" in errors[0].getMessage()
    assert errors[0].exc_info is not None

    await database.up()
    answer = await _command(ws, {"type": "subscribe", "id": 3, "class_id": ids["class_id"]})
    assert answer["success"] is True, answer
    assert answer["result"]["class"]["id"] == ids["class_id"]
    assert [s["display_name"] for s in answer["result"]["students"]] == ["Anna B."]
    await ws.close()


async def test_dashboard_handshake_while_database_down_is_a_json_503(database, server):
    """A dashboard handshake whose session look-up hits the dead database is refused with a
    plain HTTP 503 and the JSON error body, before any upgrade."""
    await server.add_class("7B", [ANNA])
    client = await server.login(TEACHER)
    await database.down()

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.dashboard(client)
    assert refused.value.status == 503
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Origin": server.base_url,
    }
    async with client.get(server.base_url + "/ws/dashboard", headers=upgrade) as r:
        assert r.status == 503
        assert r.content_type == "application/json"
        body = await r.json()
    assert body["error"]["code"] == "unavailable" and body["error"]["message"]


async def test_subscribe_whose_audit_entry_cannot_be_written_opens_no_view(database, server):
    """With reads working and writes failing, a subscribe is answered internal_error with its
    id (its audit entry cannot be written, so the view does not open: the agent stays off),
    the socket stays open and the connected agent stays; a wrong-token agent is still
    refused 4001; once writes work, the same socket's subscribe opens the view."""
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    agent = TestAgent(server, ANNA[0])
    client = await server.login(TEACHER)
    try:
        await agent.connect()
        await wait_for(lambda: agent.watches, message="first watch")
        ws = await server.dashboard(client)
        await database.writes_fail()

        answer = await _command(ws, {"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
        assert _internal_error(answer, 1), answer
        assert "audit" in answer["error"]["message"]
        assert agent.mode == "off" and server.hub.viewers_of(sid) == []
        refused, code = await _refused_hello(server, ANNA[0], "wrong-token")
        assert (refused["error"]["code"], code) == ("auth_failed", p.CloseCode.AUTH_FAILED)
        assert not ws.closed and not agent.ws.closed and sid in server.hub.agents

        await database.writes_work()
        answer = await _command(ws, {"type": "subscribe", "id": 2, "class_id": ids["class_id"]})
        assert answer["success"] is True, answer
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        await ws.close()
    finally:
        await agent.close()


# ---- the agents ------------------------------------------------------------------------


async def test_agent_hello_while_database_down_gets_internal_error_then_close_1011(
    database, server, caplog
):
    """An agent's hello while the database is down gets internal_error and close 1011 (not a
    500 page in the socket), logged once naming its device; once the database is back, the
    agent is welcomed."""
    await server.add_class("7B", [ANNA])
    await database.down()
    caplog.clear()
    agent = TestAgent(server, ANNA[0])
    try:
        answer = await agent.connect()
        assert _internal_error(answer), answer
        closing = await agent.ws.receive(timeout=timeout(5))
        assert closing.type == aiohttp.WSMsgType.CLOSE, closing
        assert agent.ws.close_code == p.CloseCode.INTERNAL_ERROR == 1011
        errors = _errors(caplog)
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "test-" + ANNA[0] in errors[0].getMessage()
    finally:
        await agent.close()

    await database.up()
    again = TestAgent(server, ANNA[0])
    try:
        assert (await again.connect())["type"] == "welcome"
    finally:
        await again.close()


async def test_connected_agent_keeps_streaming_while_database_down(database, server, caplog):
    """While the database is down, an agent already connected keeps streaming every frame to
    the watching dashboard; the failed writes around it (last-seen of an agent leaving, the
    audit entry of a refused agent) are logged and drop no live agent."""
    ids = await server.add_class("7B", [ANNA, BRAM])
    anna = TestAgent(server, ANNA[0])
    bram = TestAgent(server, BRAM[0])
    client = await server.login(TEACHER)
    try:
        await anna.connect()
        await bram.connect()
        ws = await server.dashboard(client)
        answer = await _command(ws, {"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
        assert answer["success"] is True
        await wait_for(lambda: anna.mode == "grid", message="grid watch")
        await anna.send(frame(seq=1))
        assert (await next_viewer_frame(ws))[1].seq == 1
        await database.down()

        for seq in range(2, 7):
            await anna.send(frame(seq=seq))
            assert (await next_viewer_frame(ws, within=timeout(2)))[1].seq == seq
        await bram.close()  # its last-seen time cannot be written
        await wait_for(
            lambda: any("last-seen" in r.getMessage() for r in _errors(caplog)),
            timeout=timeout(15),  # batched writes, and a busy database may wait its timeout
            message="the failed last-seen write",
        )
        # a refused agent: its audit entry cannot be written
        refused, code = await _refused_hello(server, ANNA[0], "wrong-token")
        assert (refused["error"]["code"], code) == ("auth_failed", p.CloseCode.AUTH_FAILED)
        assert any("audit" in r.getMessage() for r in _errors(caplog))
        for seq in range(7, 10):
            await anna.send(frame(seq=seq))
            assert (await next_viewer_frame(ws, within=timeout(2)))[1].seq == seq
        assert not anna.ws.closed and not ws.closed
        assert list(server.hub.agents) == [ids["students"][ANNA[0]]]
        await ws.close()
    finally:
        await bram.close()
        await anna.close()


# ---- HTTP ------------------------------------------------------------------------------


async def test_api_me_while_database_down_is_a_json_503(database, server):
    """/api/me answers a JSON 503 (`unavailable`) while the database is down, and 200 again
    once it is back."""
    ids = await server.add_class("7B", [ANNA])
    client = await server.login(TEACHER)
    status, _, body = await _get(server, "/api/me", client)
    assert status == 200 and [c["id"] for c in body["classes"]] == [ids["class_id"]]
    await database.down()

    status, content_type, body = await _get(server, "/api/me", client)
    assert (status, content_type) == (503, "application/json")
    assert body["error"]["code"] == "unavailable" and body["error"]["message"]

    await database.up()
    status, _, body = await _get(server, "/api/me", client)
    assert status == 200 and [c["id"] for c in body["classes"]] == [ids["class_id"]]


async def test_healthz_says_database_down(database, server):
    """/healthz answers 503 with the database down while it is, and ok once it is back."""
    status, _, body = await _get(server, "/healthz")
    assert (status, body["status"], body["database"]) == (200, "ok", "ok")
    await database.down()

    status, _, body = await _get(server, "/healthz")
    assert (status, body["status"]) == (503, "down")
    assert body["database"].startswith("down:")

    await database.up()
    status, _, body = await _get(server, "/healthz")
    assert (status, body["status"], body["database"]) == (200, "ok", "ok")


# ---- faults that are not the database --------------------------------------------------


async def test_fault_in_one_agent_message_is_internal_error_and_the_agent_goes_on(
    live_server, monkeypatch
):
    """A fault while handling one agent message (the hub fails on its tabs) answers
    internal_error, and the same connection goes on: its next frame reaches the viewer."""
    ids = await live_server.add_class("7B", [ANNA])
    agent = TestAgent(live_server, ANNA[0])
    client = await live_server.login(TEACHER)

    def broken(conn, tabs):
        raise RuntimeError("a bug in the hub")

    try:
        await agent.connect()
        ws = await live_server.dashboard(client)
        answer = await _command(ws, {"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
        assert answer["success"] is True
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        monkeypatch.setattr(live_server.hub, "on_tabs", broken)
        tabs = [{"title": "Rekenen", "url": "", "active": True, "window": 1}]
        await agent.send(json.dumps({"type": "tabs", "tabs": tabs}))
        await wait_for(lambda: agent.errors, message="an error for the tabs")
        assert agent.errors[0]["code"] == "internal_error"
        await agent.send(frame(seq=5))
        assert (await next_viewer_frame(ws))[1].seq == 5
        assert not agent.ws.closed
        await ws.close()
    finally:
        await agent.close()


async def test_fault_outside_a_dashboard_command_is_closed_internal_error_then_1011(
    live_server, monkeypatch
):
    """A fault in a dashboard connection outside any command (the hub cannot take the viewer)
    sends closed with internal_error and closes 1011."""
    await live_server.add_class("7B", [ANNA])
    client = await live_server.login(TEACHER)

    def broken(viewer):
        raise RuntimeError("a bug in the hub")

    monkeypatch.setattr(live_server.hub, "add_viewer", broken)
    ws = await live_server.dashboard(client)
    closed = json.loads(await ws.receive_str(timeout=timeout(5)))
    assert closed["type"] == "closed" and closed["error"]["code"] == "internal_error"
    assert (await ws.receive(timeout=timeout(5))).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == p.CloseCode.INTERNAL_ERROR


@contextlib.asynccontextmanager
async def _bare_server(handler) -> AsyncIterator[str]:
    """An aiohttp server with Klasblik's middlewares and one route, ``/ws``."""
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "unmarked"])
async def test_error_escaping_an_open_websocket_is_no_http_page(marked, caplog):
    """An error escaping a WebSocket handler after its handshake writes no HTTP page into the
    socket: a socket its endpoint marked open is closed 1011, any other connection is
    dropped; the client never reads HTTP bytes as a frame."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if marked:
            request[OPEN_WEBSOCKET] = ws
        await ws.send_str('{"type": "hello from the server"}')
        await ws.receive()
        raise RuntimeError("a bug after the handshake")

    async with _bare_server(handler) as url, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        assert (await ws.receive(timeout=timeout(5))).data == '{"type": "hello from the server"}'
        await ws.send_str("go")
        end = await ws.receive(timeout=timeout(5))
        assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), end
        if marked:
            assert ws.close_code == p.CloseCode.INTERNAL_ERROR
            assert sum("a bug after the handshake" in str(r.exc_info) for r in _errors(caplog)) == 1
