"""Clients with real, distinct source addresses, for the location tests.

Linux routes all of 127.0.0.0/8 to the loopback interface, so a client socket bound to
127.0.0.2 reaches the server on 127.0.0.1 and the server genuinely sees 127.0.0.2 as the
peer. The tests define school locations by loopback networks:

- location A (``12AB00``): 127.0.0.0/30, on-site addresses 127.0.0.1-127.0.0.3
- location B (``12AB01``): 127.0.0.4/30, on-site addresses 127.0.0.5-127.0.0.7
- anything else (127.0.0.50, ...) is off-site.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import defaultdict
from typing import Any

import aiohttp
from sqlalchemy import select
from yarl import URL

from klasblik import protocol as p
from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.keys import LOCATIONS
from klasblik.server.locations.policy import LocationPolicy
from klasblik.server.storage.models import AuditEntry, Location, Staff
from tests.support.live import LiveServer, TestAgent
from tests.support.timing import timeout, wait_for

__all__ = [
    "AT_A",
    "AT_A2",
    "AT_B",
    "A_NET",
    "B_NET",
    "OFF_SITE",
    "OFF_SITE2",
    "Dashboard",
    "FakeClock",
    "SourcedAgent",
    "add_admin",
    "audit_entries",
    "client_at",
    "policy",
    "setup_locations",
]

A_NET, B_NET = "127.0.0.0/30", "127.0.0.4/30"
AT_A, AT_A2, AT_B = "127.0.0.2", "127.0.0.3", "127.0.0.5"
OFF_SITE, OFF_SITE2 = "127.0.0.50", "127.0.0.51"


def policy(server: LiveServer) -> LocationPolicy:
    return server.app[LOCATIONS]


class FakeClock:
    """An injectable clock: ``policy.clock = FakeClock(start)``; move it with ``advance``."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


async def setup_locations(
    server: LiveServer, school_id: int, home: str | None = None, lesson_hours: str = ""
) -> dict[str, int]:
    """Give the school locations A and B (networks above); return their ids. With
    ``home="A"``, every staff member and student of the school gets A as home location."""
    from klasblik.server.storage.models import Student

    async with server.sm() as session, session.begin():
        a = await session.scalar(select(Location).where(Location.school_id == school_id))
        assert a is not None
        a.name, a.networks, a.lesson_hours = "Hoofdgebouw", A_NET, lesson_hours
        b = Location(
            school_id=school_id, name="Dependance", code=a.code[:-2] + "01", networks=B_NET
        )
        session.add(b)
        await session.flush()
        ids = {"A": a.id, "B": b.id}
        if home is not None:
            for model in (Staff, Student):
                for row in await session.scalars(select(model).where(model.school_id == school_id)):
                    row.location_id = ids[home]
    await policy(server).reload()
    return ids


async def add_admin(server: LiveServer, school_id: int, username: str = "it@school.example") -> str:
    async with server.sm() as session, session.begin():
        session.add(Staff(school_id=school_id, username=username, name="IT", is_admin=True))
    return username


def client_at(server: LiveServer, username: str | None, address: str) -> _Client:
    """An HTTP client whose connections come from ``address``, signed in as ``username``."""
    return _Client(server, username, address)


class _Client:
    def __init__(self, server: LiveServer, username: str | None, address: str) -> None:
        self.server = server
        self.username = username
        self.address = address
        self.http: aiohttp.ClientSession | None = None
        self.csrf = ""

    async def __aenter__(self) -> _Client:
        jar = aiohttp.CookieJar(unsafe=True)
        if self.username is not None:
            async with self.server.sm() as session:
                staff = await session.scalar(select(Staff).where(Staff.username == self.username))
            assert staff is not None, f"no staff member {self.username}"
            token, row = await create_session(
                self.server.sm, staff.id, self.address, self.server.settings
            )
            self.csrf = row.csrf_token
            jar.update_cookies({COOKIE: token}, response_url=URL(self.server.base_url))
        self.http = aiohttp.ClientSession(
            cookie_jar=jar, connector=aiohttp.TCPConnector(local_addr=(self.address, 0))
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.close()

    def _headers(self, extra: dict[str, str] | None, change: bool) -> dict[str, str]:
        h = dict(extra or {})
        if change:
            h.setdefault("Origin", self.server.base_url)
            h.setdefault("X-CSRF-Token", self.csrf)
        return h

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self.http is not None
        change = method not in ("GET", "HEAD")
        async with self.http.request(
            method,
            self.server.base_url + path,
            json=body if body is not None else None,
            headers=self._headers(headers, change),
        ) as resp:
            text = await resp.text()
            if resp.content_type == "application/json":
                return resp.status, json.loads(text)
            return resp.status, text

    async def dashboard(self, headers: dict[str, str] | None = None) -> Dashboard:
        assert self.http is not None
        ws = await self.http.ws_connect(
            self.server.dashboard_url, origin=self.server.base_url, headers=headers or {}
        )
        return Dashboard(ws)


class Dashboard:
    """A dashboard socket whose events are collected by a reader task."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: dict[int, list[bytes]] = defaultdict(list)
        self.statuses: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.results: dict[int, dict[str, Any]] = {}
        self.closed: list[dict[str, Any]] = []
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                data = bytes(msg.data)
                assert data[:4] == b"KBV1"
                n = int.from_bytes(data[4:6], "big")
                self.frames[int(data[6 : 6 + n])].append(data[6 + n :])
            elif msg.type == aiohttp.WSMsgType.TEXT:
                m = json.loads(msg.data)
                if m["type"] == "result":
                    self.results[m["id"]] = m
                elif m["type"] == "status":
                    self.statuses[m["student_id"]].append(m["state"])
                elif m["type"] == "closed":
                    self.closed.append(m["error"])

    async def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        msg_id = self._next
        await self.ws.send_str(json.dumps({"type": kind, "id": msg_id, **fields}))
        await wait_for(lambda: msg_id in self.results, timeout(5), f"an answer to {kind}")
        return self.results.pop(msg_id)

    def last_state(self, student_id: int) -> dict[str, Any] | None:
        states = self.statuses.get(student_id)
        return states[-1] if states else None

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self._reader], timeout=timeout(2))


class SourcedAgent(TestAgent):
    """A test agent whose connection comes from ``address`` (optionally with headers)."""

    def __init__(
        self, server: LiveServer, account: str, address: str, headers: dict[str, str] | None = None
    ) -> None:
        self.server = server
        self.account = account
        self.address = address
        self.headers = headers or {}
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        self.ws = None
        self.watches = []
        self.errors = []
        self._reader = None
        self.welcome = None

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.server.agent_url, headers=self.headers)
        await self.ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "protocol": p.PROTOCOL_VERSION,
                    "token": token or self.server.token,
                    "account": self.account,
                    "device": {"id": "test-" + self.account, "kind": "desktop"},
                }
            )
        )
        first = json.loads(await self.ws.receive_str(timeout=timeout(5)))
        if first["type"] == "welcome":
            self.welcome = first
            self._reader = asyncio.create_task(self._read())
        return first


async def audit_entries(server: LiveServer, action: str) -> list[AuditEntry]:
    async with server.sm() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )
