"""Two real server processes on one PostgreSQL database and one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from PIL import Image
from sqlalchemy import text

from klasblik import protocol as p
from tests.support.cluster import RedisProcess, ServerProcess, SharedDatabase
from tests.support.live import TOKEN, TestAgent, frame
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")
TEACHER = "teacher@school.example"
REFRESH_S = 0.5  # presence expires after three periods: the kill test waits ~1.5 s


class Watcher:
    """A dashboard connection that keeps every frame and message it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[int, p.FrameHeader, bytes]] = []
        self.messages: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read())
        self._next_id = 0

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(p.decode_viewer_frame(msg.data))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    async def command(self, **body: Any) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        await self.ws.send_str(json.dumps({**body, "id": msg_id}))
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found.extend(
                m
                for m in self.messages
                if m.get("type") in ("result", "error") and m.get("id") == msg_id
            )
            return bool(found)

        await wait_for(answered, timeout(10), f"answer to {body}")
        assert found[0]["type"] == "result", found[0]
        return dict(found[0]["result"])

    def frames_of(self, sid: int) -> list[tuple[int, p.FrameHeader, bytes]]:
        return [f for f in self.frames if f[0] == sid]

    def last_status(self, sid: int) -> dict[str, Any] | None:
        states = [
            m["state"]
            for m in self.messages
            if m.get("type") == "status" and m.get("student_id") == sid
        ]
        return states[-1] if states else None

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([self._task], timeout=timeout(2))


async def pump(agent: TestAgent, color: tuple[int, int, int]) -> None:
    """Send a frame every 40 ms while the server asks for frames (like a real agent)."""
    seq = 0
    while True:
        if agent.mode != "off" and agent.ws is not None and not agent.ws.closed:
            seq += 1
            kind = p.FrameKind.FOCUS if agent.mode == "focus" else p.FrameKind.GRID
            with contextlib.suppress(ConnectionError, RuntimeError):
                await agent.send(frame(seq, color, kind))
        await asyncio.sleep(0.04)  # the pace of a real agent (25 frames a second)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path, pg_url, names=("a", "b"), extra_env: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    db = SharedDatabase(pg_url)
    servers: dict[str, ServerProcess] = {}
    try:
        env = {
            "KLASBLIK_DATABASE_URL": pg_url,
            "KLASBLIK_REDIS_URL": redis.url(3),
            "KLASBLIK_BLOB_STORE": "file:blobs",
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_CLUSTER_REFRESH_S": str(REFRESH_S),
            "KLASBLIK_GRID_INTERVAL_MS": "250",
            "KLASBLIK_FOCUS_INTERVAL_MS": "100",
            "KLASBLIK_STORE_INTERVAL_S": "0",
            "KLASBLIK_HEARTBEAT_S": "5",
            **(extra_env or {}),
        }
        await db.migrate()
        roster = await db.add_class("7B", [ANNA, BRAM])  # read by the servers at start
        for name in names:
            servers[name] = ServerProcess(name, env, tmp_path / name)
        await asyncio.gather(*(s.start() for s in servers.values()))
        yield {"redis": redis, "db": db, "roster": roster, **servers}
    finally:
        for server in servers.values():
            await server.stop()
        redis.stop()
        await db.close()


async def _agent_on(server: ServerProcess, account: str) -> TestAgent:
    agent = TestAgent(server, account)  # type: ignore[arg-type]
    answer = await agent.connect()
    assert answer["type"] == "welcome", answer
    return agent


async def _viewer_on(c: dict[str, Any], server: ServerProcess) -> Watcher:
    token = await c["db"].session_token(TEACHER)
    watcher = Watcher(await server.dashboard(server.client(token)))
    return watcher


async def _wait_health(
    server: ServerProcess, redis: str, status: str, within: float = timeout(15)
) -> None:
    seen: list[dict[str, Any]] = []

    async def check() -> bool:
        seen.append(await server.health())
        return seen[-1].get("redis", "").startswith(redis) and seen[-1]["status"] == status

    try:
        await wait_for(check, within, f"{server.name} health redis={redis} status={status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last /healthz: {seen[-1] if seen else None}") from None


async def test_two_processes_migrate_an_empty_database_once(tmp_path, pg_url):
    """Two `klasblik db upgrade` started together both succeed; the schema is at one head."""
    env = {"KLASBLIK_DATABASE_URL": pg_url, "KLASBLIK_ENROLLMENT_TOKEN": TOKEN}
    import os

    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "klasblik.server.cli",
            "db",
            "upgrade",
            env={**os.environ, **env},
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(pr.communicate() for pr in procs))
    for pr, (out, _) in zip(procs, outputs, strict=True):
        assert pr.returncode == 0, out.decode()
    db = SharedDatabase(pg_url)
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            tables = await conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_name = 'students'")
            )
        assert len(rows) == 1
        assert tables == 1
    finally:
        await db.close()


async def test_dashboard_on_one_instance_views_agent_on_the_other(tmp_path, pg_url):
    """Agent on A, dashboard on B: B shows it online, watch reaches A's agent, frames reach B."""
    async with cluster(tmp_path, pg_url) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        assert (await a.health())["redis"] == "ok"
        agent = await _agent_on(a, ANNA[0])
        sender = asyncio.create_task(pump(agent, (10, 200, 30)))
        viewer = await _viewer_on(c, b)
        try:
            result = await viewer.command(type="subscribe", class_id=c["roster"]["class_id"])
            states = {s["id"]: s["state"] for s in result["students"]}
            assert states[anna]["online"] is True
            await wait_for(
                lambda: agent.mode == "grid", timeout(10), "grid watch on the agent at A"
            )
            assert "M. de Vries" in agent.watches[-1]["viewers"]
            await wait_for(lambda: len(viewer.frames_of(anna)) >= 3, timeout(10), "frames at B")
            _sid, header, image = viewer.frames_of(anna)[-1]
            assert header.kind == p.FrameKind.GRID
            assert image == frame(1, (10, 200, 30))[p.FRAME_HEADER_SIZE :]

            await agent.send(
                json.dumps(
                    {
                        "type": "tabs",
                        "tabs": [
                            {"title": "Rekenen", "url": "https://rekenen.example/", "active": True}
                        ],
                    }
                )
            )
            await wait_for(
                lambda: any(m.get("type") == "tabs" for m in viewer.messages),
                timeout(10),
                "tabs at B",
            )

            await viewer.command(type="focus", student_id=anna)
            await wait_for(
                lambda: agent.mode == "focus", timeout(10), "focus watch on the agent at A"
            )
            await viewer.command(type="unsubscribe", class_id=c["roster"]["class_id"])
            await wait_for(lambda: agent.mode == "off", timeout(10), "agent at A quiet again")
        finally:
            sender.cancel()
            await viewer.close()
            await agent.close()


async def test_a_viewer_on_another_instance_gets_a_key_frame_then_deltas(tmp_path, pg_url):
    """Agent sending deltas on A, a dashboard joining on B: A asks the agent for a key
    frame at once (watch.key), and B gets the key frame and the deltas after it, in order."""
    async with cluster(tmp_path, pg_url) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        agent = TestAgent(a, ANNA[0], tiles=True)  # type: ignore[arg-type]
        assert (await agent.connect())["tiles"] is True
        viewer = await _viewer_on(c, b)
        try:
            await wait_for(lambda: agent.watches, timeout(10), "the first watch")
            key = agent.watches[-1]["key"]
            await viewer.command(type="subscribe", class_id=c["roster"]["class_id"])
            await wait_for(
                lambda: agent.mode == "grid" and agent.watches[-1]["key"] > key,
                timeout(10),
                "a key frame asked for at A",
            )
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (0, 90, 0)).save(png, "PNG")
            delta_body = p.encode_tiles([p.Tile(0, 0, 8, 8, p.TileEncoding.PNG, png.getvalue())])
            now = int(time.time() * 1000)
            await agent.send(frame(1, (10, 200, 30)))
            for seq in (2, 3):
                header = p.FrameHeader(p.FrameKind.GRID, p.Encoding.TILES, 64, 36, seq, now)
                await agent.send(p.encode_frame(header, delta_body))
            await wait_for(lambda: len(viewer.frames_of(anna)) >= 3, timeout(10), "frames at B")
            assert [h.seq for _sid, h, _ in viewer.frames_of(anna)] == [1, 2, 3]
        finally:
            await viewer.close()
            await agent.close()


async def test_instance_killed_mid_view_recovers(tmp_path, pg_url):
    """A dies while B's dashboard views its agent: B shows it offline, the agent moves to B,
    frames flow again without anyone doing anything on B."""
    async with cluster(tmp_path, pg_url) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        agent = await _agent_on(a, ANNA[0])
        sender = asyncio.create_task(pump(agent, (200, 10, 10)))
        viewer = await _viewer_on(c, b)
        try:
            await viewer.command(type="subscribe", class_id=c["roster"]["class_id"])
            await wait_for(
                lambda: len(viewer.frames_of(anna)) >= 2, timeout(10), "frames at B via A"
            )
            a.kill()
            await wait_for(
                lambda: (viewer.last_status(anna) or {}).get("online") is False,
                timeout(10),
                "B shows the student offline after A died",
            )
            sender.cancel()
            await agent.close()

            agent = await _agent_on(b, ANNA[0])  # what the real agent's reconnect does
            sender = asyncio.create_task(pump(agent, (20, 20, 220)))
            await wait_for(
                lambda: agent.mode == "grid", timeout(10), "B asks the moved agent for frames"
            )
            await wait_for(
                lambda: (viewer.last_status(anna) or {}).get("online") is True,
                timeout(10),
                "B shows the student online again",
            )
            blue = frame(1, (20, 20, 220))[p.FRAME_HEADER_SIZE :]
            await wait_for(
                lambda: any(f[2] == blue for f in viewer.frames_of(anna)),
                timeout(10),
                "frames of the moved agent at B",
            )
            assert (await b.health())["status"] == "ok"
        finally:
            sender.cancel()
            await viewer.close()
            await agent.close()


async def test_redis_restart_degrades_to_local_and_recovers(tmp_path, pg_url):
    """Redis stops: both instances report degraded and keep local viewing; Redis returns:
    cross-instance viewing comes back by itself."""
    async with cluster(tmp_path, pg_url) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        agent = await _agent_on(a, ANNA[0])
        sender = asyncio.create_task(pump(agent, (200, 200, 10)))
        remote = await _viewer_on(c, b)
        local = await _viewer_on(c, a)
        try:
            await remote.command(type="subscribe", class_id=c["roster"]["class_id"])
            await wait_for(lambda: len(remote.frames_of(anna)) >= 2, timeout(10), "frames at B")

            c["redis"].stop()
            await _wait_health(a, "down:", "degraded")
            await _wait_health(b, "down:", "degraded")
            await local.command(type="subscribe", class_id=c["roster"]["class_id"])
            before = len(local.frames_of(anna))
            await wait_for(
                lambda: len(local.frames_of(anna)) >= before + 3,
                timeout(10),
                "local viewing at A while Redis is down",
            )

            c["redis"].start()
            await _wait_health(a, "ok", "ok", timeout(20))
            await _wait_health(b, "ok", "ok", timeout(20))
            count = len(remote.frames_of(anna))
            await wait_for(
                lambda: len(remote.frames_of(anna)) >= count + 3,
                timeout(15),
                "frames at B again after Redis came back",
            )
        finally:
            sender.cancel()
            await remote.close()
            await local.close()
            await agent.close()


async def test_new_remote_viewer_gets_tabs_and_status_without_a_resend(tmp_path, pg_url):
    """Agent on A, watched at A, sent its tabs and a capture error once; a viewer opening the
    grid on B gets those tabs and the agent's real status without the agent resending."""
    async with cluster(tmp_path, pg_url) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        agent = await _agent_on(a, ANNA[0])
        sender = asyncio.create_task(pump(agent, (10, 120, 200)))
        local = await _viewer_on(c, a)
        remote = await _viewer_on(c, b)
        try:
            await local.command(type="subscribe", class_id=c["roster"]["class_id"])
            await wait_for(
                lambda: agent.mode == "grid", timeout(10), "grid watch on the agent at A"
            )
            await agent.send(
                json.dumps(
                    {
                        "type": "tabs",
                        "tabs": [{"title": "Taal", "url": "https://taal.example/", "active": True}],
                    }
                )
            )
            # A device that cannot capture sends no frames: the next frame would clear the
            # error (Hub.on_frame), so the pump stops first.
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await agent.send(json.dumps({"type": "capture_error", "reason": "no_display"}))
            await wait_for(
                lambda: any(m.get("type") == "tabs" for m in local.messages),
                timeout(10),
                "tabs at A's viewer",
            )
            await wait_for(
                lambda: (local.last_status(anna) or {}).get("capture_error") == "no_display",
                timeout(10),
                "capture error at A's viewer",
            )

            result = await remote.command(type="subscribe", class_id=c["roster"]["class_id"])
            entry = next(s for s in result["students"] if s["id"] == anna)

            def remote_tabs() -> list[dict[str, Any]]:
                found = [
                    m["tabs"]
                    for m in remote.messages
                    if m.get("type") == "tabs" and m.get("student_id") == anna
                ]
                return entry["tabs"] or (found[-1] if found else [])

            await wait_for(
                lambda: bool(remote_tabs()), timeout(3), "A's current tabs at B's new viewer"
            )
            assert remote_tabs()[0]["title"] == "Taal"

            def remote_status() -> dict[str, Any]:
                return remote.last_status(anna) or entry["state"]

            await wait_for(
                lambda: remote_status().get("capture_error") == "no_display",
                timeout(3),
                "A's current status (capture error) at B's new viewer",
            )
            assert remote_status()["online"] is True
            assert remote_status()["mode"] == "grid"
        finally:
            sender.cancel()
            await local.close()
            await remote.close()
            await agent.close()


async def test_do_not_view_set_on_one_instance_stops_the_agent_on_the_other_at_once(
    tmp_path, pg_url
):
    """Agent on A watched from B; IT sets do-not-view on B: A is asked (kb:recheck) to look
    the entry up now, and its agent is told to stop well before the periodic access check
    (an hour here) would have; cleared again, the agent is watched again."""
    async with cluster(tmp_path, pg_url, extra_env={"KLASBLIK_ACCESS_CHECK_S": "3600"}) as c:
        a, b = c["a"], c["b"]
        anna = c["roster"]["students"][ANNA[0]]
        async with c["db"].sm() as session, session.begin():
            await session.execute(
                text("UPDATE staff SET is_admin = true WHERE username = :u"), {"u": TEACHER}
            )
        agent = await _agent_on(a, ANNA[0])
        viewer = await _viewer_on(c, b)
        it = b.client(await c["db"].session_token(TEACHER))
        try:
            await viewer.command(type="subscribe", class_id=c["roster"]["class_id"])
            await wait_for(lambda: agent.mode == "grid", timeout(10), "grid watch at A")
            me = await (await it.get(b.base_url + "/api/me")).json()
            headers = {"X-CSRF-Token": me["csrf_token"], "Origin": b.base_url}

            async def no_view(on: bool) -> None:
                r = await it.post(
                    b.base_url + "/api/admin/students/no-view",
                    json={"username": ANNA[0], "on": on, "reason": "objection"},
                    headers=headers,
                )
                assert r.status == 200, await r.text()

            await no_view(True)
            await wait_for(lambda: agent.mode == "off", timeout(10), "A's agent told to stop")
            await wait_for(
                lambda: (viewer.last_status(anna) or {}).get("no_view"),
                timeout(10),
                "B's tile saying why",
            )
            await no_view(False)
            await wait_for(lambda: agent.mode == "grid", timeout(10), "A's agent watched again")
        finally:
            await viewer.close()
            await agent.close()


async def test_presence_outlives_its_time_to_live_while_the_agent_stays(tmp_path, pg_url):
    """An agent connected for two presence lifetimes (three refresh periods each) keeps
    its presence key, renewed in one script call for many agents, with a time to live no
    longer than three periods; when the agent leaves, the key goes."""
    import redis.asyncio as aioredis

    from klasblik.server.live.cluster.codec import presence_key

    async with cluster(tmp_path, pg_url) as c:
        anna = c["roster"]["students"][ANNA[0]]
        agent = await _agent_on(c["a"], ANNA[0])
        client = aioredis.from_url(c["redis"].url(3))
        try:
            key = presence_key(anna)
            await wait_for(lambda: client.exists(key), timeout(10), "presence written")
            first = await client.get(key)
            ttls = []
            start = time.monotonic()
            while time.monotonic() - start < 2 * 3 * REFRESH_S:  # two lifetimes
                ttls.append(await client.pttl(key))
                await asyncio.sleep(REFRESH_S / 2)
            assert all(0 < t <= 3 * REFRESH_S * 1000 for t in ttls), ttls
            assert await client.get(key) == first  # the same owner, renewed
            await agent.close()
            await wait_for(
                lambda: _gone(client, key), timeout(10), "presence removed with the agent"
            )
        finally:
            await agent.close()
            await client.aclose()


async def _gone(client: Any, key: bytes) -> bool:
    return not await client.exists(key)
