"""Delta frames through the real server: negotiated in hello/welcome, refused without a key
frame or when malformed (nothing of a refused delta reaches a viewer), relayed byte for
byte otherwise; a new viewer makes the server ask for a key frame; only whole grid
pictures are stored (docs/protocol.md, "Delta frames")."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time

import aiohttp
from PIL import Image

from klasblik import protocol as p
from klasblik.server.storage.blobs.base import thumbnail_name
from tests.support.live import TestAgent, frame, next_viewer_frame
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")


def _png(size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (0, 90, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _delta(seq: int, body: bytes | None = None, size: tuple[int, int] = (64, 36)) -> bytes:
    if body is None:
        body = p.encode_tiles([p.Tile(8, 8, 8, 8, p.TileEncoding.PNG, _png())])
    header = p.FrameHeader(p.FrameKind.GRID, p.Encoding.TILES, *size, seq, int(time.time() * 1000))
    return p.encode_frame(header, body)


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, class_id: int, msg_id: int = 1) -> None:
    await ws.send_str(json.dumps({"type": "subscribe", "id": msg_id, "class_id": class_id}))
    while True:
        m = await ws.receive(timeout=timeout(5))
        if m.type == aiohttp.WSMsgType.TEXT and json.loads(m.data).get("id") == msg_id:
            return


@contextlib.asynccontextmanager
async def _watched(server, *, tiles: bool = True):
    ids = await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0], tiles=tiles)
    client = await server.login("teacher@school.example")
    try:
        await agent.connect()
        ws = await server.dashboard(client)
        await _subscribe(ws, ids["class_id"])
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        yield ids, agent, ws, client
    finally:
        await agent.close()


async def _error(agent: TestAgent, code: str) -> None:
    await wait_for(lambda: any(e["code"] == code for e in agent.errors), message=code)


async def test_tiles_are_taken_only_from_agents_that_said_so(live_server):
    """Without tiles in its hello an agent's welcome has none and a delta is unexpected;
    with it the welcome says tiles and the watch carries a key counter."""
    async with _watched(live_server, tiles=False) as (_ids, agent, ws, _client):
        assert "tiles" not in agent.welcome and "key" not in agent.watches[-1]
        before = live_server.hub.frames_relayed
        await agent.send(frame(seq=1))
        await agent.send(_delta(2))
        await _error(agent, "unexpected")
        _sid, header, _ = await next_viewer_frame(ws)
        assert header.seq == 1 and live_server.hub.frames_relayed == before + 1
    await live_server.add_class("7C", [])
    agent = TestAgent(live_server, ANNA[0], tiles=True)
    try:
        assert (await agent.connect())["tiles"] is True
        await wait_for(lambda: agent.watches, message="first watch")
        assert "key" in agent.watches[-1]
    finally:
        await agent.close()


async def test_a_delta_without_its_key_frame_is_refused_and_a_key_asked_for(live_server):
    """A delta before any key frame, or of another size than the key frame, is dropped
    with no_key_frame; once a key frame came, such a delta raises the watch's key."""
    async with _watched(live_server) as (_ids, agent, ws, _client):
        await agent.send(_delta(1))
        await _error(agent, "no_key_frame")
        await agent.send(frame(seq=2))  # 64x36
        await wait_for(lambda: live_server.hub.frames_relayed, message="key frame relayed")
        key = agent.watches[-1]["key"]
        agent.errors.clear()
        await agent.send(_delta(3, size=(128, 72)))
        await _error(agent, "no_key_frame")
        await wait_for(lambda: agent.watches[-1]["key"] > key, message="a key frame asked for")
        await agent.send(_delta(4))
        seqs = [(await next_viewer_frame(ws))[1].seq for _ in range(2)]
        assert seqs == [2, 4]


async def test_key_and_deltas_are_relayed_byte_for_byte_and_only_the_key_is_stored(live_server):
    """The viewer gets the key frame and each delta exactly as sent; the stored thumbnail
    stays the whole picture of the key frame."""
    async with _watched(live_server) as (ids, agent, ws, _client):
        sid = ids["students"][ANNA[0]]
        key = frame(seq=1)
        delta = _delta(2)
        await agent.send(key)
        await agent.send(delta)
        for sent in (key, delta):
            while True:
                m = await ws.receive(timeout=timeout(5))
                if m.type == aiohttp.WSMsgType.BINARY:
                    break
            assert m.data == p.viewer_frame_prefix(sid) + sent
        await live_server.latest.drain()
        blob = await live_server.store.get(thumbnail_name(sid))
        assert blob is not None and blob.data == key[p.FRAME_HEADER_SIZE :]


def _bad(body: bytes) -> bytes:
    return _delta(9, body)


_RECORD = struct.Struct(">HHHHBBI")


async def test_malformed_deltas_get_their_codes_and_reach_no_viewer(live_server):
    """A hostile agent's broken deltas: each refused with its code, none relayed; the
    stream goes on with the next good one."""
    async with _watched(live_server) as (_ids, agent, ws, _client):
        await agent.send(frame(seq=1))
        _sid, header, _ = await next_viewer_frame(ws)
        assert header.seq == 1
        png = _png()
        attacks = {
            "bad_tiles": struct.pack(">H", 3) + _RECORD.pack(0, 0, 8, 8, 3, 0, len(png)) + png,
            "tile_out_of_bounds": struct.pack(">H", 1)
            + _RECORD.pack(60, 30, 8, 8, 3, 0, len(png))
            + png,
            "bad_image": struct.pack(">H", 1) + _RECORD.pack(0, 0, 4, 4, 3, 0, len(png)) + png,
        }
        relayed = live_server.hub.frames_relayed
        for code, body in attacks.items():
            await agent.send(_bad(body))
            await _error(agent, code)
        assert live_server.hub.frames_relayed == relayed
        await agent.send(_delta(5))
        _sid, header, _ = await next_viewer_frame(ws)
        assert header.seq == 5


async def test_a_new_viewer_gets_no_delta_before_a_key_frame(live_server):
    """A second dashboard joining makes the server ask for a key frame; until one comes it
    gets no delta (it has nothing to paint it on), while the first viewer gets them all."""
    async with _watched(live_server) as (ids, agent, ws, client):
        await agent.send(frame(seq=1))
        await next_viewer_frame(ws)
        key = agent.watches[-1]["key"]
        second = await live_server.dashboard(client)
        await _subscribe(second, ids["class_id"], msg_id=5)
        await wait_for(lambda: agent.watches[-1]["key"] > key, message="a key frame asked for")
        await agent.send(_delta(2))
        assert (await next_viewer_frame(ws))[1].seq == 2
        await agent.send(frame(seq=3))
        await agent.send(_delta(4))
        assert [(await next_viewer_frame(second))[1].seq for _ in range(2)] == [3, 4]
        assert [(await next_viewer_frame(ws))[1].seq for _ in range(2)] == [3, 4]


async def test_a_dropped_frame_stops_deltas_until_the_next_key_frame(live_server):
    """Frames beyond the agent's rate are dropped; the deltas after a drop are refused
    (they would paint on a picture nobody has) and a key frame is asked for."""
    async with _watched(live_server) as (_ids, agent, ws, _client):
        await agent.send(frame(seq=1))
        await next_viewer_frame(ws)
        key = agent.watches[-1]["key"]
        for seq in range(2, 40):
            await agent.send(_delta(seq))
        await _error(agent, "no_key_frame")
        await wait_for(lambda: agent.watches[-1]["key"] > key, message="a key frame asked for")
        seqs = []
        with contextlib.suppress(TimeoutError):
            while True:  # everything that reached the viewer, until nothing more comes
                m = await ws.receive(timeout=timeout(1))
                if m.type == aiohttp.WSMsgType.BINARY:
                    seqs.append(p.decode_viewer_frame(m.data)[1].seq)
        # an unbroken run after the key frame: nothing after the first gap reached it
        assert seqs and seqs == list(range(2, 2 + len(seqs))) and len(seqs) < 38
