"""Viewers and storms: a dashboard that never reads is cut off within a bounded time, its
TCP connection aborted and the server's memory for it bounded (RSS of a `klasblik serve`
process); a reconnect storm never cuts off the teacher watching; /healthz tells outsiders
nothing about live monitoring."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from pathlib import Path

import aiohttp
from sqlalchemy import update

from klasblik import protocol as p
from klasblik.server.auth.sessions import COOKIE, create_session
from klasblik.server.storage.models import Staff
from tests.hardening.rawws import RawSocket, ws_frame
from tests.support.live import TestAgent, jpeg, start_live_server
from tests.support.process import ServerProcess
from tests.support.sourced import Dashboard
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
TCP_CLOSE = 7  # linux/tcp_states.h: what a socket is in after a reset


def tcp_state(raw: RawSocket) -> int:
    sock = raw.writer.get_extra_info("socket")
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def _raw_dashboard(port: int, token: str, base: str) -> RawSocket:
    """A dashboard socket that will never read past what the test reads itself (a 4 kB
    receive buffer, set before it connects)."""
    raw = await RawSocket.open(
        port, "/ws/dashboard", {"Cookie": f"{COOKIE}={token}", "Origin": base}, rcvbuf=4096
    )
    assert raw.status == 101, raw.head
    return raw


async def _command(raw: RawSocket, msg: dict) -> dict:
    await raw.send(ws_frame(0x1, json.dumps(msg).encode()))
    while True:
        op, payload = await asyncio.wait_for(raw.read_frame(), timeout(10))
        if op == 0x1 and json.loads(payload).get("id") == msg["id"]:
            return json.loads(payload)


async def test_a_never_reading_dashboard_is_aborted_in_process(tmp_path):
    """A dashboard that stops reading while frames flow is cut off (viewer_stall_s 1 s) and
    its connection is reset, not left waiting on a send buffer that never drains; another
    teacher's dashboard keeps every frame."""
    server = await start_live_server(
        tmp_path, viewer_stall_s=1.0, viewer_queue_bytes=2 * 1024 * 1024
    )
    ids = await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        token, _ = await create_session(server.sm, ids["teacher_id"], "127.0.0.1", server.settings)
        raw = await _raw_dashboard(server.port, token, server.base_url)
        assert (await _command(raw, {"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))[
            "success"
        ]
        other = Dashboard(await server.dashboard(await server.login("teacher@school.example")))
        assert (await other.command("subscribe", class_id=ids["class_id"]))["success"]
        await wait_for(lambda: agent.mode == "grid")
        viewer = min(server.hub.viewers, key=lambda v: v.id)  # the raw one came first
        transport = viewer.transport
        assert transport is not None
        big = jpeg() + b"\0" * 300_000
        started = time.monotonic()
        seq = 0
        while not transport.is_closing():
            seq += 1
            await agent.send(p.encode_frame(p.FrameHeader(1, 1, 64, 36, seq, 0), big))
            await asyncio.sleep(0.13)  # the agent's allowed pace
            assert time.monotonic() - started < timeout(15), "never cut off"
        await wait_for(lambda: tcp_state(raw) == TCP_CLOSE, message="the client socket reset (RST)")
        assert viewer not in server.hub.viewers
        sid = ids["students"][ANNA[0]]
        await wait_for(lambda: len(other.frames[sid]) == seq, message="the other teacher's frames")
        raw.close()
        await other.close()
    finally:
        await agent.close()
        await server.stop()


def _demo_session(base: str) -> str:
    request = urllib.request.Request(
        base + "/auth/demo", method="POST", data=b"", headers={"Origin": base}
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(request, timeout=timeout(5))
    except urllib.error.HTTPError as exc:
        cookie = exc.headers.get("Set-Cookie", "")
        return cookie.split(f"{COOKIE}=", 1)[1].split(";", 1)[0]
    raise AssertionError("the demo sign-in gave no session")


async def test_a_never_reading_dashboard_of_klasblik_serve_costs_bounded_memory(tmp_path):
    """Against `klasblik serve --demo`: a dashboard that focuses on three students (1280x720
    frames ten times a second each) and then never reads is reset within the stall time,
    and the server's RSS meanwhile grows by less than 64 MB (its queue is 1 MB)."""
    server = ServerProcess(
        tmp_path,
        "--demo",
        env={
            "KLASBLIK_DEMO_STUDENTS": "4",
            "KLASBLIK_FOCUS_INTERVAL_MS": "100",
            "KLASBLIK_VIEWER_QUEUE_BYTES": str(1024 * 1024),
            "KLASBLIK_VIEWER_STALL_S": "2",
        },
    )
    try:
        server.wait_healthy()
        token = _demo_session(server.base_url)
        async with aiohttp.ClientSession(cookies={COOKIE: token}) as http:
            async with http.get(server.base_url + "/api/me") as r:
                class_id = (await r.json())["classes"][0]["id"]
        raw = await _raw_dashboard(server.port, token, server.base_url)
        result = await _command(raw, {"type": "subscribe", "id": 1, "class_id": class_id})
        online = [s["id"] for s in result["result"]["students"] if s["state"]["online"]]
        before = rss_kib(server.proc.pid)
        for n, sid in enumerate(online[:3], start=2):
            await raw.send(
                ws_frame(0x1, json.dumps({"type": "focus", "id": n, "student_id": sid}).encode())
            )
        peak = before

        def reset() -> bool:
            nonlocal peak
            peak = max(peak, rss_kib(server.proc.pid))
            return tcp_state(raw) == TCP_CLOSE

        await wait_for(reset, timeout(30), lambda: f"the reset; log:\n{server.log()[-3000:]}")
        assert peak - before < 64 * 1024, (before, peak)
        assert "fell behind; disconnecting" in server.log()
        raw.close()
    finally:
        assert server.stop() == 0


async def test_a_reconnect_storm_never_cuts_off_the_watching_teacher(tmp_path):
    """A class of 120 comes online at once, drops off at once and comes back, while its
    teacher watches with a queue of only 16 messages: the teacher is never cut off, and
    ends with every student online."""
    server = await start_live_server(tmp_path, viewer_queue_frames=16)
    students = [(f"s{i}@school.example", f"S{i}", "X") for i in range(120)]
    ids = await server.add_class("7B", students)
    dash = Dashboard(await server.dashboard(await server.login("teacher@school.example")))
    agents = [TestAgent(server, u) for u, _, _ in students]
    try:
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"]
        for _round in range(2):
            answers = await asyncio.gather(*(a.connect() for a in agents))
            assert all(a["type"] == "welcome" for a in answers)
            if _round == 0:
                await asyncio.gather(*(a.ws.close() for a in agents if a.ws is not None))  # type: ignore[func-returns-value]
                await wait_for(lambda: not server.hub.agents, message="all offline")
        await wait_for(
            lambda: all(
                (dash.last_state(sid) or {}).get("online") for sid in ids["students"].values()
            ),
            message="every student online on the teacher's grid",
        )
        assert dash.closed == [] and not dash.ws.closed
        assert len(server.hub.viewers) == 1
        await dash.close()
    finally:
        await asyncio.gather(*(a.close() for a in agents))
        await server.stop()


async def test_healthz_tells_outsiders_nothing_about_live_monitoring(tmp_path):
    """With an agent connected and a teacher watching, /healthz has no counts for a client
    without a session, with a forged or a teacher's session; a signed-in IT admin sees them."""
    server = await start_live_server(tmp_path)
    ids = await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        teacher = await server.login("teacher@school.example")
        ws = await server.dashboard(teacher)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        async with (
            aiohttp.ClientSession(cookies={COOKIE: "forged"}) as forged,
            aiohttp.ClientSession() as anon,
        ):
            for client in (anon, forged, teacher):
                async with client.get(server.base_url + "/healthz") as r:
                    body = await r.json()
                assert r.status == 200 and body["status"] == "ok"
                assert not {"agents", "viewers"} & set(body), body
                assert "agent" not in json.dumps(body)
        async with server.sm() as session, session.begin():
            await session.execute(
                update(Staff).where(Staff.id == ids["teacher_id"]).values(is_admin=True)
            )
        async with teacher.get(server.base_url + "/healthz") as r:
            body = await r.json()
        assert (body["agents"], body["viewers"]) == (1, 1)
        await ws.close()
    finally:
        await agent.close()
        await server.stop()
