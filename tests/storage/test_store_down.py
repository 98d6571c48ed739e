"""A blob store that goes down does not stop live viewing: frames keep flowing, /healthz
says degraded, and it recovers when the store is back (Azure, via Azurite)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from klasblik import protocol as p
from klasblik.server.storage.blobs.base import thumbnail_name
from tests.support.azurite import Azurite
from tests.support.live import TestAgent, frame, next_viewer_frame, start_live_server
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")


async def _health(server) -> dict:
    async with aiohttp.ClientSession() as http:
        r = await http.get(server.base_url + "/healthz")
        return await r.json()


async def test_store_down_frames_flow_healthz_degraded_then_recovers(tmp_path):
    """Stop Azurite mid-session: every frame still reaches the viewer at once, /healthz turns
    degraded; start it again: the next write lands and /healthz is ok."""
    azurite = Azurite()
    azurite.start()
    server = await start_live_server(
        tmp_path, blob_store="azure:klasblik", azure_connection_string=azurite.connection_string
    )
    agent = TestAgent(server, ANNA[0])
    try:
        ids = await server.add_class("7B", [ANNA])
        sid = ids["students"][ANNA[0]]
        client = await server.login("teacher@school.example")
        await agent.connect()
        ws = await server.dashboard(client)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        await agent.send(frame(seq=1))
        assert (await next_viewer_frame(ws))[1].seq == 1
        await server.latest.drain()
        assert await server.store.get(thumbnail_name(sid)) is not None
        assert (await _health(server))["status"] == "ok"

        azurite.stop()
        for seq in range(2, 12):
            started = time.monotonic()
            await agent.send(frame(seq=seq))
            _sid, header, _ = await next_viewer_frame(ws, within=timeout(2))
            assert header.seq == seq
            assert time.monotonic() - started < timeout(1.0), "a frame waited for the blob store"
            await asyncio.sleep(0.1)  # frames at an agent's pace
        await server.latest.drain()
        health = await _health(server)
        assert health["status"] == "degraded"
        assert health["blob_store"].startswith("degraded:")
        assert server.latest.failures >= 1

        azurite.start()  # same port, empty: the store must make its container again
        await agent.send(frame(seq=20, color=(0, 0, 255)))
        assert (await next_viewer_frame(ws))[1].seq == 20
        await server.latest.drain()
        assert (await _health(server))["status"] == "ok"
        blob = await server.store.get(thumbnail_name(sid))
        assert (
            blob is not None
            and blob.data == frame(seq=20, color=(0, 0, 255))[p.FRAME_HEADER_SIZE :]
        )
    finally:
        await agent.close()
        await server.stop()
        azurite.stop()
