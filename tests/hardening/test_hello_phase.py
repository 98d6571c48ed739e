"""Unauthenticated agent sockets cost (almost) nothing: the hello deadline is absolute, the
sockets waiting for their hello are limited per address and in total and refused fast past
the limit, and the hello itself is small; only a welcomed agent may send full-size frames."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from klasblik import protocol as p
from tests.hardening.rawws import RawSocket, ws_frame
from tests.support.live import TOKEN, TestAgent, jpeg, next_viewer_frame, start_live_server
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
OP_TEXT, OP_CONT, OP_PING = 0x1, 0x0, 0x9


def _hello(account: str = ANNA[0], pad: int = 0) -> bytes:
    msg = {
        "type": "hello",
        "protocol": 1,
        "token": TOKEN,
        "account": account,
        "device": {"id": "dev-1", "kind": "desktop"},
    }
    if pad:
        msg["pad"] = "x" * pad
    return json.dumps(msg).encode()


@pytest.fixture
async def quick(tmp_path):
    """A server whose hello deadline is 1 s, with 4 hello-phase sockets per address, 6 in all."""
    server = await start_live_server(
        tmp_path, auth_timeout_s=1.0, hello_max_per_address=4, hello_max_total=6
    )
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize("stalling", ["pings", "fragments", "pings and fragments"])
async def test_the_hello_deadline_is_absolute(quick, stalling):
    """Whatever arrives before the hello (pings every 0.2 s, fragments of a hello that is
    never finished, both), the socket is closed with 4002 once the 1 s deadline is up."""
    raw = await RawSocket.open(quick.port, "/ws/agent")
    assert raw.status == 101
    started = time.monotonic()
    whole = _hello()

    async def stall() -> None:
        if "fragments" in stalling:
            await raw.send(ws_frame(OP_TEXT, whole[:5], fin=False))
        for i in range(40):  # 8 s of keeping the socket busy, far past the deadline
            if "pings" in stalling:
                await raw.send(ws_frame(OP_PING, b"still here"))
            if "fragments" in stalling:
                await raw.send(ws_frame(OP_CONT, whole[5 + i : 6 + i], fin=False))
            await asyncio.sleep(0.2)

    staller = asyncio.create_task(stall())
    try:
        code, texts = await asyncio.wait_for(raw.read_until_closed(), timeout(5))
    finally:
        staller.cancel()
        raw.close()
    assert code == p.CloseCode.AUTH_TIMEOUT
    assert [json.loads(t)["error"]["code"] for t in texts] == ["auth_timeout"]
    assert time.monotonic() - started < timeout(3)  # the deadline, not 8 s of stalling
    await wait_for(lambda: quick.app[_gate_key()].waiting == 0, message="the count released")


def _gate_key():
    from klasblik.server.keys import HELLO_GATE

    return HELLO_GATE


async def test_hello_phase_sockets_are_limited_per_address_and_in_total(quick):
    """Four silent sockets from one address fill its share: the fifth is refused with 503
    busy before any upgrade; another address gets two more, then the total (6) is full for
    everyone. Once a silent socket goes, its place is free again, and an agent that says
    hello in time is welcomed."""
    await quick.add_class("7B", [ANNA])
    opened = [await RawSocket.open(quick.port, "/ws/agent") for _ in range(4)]
    assert [r.status for r in opened] == [101] * 4
    refused = await RawSocket.open(quick.port, "/ws/agent")
    assert refused.status == 503 and b"Retry-After: 5" in refused.head
    body = await refused.reader.read(4096)
    assert json.loads(body)["error"]["code"] == "busy"
    refused.close()
    others = [
        await RawSocket.open(quick.port, "/ws/agent", local_addr="127.0.0.2") for _ in range(2)
    ]
    assert [r.status for r in others] == [101, 101]
    for addr in ("127.0.0.2", "127.0.0.3"):
        full = await RawSocket.open(quick.port, "/ws/agent", local_addr=addr)
        assert full.status == 503, addr
        full.close()
    opened.pop().close()
    gate = quick.app[_gate_key()]
    await wait_for(lambda: gate.waiting == 5, message="the closed socket's place freed")
    agent = TestAgent(quick, ANNA[0])
    try:
        assert (await agent.connect())["type"] == "welcome"
        assert gate.waiting == 5  # a welcomed agent no longer counts
    finally:
        await agent.close()
        for r in opened + others:
            r.close()
    assert gate.refused == 3


@pytest.mark.parametrize("size", [p.MAX_HELLO_BYTES + 1, 4 * p.MAX_HELLO_BYTES, 900_000])
async def test_a_large_first_message_is_refused_with_1009(quick, size):
    """A hello (or anything first) over MAX_HELLO_BYTES never gets a welcome: close 1009;
    the server held at most MAX_HELLO_BYTES of it."""
    await quick.add_class("7B", [ANNA])
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(quick.agent_url, max_msg_size=0)
        await ws.send_bytes(_hello(pad=size)) if size > 100_000 else await ws.send_str(
            _hello(pad=size).decode()
        )
        msg = await ws.receive(timeout=timeout(5))
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == p.CloseCode.TOO_BIG
    assert quick.hub.agents == {}


async def test_a_welcomed_agent_sends_full_size_frames(tmp_path):
    """After the welcome the limit is the server's frame limit: a frame of about 900 kB (a
    real JPEG with padding) reaches the viewer; a hello of 15 kB is still accepted."""
    server = await start_live_server(tmp_path, max_frame_bytes=1024 * 1024)
    try:
        ids = await server.add_class("7B", [ANNA])
        client = await server.login("teacher@school.example")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.agent_url)
            await ws.send_str(_hello(pad=15_000).decode())
            welcome = json.loads(await ws.receive_str(timeout=timeout(5)))
            assert welcome["type"] == "welcome"
            dash = await server.dashboard(client)
            await dash.send_str(
                json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
            )
            while True:  # the agent's grid watch
                m = json.loads(await ws.receive_str(timeout=timeout(5)))
                if m["type"] == "watch" and m["mode"] == "grid":
                    break
            image = jpeg() + b"\0" * 900_000
            header = p.FrameHeader(p.FrameKind.GRID, p.Encoding.JPEG, 64, 36, 7, 0)
            await ws.send_bytes(p.encode_frame(header, image))
            _sid, got, data = await next_viewer_frame(dash)
            assert got.seq == 7 and len(data) == len(image)
            await dash.close()
            await ws.close()
    finally:
        await server.stop()
