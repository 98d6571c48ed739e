"""A welcomed agent's frames and text messages are handled as the server parses them
(``server/live/inbox.py``), with no task wake-up per message. These tests hold what that
must not change. Frames, pings and a close that arrive in one write are handled in their
order: every ping is answered, and nothing after the close is relayed. A fault while one
frame is handled gets ``internal_error``, and the connection goes on."""

from __future__ import annotations

import json
import struct

from klasblik import protocol as p
from klasblik.server.keys import AGENT_SOCKETS
from klasblik.server.live.inbox import Inbox
from tests.hardening.rawws import RawSocket, ws_frame
from tests.support.live import TOKEN, TestAgent, frame, start_live_server
from tests.support.sourced import Dashboard
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


async def _raw_agent(port: int) -> RawSocket:
    """Anna's agent over a hand-written socket, welcomed."""
    raw = await RawSocket.open(port, "/ws/agent")
    hello = {
        "type": "hello",
        "protocol": 1,
        "token": TOKEN,
        "account": ANNA[0],
        "device": {"id": "dev-1", "kind": "desktop"},
    }
    await raw.send(ws_frame(OP_TEXT, json.dumps(hello).encode()))
    op, payload = await raw.read_frame()
    assert op == OP_TEXT and json.loads(payload)["type"] == "welcome", payload
    return raw


async def test_frames_pings_and_a_close_in_one_write_keep_their_order(tmp_path):
    """One write holds frame 1, a ping, frame 2, a ping, frame 3, a close and frame 4.
    The teacher gets frames 1, 2 and 3 in that order. Both pings are answered before the
    close reply. Frame 4, sent after the close, is never handled."""
    server = await start_live_server(tmp_path)
    try:
        ids = await server.add_class("7B", [ANNA])
        sid = ids["students"][ANNA[0]]
        raw = await _raw_agent(server.port)
        dash = Dashboard(await server.dashboard(await server.login("teacher@school.example")))
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"]
        while True:  # the grid watch
            op, payload = await raw.read_frame()
            if op == OP_TEXT and json.loads(payload).get("mode") == "grid":
                break
        (sock,) = server.app[AGENT_SOCKETS]
        assert isinstance(sock._reader, Inbox) and sock._reader.handler is not None
        received = server.hub.frames_received
        await raw.send(
            ws_frame(OP_BINARY, frame(seq=1))
            + ws_frame(OP_PING, b"one")
            + ws_frame(OP_BINARY, frame(seq=2, color=(0, 200, 0)))
            + ws_frame(OP_PING, b"two")
            + ws_frame(OP_BINARY, frame(seq=3, color=(0, 0, 200)))
            + ws_frame(OP_CLOSE, struct.pack(">H", 1000))
            + ws_frame(OP_BINARY, frame(seq=4))
        )
        pongs = []
        while True:
            op, payload = await raw.read_frame()
            if op == OP_PONG:
                pongs.append(payload)
            elif op == OP_CLOSE:
                break
        assert pongs == [b"one", b"two"]
        await wait_for(lambda: sid not in server.hub.agents, message="the agent detached")
        assert server.hub.frames_received - received == 3
        await wait_for(lambda: len(dash.frames[sid]) == 3, timeout(5), "three frames")
        seqs = [p.decode_frame(f, check_image=False).seq for f in dash.frames[sid]]
        assert seqs == [1, 2, 3]
        raw.close()
        await dash.close()
    finally:
        await server.stop()


async def test_a_fault_while_one_frame_is_handled_is_told_and_the_next_frame_goes_on(
    tmp_path, monkeypatch
):
    """Relaying Anna's first frame fails inside the server (a bug, say). Her agent is told
    ``internal_error``, her connection stays open, and her next frame reaches the teacher."""
    server = await start_live_server(tmp_path)
    agent = TestAgent(server, ANNA[0])
    try:
        ids = await server.add_class("7B", [ANNA])
        sid = ids["students"][ANNA[0]]
        await agent.connect()
        dash = Dashboard(await server.dashboard(await server.login("teacher@school.example")))
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"]
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        relay = server.hub.on_frame
        failed = []

        def once(conn, data, header):  # type: ignore[no-untyped-def]
            if not failed:
                failed.append(header.seq)
                raise RuntimeError("a bug")
            return relay(conn, data, header)

        monkeypatch.setattr(server.hub, "on_frame", once)
        await agent.send(frame(seq=1))
        await wait_for(lambda: any(e["code"] == "internal_error" for e in agent.errors))
        await agent.send(frame(seq=2))
        await wait_for(lambda: len(dash.frames[sid]) == 1, timeout(5), "the next frame")
        assert failed == [1]
        assert p.decode_frame(dash.frames[sid][0], check_image=False).seq == 2
        assert sid in server.hub.agents
        await dash.close()
    finally:
        await agent.close()
        await server.stop()
