"""The compose topology, natively: Debian's Caddy with the shipped Caddyfile (internal CA)
in front of two real `klasblik serve` processes on one PostgreSQL and one Redis. Students
and the teacher connect from distinct loopback addresses; the servers must see those
addresses (not Caddy's), so the same-location rule still holds, and a client's own
forwarding headers must not move it to school."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from yarl import URL

from klasblik.server.auth.sessions import COOKIE
from klasblik.server.storage.blobs.base import thumbnail_name
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.models import Location, Staff, Student
from tests.support.caddy import CaddyProcess
from tests.support.cluster import RedisProcess, ServerProcess, SharedDatabase
from tests.support.live import TOKEN, TestAgent, frame, jpeg
from tests.support.sourced import Dashboard
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")
TEACHER = "teacher@school.example"
SCHOOL_NET = "127.0.0.16/28"
ANNA_AT, TEACHER_AT = "127.0.0.17", "127.0.0.18"  # at school
BRAM_AT = "127.0.0.99"  # at home
HOSTNAME = "klasblik.localhost"
METRICS_TOKEN = "proxy-test-metrics-token"


class ProxiedAgent(TestAgent):
    """A protocol agent connecting through Caddy from ``source``."""

    def __init__(self, caddy: CaddyProcess, account: str, source: str, headers=None) -> None:
        super().__init__(
            None,
            account,
            url=caddy.base_url.replace("https://", "wss://") + "/ws/agent",
            token=TOKEN,
            device_id="proxied-" + account,
            http=caddy.session(source),
            headers=headers,
        )


@pytest.fixture
async def topology(tmp_path, pg_url) -> AsyncIterator[dict[str, Any]]:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    db = SharedDatabase(pg_url)
    servers: list[ServerProcess] = []
    caddy: CaddyProcess | None = None
    try:
        await db.migrate()
        roster = await db.add_class("7B", [ANNA, BRAM])
        async with db.sm() as session, session.begin():
            loc = await session.scalar(select(Location))
            assert loc is not None
            loc.networks = SCHOOL_NET
            for model in (Staff, Student):
                await session.execute(update(model).values(location_id=loc.id))
        caddy = CaddyProcess(tmp_path / "caddy", HOSTNAME, [])
        env = {
            "KLASBLIK_DATABASE_URL": pg_url,
            "KLASBLIK_REDIS_URL": redis.url(4),
            "KLASBLIK_BLOB_STORE": "file:blobs",
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_PUBLIC_URL": caddy.base_url,
            # Caddy reaches the instances from 127.0.0.1: that hop alone is believed
            "KLASBLIK_TRUSTED_PROXIES": "127.0.0.1/32",
            "KLASBLIK_CLUSTER_REFRESH_S": "0.5",
            "KLASBLIK_GRID_INTERVAL_MS": "250",
            "KLASBLIK_STORE_INTERVAL_S": "0",
            "KLASBLIK_METRICS_TOKEN": METRICS_TOKEN,
        }
        servers = [ServerProcess(n, env, tmp_path / n) for n in ("one", "two")]
        await asyncio.gather(*(s.start() for s in servers))
        caddy.upstreams = [f"127.0.0.1:{s.port}" for s in servers]
        caddy.start()
        yield {"db": db, "roster": roster, "caddy": caddy, "servers": servers}
    finally:
        if caddy is not None:
            caddy.stop()
        for server in servers:
            await server.stop()
        redis.stop()
        await db.close()


async def _dashboard(caddy: CaddyProcess, db: SharedDatabase, source: str) -> tuple[Any, Dashboard]:
    token = await db.session_token(TEACHER)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({COOKIE: token}, response_url=URL(caddy.base_url))
    http = caddy.session(source, cookie_jar=jar)
    ws = await http.ws_connect(
        caddy.base_url.replace("https://", "wss://") + "/ws/dashboard", origin=caddy.base_url
    )
    return http, Dashboard(ws)


async def _last_ip(db: SharedDatabase, username: str) -> str | None:
    async with db.sm() as session:
        return await session.scalar(select(Student.last_ip).where(Student.username == username))


async def test_client_addresses_and_the_location_rule_survive_the_proxy(topology):
    """Through Caddy (TLS from its internal CA) and two instances: the student at school
    is seen at her own address and her frames reach the teacher at school; the student at
    home, though he sends X-Forwarded-For and Forwarded headers naming a school address,
    is seen at his own address and stays elsewhere. /metrics is not served through the
    proxy (one set-up for both: it takes seconds)."""
    await check_metrics_stay_inside(topology)
    caddy, db = topology["caddy"], topology["db"]
    students = topology["roster"]["students"]
    spoof = {"X-Forwarded-For": ANNA_AT, "Forwarded": f"for={ANNA_AT}", "X-Real-IP": ANNA_AT}
    anna = ProxiedAgent(caddy, ANNA[0], ANNA_AT)
    bram = ProxiedAgent(caddy, BRAM[0], BRAM_AT, headers=spoof)
    http = None
    try:
        assert (await anna.connect())["type"] == "welcome"
        assert (await bram.connect())["type"] == "welcome"
        http, dash = await _dashboard(caddy, db, TEACHER_AT)
        res = await dash.command("subscribe", class_id=topology["roster"]["class_id"])
        assert res["success"] is True, res

        def states() -> dict[int, dict[str, Any]]:
            got = {s["id"]: s["state"] for s in res["result"]["students"]}
            for sid in got:
                if dash.last_state(sid) is not None:
                    got[sid] = dash.last_state(sid)
            return got

        await wait_for(
            lambda: states()[students[ANNA[0]]]["online"] and states()[students[BRAM[0]]]["online"],
            timeout(10),
            "both agents online for the teacher (either instance)",
        )
        assert states()[students[ANNA[0]]]["elsewhere"] is False
        assert states()[students[BRAM[0]]]["elsewhere"] is True
        # a reply built now that both are known (on this instance or the other, as the
        # proxy spread them) says the same for this teacher, not only a later status; with
        # a stored picture of each, only hers is offered (his is of a device elsewhere)
        for server in topology["servers"]:
            store = LocalBlobStore(server.workdir / "blobs")
            for account in (ANNA[0], BRAM[0]):
                await store.put(thumbnail_name(students[account]), jpeg())
            await store.close()
        again = await dash.command("subscribe", class_id=topology["roster"]["class_id"])
        replied = {s["id"]: s for s in again["result"]["students"]}
        assert replied[students[ANNA[0]]]["state"]["elsewhere"] is False
        assert replied[students[ANNA[0]]]["has_thumbnail"] is True
        assert replied[students[BRAM[0]]]["state"]["elsewhere"] is True
        assert replied[students[BRAM[0]]]["state"]["mode"] == "off"
        assert replied[students[BRAM[0]]]["has_thumbnail"] is False

        await wait_for(lambda: anna.mode == "grid", timeout(10), "the student at school is asked")
        assert bram.mode == "off"
        await anna.ws.send_bytes(frame(1))
        await wait_for(lambda: dash.frames[students[ANNA[0]]], timeout(10), "her frame")
        assert dash.frames[students[BRAM[0]]] == []

        await wait_for(lambda: _both_seen(db), timeout(15), "the servers to record both addresses")
        assert await _last_ip(db, ANNA[0]) == ANNA_AT
        assert await _last_ip(db, BRAM[0]) == BRAM_AT
        await dash.close()
    finally:
        await anna.close()
        await bram.close()
        if http is not None:
            await http.close()
    # the access log (a line when each request ends) shows the teacher's own address
    await wait_for(
        lambda: any("/ws/dashboard 101" in s.log_text() for s in topology["servers"]),
        timeout(10),
        "the dashboard socket's access line",
    )
    lines = [
        line
        for s in topology["servers"]
        for line in s.log_text().splitlines()
        if "klasblik.access" in line and "/ws/" in line
    ]
    assert any(line.endswith(f"from {TEACHER_AT}") for line in lines), lines
    assert not [line for line in lines if line.endswith("from 127.0.0.1")], lines


async def _both_seen(db: SharedDatabase) -> bool:
    return await _last_ip(db, ANNA[0]) is not None and await _last_ip(db, BRAM[0]) is not None


async def check_metrics_stay_inside(topology):
    """/metrics through Caddy is 404 even with the right token; Prometheus reads each
    instance on the inside, with the token. /livez and /readyz pass through."""
    caddy = topology["caddy"]
    async with caddy.session("127.0.0.1") as http:
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with http.get(caddy.base_url + "/metrics", headers=auth) as r:
            assert r.status == 404
            assert "klasblik_" not in await r.text()
        async with http.get(caddy.base_url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["redis"] == "ok"
        async with http.get(caddy.base_url + "/livez") as r:
            assert r.status == 200
        for server in topology["servers"]:
            async with http.get(server.base_url + "/metrics", headers=auth) as r:
                assert r.status == 200
                assert "klasblik_redis_up 1.0" in await r.text()
