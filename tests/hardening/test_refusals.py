"""Refused hellos: bounded in the audit log whatever an attacker repeats, with what a data
protection officer needs (who, why, from where, how often); and the same answer for every
refused account, so the enrollment token does not make the server a roster oracle."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from sqlalchemy import select, update

from klasblik.server.access import audit
from klasblik.server.keys import REFUSALS
from klasblik.server.storage.models import AuditEntry, Student
from tests.support.live import TOKEN, start_live_server
from tests.support.timing import timeout

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")


async def _hello(server, account: str, token: str = TOKEN, address: str = "127.0.0.1"):
    """One hello; the answer and the close code."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        ws = await http.ws_connect(server.agent_url)
        hello = {
            "type": "hello",
            "protocol": 1,
            "token": token,
            "account": account,
            "device": {"id": "d", "kind": "desktop"},
        }
        await ws.send_str(json.dumps(hello))
        answer = json.loads(await ws.receive_str(timeout=timeout(5)))
        await ws.receive(timeout=timeout(5))
        return answer, ws.close_code


async def _refusals(server) -> list[AuditEntry]:
    async with server.sm() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == audit.Actions.AGENT_REFUSED)
        )
        return list(rows)


def _count(entry: AuditEntry) -> int:
    """How many refusals one entry stands for."""
    if m := re.search(r"repeated (\d+) times", entry.detail):
        return int(m.group(1))
    if m := re.match(r"(\d+) more refused agents", entry.detail):
        return int(m.group(1))
    return 1


async def test_a_flood_of_refused_hellos_is_counted_not_written_one_by_one(tmp_path):
    """150 refused hellos (one account with a wrong token 60 times from two addresses,
    90 made-up accounts) write at most 2*max+1 entries in the window; together they count
    all 150, and the first of each kind names account, reason and address."""
    server = await start_live_server(tmp_path, refusal_log_window_s=3600, refusal_log_max=5)
    try:
        await server.add_class("7B", [ANNA])
        sends = [_hello(server, ANNA[0], "wrong", f"127.0.0.{2 + i % 2}") for i in range(60)]
        sends += [_hello(server, f"made.up.{i}@school.example") for i in range(90)]
        for i in range(0, len(sends), 25):  # 25 at a time: a storm, within the fd limit
            answers = await asyncio.gather(*sends[i : i + 25])
            assert all(a["type"] == "error" for a, _ in answers)
        await server.app[REFUSALS].flush()
        rows = await _refusals(server)
        assert len(rows) <= 2 * 5 + 1
        assert sum(_count(r) for r in rows) == 150
        first = [r for r in rows if r.actor == ANNA[0] and "repeated" not in r.detail]
        assert {(r.detail, r.ip) for r in first} == {
            ("wrong enrollment token", "127.0.0.2"),
            ("wrong enrollment token", "127.0.0.3"),
        }
        more = [r for r in rows if r.actor == "(more)"]
        assert len(more) == 1 and "of 87 accounts from 1 addresses" in more[0].detail
    finally:
        await server.stop()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_refused_accounts_all_look_unknown(tmp_path, db, request):
    """A staff account (in any spelling), a disabled student and an account nobody knows get
    the same answer and close code; only the audit log tells them apart."""
    overrides = {}
    if db == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    server = await start_live_server(tmp_path, **overrides)
    try:
        await server.add_class("7B", [ANNA, BRAM])
        async with server.sm() as session, session.begin():
            await session.execute(
                update(Student).where(Student.username == BRAM[0]).values(active=False)
            )
        accounts = [
            "teacher@school.example",
            "  Teacher@School.EXAMPLE ",
            BRAM[0],
            "nobody@school.example",
            "x" * 300,
        ]
        answers = [await _hello(server, a) for a in accounts]
        assert len({json.dumps(a, sort_keys=True) + str(c) for a, c in answers}) == 1
        answer, close = answers[0]
        assert (answer["error"]["code"], close) == ("unknown_account", 4001)
        assert "staff" not in answer["error"]["message"]
        reasons = {r.actor: r.detail for r in await _refusals(server)}
        assert "staff" in reasons["teacher@school.example"]
        assert "disabled" in reasons[BRAM[0]]
        assert "not in the school's roster" in reasons["nobody@school.example"]
    finally:
        await server.stop()
