"""/livez, /readyz and /metrics on a real server: what each answers, to whom, and that
the figures move with what really happens (scraped and parsed as Prometheus text)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from klasblik.server.keys import METRICS, RETENTION_JOBS
from tests.support.cluster import RedisProcess
from tests.support.live import TestAgent, frame, next_viewer_frame, start_live_server
from tests.support.process import free_port
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
METRICS_TOKEN = "scrape-token-0123456789"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text answer: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(server, token: str = METRICS_TOKEN) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout(10))) as http:
        async with http.get(
            server.base_url + "/metrics", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            return parse(await r.text())


async def get(server, path: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + path, **kw) as r:
            return r.status, await r.json()


async def test_metrics_are_closed_without_a_token_setting(tmp_path):
    """With no metrics_token, /metrics is 404 for everyone, tokens or not."""
    server = await start_live_server(tmp_path)
    try:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            status, body = await get(server, "/metrics", headers=headers)
            assert status == 404 and body["error"]["code"] == "not_found"
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
        {"X-Forwarded-For": "127.0.0.1"},
    ],
)
async def test_metrics_refuse_a_scraper_without_the_token(tmp_path, headers):
    """A wrong, missing, truncated or differently-schemed token gets 401 and no figures."""
    server = await start_live_server(tmp_path, metrics_token=METRICS_TOKEN)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.base_url + "/metrics", headers=headers) as r:
                text = await r.text()
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "klasblik_" not in text
    finally:
        await server.stop()


async def test_live_and_ready_when_everything_answers(tmp_path):
    """/livez and /readyz both answer 200; readiness names each dependency it checked."""
    server = await start_live_server(tmp_path)
    try:
        assert await get(server, "/livez") == (200, {"status": "ok"})
        status, body = await get(server, "/readyz")
        assert status == 200
        assert body == {"status": "ready", "database": "ok", "blob_store": "ok"}
    finally:
        await server.stop()


async def test_not_ready_while_blob_store_and_redis_are_down(tmp_path):
    """A blob store that cannot be used (its folder is a file) and a Redis that does not
    answer make /readyz 503 naming both; /livez stays 200 (restarting the process would
    not help); the answer carries error types only, no paths or addresses."""
    (tmp_path / "not-a-folder").write_text("x")
    dead = free_port()
    server = await start_live_server(
        tmp_path,
        blob_store=f"file:{tmp_path}/not-a-folder",
        redis_url=f"redis://127.0.0.1:{dead}/0",
    )
    try:
        assert (await get(server, "/livez"))[0] == 200
        status, body = await get(server, "/readyz")
        assert status == 503, body
        assert body["status"] == "not ready" and body["database"] == "ok"
        assert body["blob_store"].startswith("down:") and body["redis"].startswith("down:")
        assert str(dead) not in json.dumps(body) and "not-a-folder" not in json.dumps(body)
    finally:
        await server.stop()


async def test_metrics_follow_agents_viewers_frames_and_jobs(tmp_path):
    """Scraped figures move with real traffic: an agent and a viewer connect, frames go
    in and out, a sweep runs, the roster code reports a sync, Redis is up. (A private
    Redis: the machine's may carry other test runs' instances, whose presence messages
    would meddle with this one's students.)"""
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    server = await start_live_server(tmp_path, metrics_token=METRICS_TOKEN, redis_url=redis.url(0))
    agent = TestAgent(server, ANNA[0])
    try:
        before = await scrape(server)
        assert before[("klasblik_agents_connected", ())] == 0
        assert before[("klasblik_database_up", ())] == 1
        assert before[("klasblik_blob_store_up", ())] == 1
        assert ("klasblik_roster_sync_age_seconds", ()) not in before  # no sync yet
        await wait_for(lambda: server.hub.cluster is not None and server.hub.cluster.up)
        assert (await scrape(server))[("klasblik_redis_up", ())] == 1

        ids = await server.add_class("7B", [ANNA])
        client = await server.login("teacher@school.example")
        await agent.connect()
        ws = await server.dashboard(client)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        async with asyncio.timeout(timeout(15)):  # a frame that never comes fails here
            for seq in range(1, 4):
                await agent.send(frame(seq))
                await next_viewer_frame(ws)

        got = await scrape(server)
        assert got[("klasblik_agents_connected", ())] == 1
        assert got[("klasblik_viewers_connected", ())] == 1
        assert got[("klasblik_students_watched", ())] == 1
        assert got[("klasblik_frames_received_total", ())] == 3
        assert got[("klasblik_frames_sent_total", ())] == 3
        assert got[("klasblik_frames_dropped_total", (("reason", "viewer_queue_full"),))] == 0
        assert got[("klasblik_outbox_pending_messages", (("side", "viewer"),))] >= 0

        await server.app[RETENTION_JOBS].run_sweep()
        server.app[METRICS].roster_synced()
        got = await scrape(server)
        sweep = (("job", "blob-sweep"), ("outcome", "done"))
        assert got[("klasblik_job_runs_total", sweep)] >= 1
        assert got[("klasblik_job_last_duration_seconds", (("job", "blob-sweep"),))] >= 0
        assert ("klasblik_job_last_removed", (("job", "blob-sweep"), ("kind", "blobs"))) in got
        assert 0 <= got[("klasblik_roster_sync_age_seconds", ())] < timeout(30)
        await ws.close()
    finally:
        await agent.close()
        await server.stop()
        redis.stop()


async def test_a_slow_viewer_is_counted_when_cut_off(tmp_path):
    """A dashboard whose outbox is full loses frames (counted as dropped) and is cut off
    (counted once)."""
    server = await start_live_server(tmp_path, metrics_token=METRICS_TOKEN, viewer_queue_frames=4)
    agent = TestAgent(server, ANNA[0])
    try:
        ids = await server.add_class("7B", [ANNA])
        client = await server.login("teacher@school.example")
        await agent.connect()
        ws = await server.dashboard(client)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        (viewer,) = server.hub.viewers
        await viewer.outbox.close()  # its writer stops: the queue of 4 fills and overflows
        for seq in range(1, 7):
            await agent.send(frame(seq))
        await wait_for(lambda: server.hub.viewers_cut_off >= 1, message="viewer cut off")
        got = await scrape(server)
        assert got[("klasblik_slow_viewers_cut_off_total", ())] == 1
        assert got[("klasblik_frames_dropped_total", (("reason", "viewer_queue_full"),))] >= 1
    finally:
        await agent.close()
        await server.stop()
