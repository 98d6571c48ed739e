"""A real Klasblik server in the test's event loop, on 127.0.0.1 and a free port, with
helpers to fill its roster and to connect agents and dashboards over real WebSockets."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from klasblik import protocol as p
from klasblik.server.app import init_app
from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.keys import DB, HUB, LAST_SEEN, LATEST, LOCATIONS, STORE, STUDENTS
from klasblik.server.live.hub import Hub
from klasblik.server.live.lastseen import LastSeenWriter
from klasblik.server.roster.lookup import StudentLookup
from klasblik.server.settings import Settings, load_settings
from klasblik.server.storage.blobs.base import BlobStore, thumbnail_name, thumbnail_place_name
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.storage.models import Location, School, SchoolClass, Staff, Student
from tests.support.oidc import oid_for
from tests.support.timing import timeout

TOKEN = "test-enrollment-token"


class LoopbackUrls:
    """The addresses of a Klasblik server listening on 127.0.0.1 at ``self.port``."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    @property
    def dashboard_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/dashboard"


@dataclass
class LiveServer(LoopbackUrls):
    app: web.Application
    runner: web.AppRunner
    port: int
    settings: Settings
    token: str = TOKEN
    _sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def sm(self) -> async_sessionmaker[AsyncSession]:
        return self.app[DB]

    @property
    def store(self) -> BlobStore:
        return self.app[STORE]

    @property
    def latest(self) -> LatestWriter:
        return self.app[LATEST]

    @property
    def hub(self) -> Hub:
        return self.app[HUB]

    @property
    def last_seen(self) -> LastSeenWriter:
        return self.app[LAST_SEEN]

    @property
    def students(self) -> StudentLookup:
        return self.app[STUDENTS]

    async def store_thumbnail(self, student_id: int, data: bytes) -> None:
        """Store a thumbnail as the hub does for an agent on this machine: the picture and
        the location it was taken at (where 127.0.0.1 resolves; ``None`` is off-site)."""
        await self.store.put(thumbnail_name(student_id), data)
        policy = self.app.get(LOCATIONS)
        place = {"location_id": policy.resolve("127.0.0.1") if policy is not None else None}
        await self.store.put(thumbnail_place_name(student_id), json.dumps(place).encode())

    async def add_class(
        self,
        name: str,
        students: Sequence[tuple[str, str, str]],
        teacher: str = "teacher@school.example",
        teacher_name: str = "M. de Vries",
        brin: str = "12AB",
    ) -> dict[str, Any]:
        """Create (or reuse) school, teacher and students; return their ids."""
        from sqlalchemy import select

        async with self.sm() as session, session.begin():
            school = await session.scalar(select(School).where(School.brin == brin))
            if school is None:
                school = School(name=f"School {brin}", brin=brin)
                session.add(school)
                await session.flush()
                session.add(
                    Location(
                        school_id=school.id,
                        name="Main",
                        code=brin + "00",
                        networks="127.0.0.0/8 ::1/128",  # the test clients are on this machine
                    )
                )
            staff = await session.scalar(select(Staff).where(Staff.username == teacher))
            if staff is None:
                # the object id the test OIDC provider gives this username by default
                staff = Staff(
                    school_id=school.id,
                    username=teacher,
                    name=teacher_name,
                    m365_id=oid_for(teacher),
                )
                session.add(staff)
            ids: dict[str, Student] = {}
            for username, first, last in students:
                st = await session.scalar(select(Student).where(Student.username == username))
                if st is None:
                    st = Student(
                        school_id=school.id,
                        username=username,
                        display_name=f"{first} {last[:1]}.",
                        m365_id=oid_for(username),
                    )
                    session.add(st)
                ids[username] = st
            await session.flush()
            cls = SchoolClass(
                school_id=school.id, name=name, teachers=[staff], students=list(ids.values())
            )
            session.add(cls)
            await session.flush()
            result = {
                "class_id": cls.id,
                "teacher_id": staff.id,
                "school_id": school.id,
                "students": {u: s.id for u, s in ids.items()},
            }
        if LOCATIONS in self.app:  # the location rules read locations into memory
            await self.app[LOCATIONS].reload()
        return result

    async def login(self, username: str) -> aiohttp.ClientSession:
        """An HTTP client signed in as this staff member (a real server-side session)."""
        from sqlalchemy import select

        async with self.sm() as session:
            staff = await session.scalar(select(Staff).where(Staff.username == username))
        assert staff is not None, f"no staff member {username}"
        token, _ = await create_session(self.sm, staff.id, "127.0.0.1", self.settings)
        jar = aiohttp.CookieJar(unsafe=True)
        jar.update_cookies({COOKIE: token}, response_url=URL(self.base_url))
        client = aiohttp.ClientSession(cookie_jar=jar)
        self._sessions.append(client)
        return client

    async def dashboard(self, client: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        return await client.ws_connect(self.dashboard_url, origin=self.base_url)

    async def stop(self) -> None:
        for client in self._sessions:
            await client.close()
        await self.runner.cleanup()


async def start_live_server(tmp_path: Path, **overrides: Any) -> LiveServer:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/klasblik.db",
        "blob_store": f"file:{tmp_path}/blobs",
        "enrollment_token": TOKEN,
        # the protocol-speaking test agents prove nothing but the enrollment token: the
        # transition policy; tests of identity proofs set verified or device themselves
        "agent_identity": "token",
        "store_interval_s": 0,
        "grid_interval_ms": 250,
        "focus_interval_ms": 100,
        "port": 0,
    }
    values.update(overrides)
    settings = load_settings(env={}, overrides=values)
    app = init_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return LiveServer(app, runner, port, settings)


# ---- a protocol-speaking test agent -------------------------------------------------


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def frame(seq: int = 1, color: tuple[int, int, int] = (200, 30, 30), kind: int = 1) -> bytes:
    image = jpeg(color)
    header = p.FrameHeader(kind, p.Encoding.JPEG, 64, 36, seq, int(time.time() * 1000))
    return p.encode_frame(header, image)


class TestAgent:
    """A minimal agent over a real WebSocket, for server tests."""

    __test__ = False

    def __init__(
        self,
        server: LiveServer | None,
        account: str,
        *,
        tiles: bool = False,
        url: str | None = None,
        token: str | None = None,
        device_id: str | None = None,
        http: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """For ``server``, or for a server of another kind at ``url`` with ``token`` (a
        subprocess; one behind a proxy, reached through ``http`` with ``headers``)."""
        self.server = server
        self.account = account
        #: say in the hello that this agent can send delta frames
        self.tiles = tiles
        self.url = url or (server.agent_url if server is not None else "")
        self.token = token or (server.token if server is not None else "")
        self.device_id = device_id or "test-" + account
        self.headers = headers or {}
        self.http = http or aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.watches: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self.welcome: dict[str, Any] | None = None

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.url, headers=self.headers)
        await self.ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "protocol": 1,
                    "token": token or self.token,
                    "account": self.account,
                    "device": {"id": self.device_id, "kind": "desktop"},
                    **({"tiles": True} if self.tiles else {}),
                }
            )
        )
        first = json.loads(await self.ws.receive_str(timeout=timeout(10)))
        if first["type"] == "welcome":
            self.welcome = first
            self._reader = asyncio.create_task(self._read())
        return first

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                m = json.loads(msg.data)
                if m["type"] == "watch":
                    self.watches.append(m)
                elif m["type"] == "error":
                    self.errors.append(m["error"])

    @property
    def mode(self) -> str:
        return self.watches[-1]["mode"] if self.watches else "off"

    async def send(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=timeout(2))
        await self.http.close()


async def next_viewer_frame(
    ws: aiohttp.ClientWebSocketResponse, within: float | None = None
) -> tuple[int, p.FrameHeader, bytes]:
    """The next viewer frame a dashboard receives (text messages in between are skipped);
    fails when the socket ends or nothing comes ``within`` seconds (scaled)."""
    within = timeout(5) if within is None else within
    while True:
        m = await ws.receive(timeout=within)
        if m.type == aiohttp.WSMsgType.BINARY:
            return p.decode_viewer_frame(m.data)
        assert m.type == aiohttp.WSMsgType.TEXT, f"socket ended: {m} ({ws.close_code})"
