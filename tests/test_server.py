"""The server against real WebSocket clients on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import aiohttp
import pytest

from klasblik import protocol as p
from klasblik.server.storage.blobs.base import thumbnail_name, thumbnail_place_name
from tests.support.live import TestAgent, frame, next_viewer_frame, start_live_server
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")


async def _subscribe(ws, class_id, msg_id=1):
    await ws.send_str(json.dumps({"type": "subscribe", "id": msg_id, "class_id": class_id}))
    while True:
        m = await ws.receive(timeout=timeout(5))
        if m.type == aiohttp.WSMsgType.TEXT:
            d = json.loads(m.data)
            if d["type"] == "result" and d["id"] == msg_id:
                return d


@contextlib.asynccontextmanager
async def _watched(server, students=(ANNA,)):
    """A class with an agent for its first student, and a teacher's dashboard watching it."""
    ids = await server.add_class("7B", list(students))
    agent = TestAgent(server, students[0][0])
    client = await server.login("teacher@school.example")
    try:
        await agent.connect()
        ws = await server.dashboard(client)
        result = await _subscribe(ws, ids["class_id"])
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        yield ids, agent, ws, result
    finally:
        await agent.close()


async def test_agent_without_hello_is_closed_after_deadline(tmp_path):
    """An agent that never says hello gets auth_timeout and close code 4002."""
    server = await start_live_server(tmp_path, auth_timeout_s=0.3)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.agent_url)
            msg = await ws.receive(timeout=timeout(5))
            assert json.loads(msg.data)["error"]["code"] == "auth_timeout"
            closing = await ws.receive(timeout=timeout(5))
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == p.CloseCode.AUTH_TIMEOUT
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "account,token,code,close",
    [
        (ANNA[0], "wrong-token", "auth_failed", 4001),
        ("nobody@school.example", None, "unknown_account", 4001),
        ("teacher@school.example", None, "unknown_account", 4001),  # no roster oracle
    ],
)
async def test_agent_refusals(live_server, account, token, code, close):
    """Wrong token, unknown account and staff accounts are refused with their codes (a staff
    account looks like an unknown one: the reason is in the audit log only)."""
    await live_server.add_class("7B", [ANNA])
    agent = TestAgent(live_server, account)
    try:
        answer = await agent.connect(token=token)
        assert answer == {
            "type": "error",
            "error": {"code": code, "message": answer["error"]["message"]},
        }
        await agent.ws.receive(timeout=timeout(5))
        assert agent.ws.close_code == close
    finally:
        await agent.close()


async def test_first_message_must_be_hello(live_server):
    """A heartbeat before hello gets not_authenticated."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(live_server.agent_url)
        await ws.send_str('{"type":"heartbeat"}')
        msg = json.loads((await ws.receive(timeout=timeout(5))).data)
        assert msg["error"]["code"] == "not_authenticated"


async def test_no_viewer_means_no_frames_requested(live_server):
    """A connected agent nobody watches is told mode off, and its frames go nowhere."""
    await live_server.add_class("7B", [ANNA])
    agent = TestAgent(live_server, ANNA[0])
    try:
        welcome = await agent.connect()
        assert welcome["type"] == "welcome" and welcome["display_name"] == "Anna B."
        await wait_for(lambda: agent.watches, message="first watch")
        assert agent.mode == "off"
        await agent.send(frame())
        await asyncio.sleep(0.2)  # idle: nobody watches, so the frame may go nowhere
        assert live_server.hub.frames_relayed == 0
        assert await live_server.store.get(thumbnail_name(1)) is None  # never kept
    finally:
        await agent.close()


async def test_viewer_joining_starts_frames_and_leaving_stops_them(live_server):
    """Subscribe → agent asked for grid frames that reach the viewer; leave → mode off."""
    async with _watched(live_server, (ANNA, BRAM)) as (ids, agent, ws, result):
        assert result["success"] is True
        names = [s["display_name"] for s in result["result"]["students"]]
        assert names == ["Anna B.", "Bram d."]
        assert agent.watches[-1]["viewers"] == ["M. de Vries"]
        await agent.send(frame(seq=5))
        sid, header, _image = await next_viewer_frame(ws)
        assert (sid, header.seq) == (ids["students"][ANNA[0]], 5)
        await ws.close()
        await wait_for(lambda: agent.mode == "off", message="mode off after viewer left")


async def test_subscribe_answer_comes_before_any_frame_it_lets_through(live_server):
    """The grid is drawn from the subscribe answer: a frame queued ahead of it would be
    drawn over and lost. A frame sent while the server is still preparing the answer
    (its store look-ups held back here) never reaches the viewer before the answer."""
    ids = await live_server.add_class("7B", [ANNA])
    agent = TestAgent(live_server, ANNA[0])
    client = await live_server.login("teacher@school.example")
    entered, release = asyncio.Event(), asyncio.Event()
    real_existing = live_server.store.existing

    async def held_existing(names):
        entered.set()
        await release.wait()
        return await real_existing(names)

    live_server.store.existing = held_existing
    try:
        await agent.connect()
        ws = await live_server.dashboard(client)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        await asyncio.wait_for(entered.wait(), timeout(5))
        before = live_server.hub.frames_received
        await agent.send(frame(seq=1))
        await wait_for(lambda: live_server.hub.frames_received > before, message="frame seen")
        release.set()
        while True:
            m = await ws.receive(timeout=timeout(5))
            assert m.type == aiohttp.WSMsgType.TEXT, "a frame came before the subscribe answer"
            d = json.loads(m.data)
            if d["type"] == "result" and d["id"] == 1:
                break
        await wait_for(lambda: agent.mode == "grid", message="grid watch")
        await agent.send(frame(seq=2))
        sid, header, _image = await next_viewer_frame(ws)
        assert (sid, header.seq) == (ids["students"][ANNA[0]], 2)
    finally:
        del live_server.store.existing
        release.set()
        await agent.close()


async def test_opening_a_class_reads_its_thumbnails_in_one_call(live_server):
    """A class of 30 costs the store one existence call (not one listing per student),
    and the answer still says which students have a stored thumbnail: those with one, not
    those with only a tab list or nothing at all."""
    students = [(f"s{i}@school.example", f"S{i}", "Leerling") for i in range(30)]
    ids = await live_server.add_class("7B", students)
    sids = [ids["students"][s[0]] for s in students]
    with_thumb = set(sids[::3])
    for sid in with_thumb:
        await live_server.store.put(thumbnail_name(sid), b"\xff\xd8\xff")
    for sid in sids[1::3]:  # a tab list is not a thumbnail
        await live_server.store.put(f"students/{sid}/tabs", b"[]")
    store = live_server.store
    calls: list[str] = []
    real_existing, real_list = store.existing, store.list

    async def counted_existing(names):
        calls.append("existing")
        return await real_existing(names)

    def counted_list(prefix=""):
        calls.append("list")
        return real_list(prefix)

    store.existing, store.list = counted_existing, counted_list
    try:
        client = await live_server.login("teacher@school.example")
        ws = await live_server.dashboard(client)
        answer = await _subscribe(ws, ids["class_id"])
        await ws.close()
    finally:
        del store.existing, store.list
    assert calls == ["existing"]
    shown = {st["id"]: st["has_thumbnail"] for st in answer["result"]["students"]}
    assert len(shown) == 30
    assert {sid for sid, has in shown.items() if has} == with_thumb


async def test_frames_are_relayed_byte_for_byte(live_server):
    """What the viewer gets after the prefix is exactly what the agent sent."""
    async with _watched(live_server) as (ids, agent, ws, _result):
        sent = frame(seq=9, color=(10, 200, 10))
        await agent.send(sent)
        while True:
            m = await ws.receive(timeout=timeout(5))
            if m.type == aiohttp.WSMsgType.BINARY:
                break
        assert m.data == p.viewer_frame_prefix(ids["students"][ANNA[0]]) + sent


async def test_focus_raises_the_rate_and_unfocus_lowers_it(live_server):
    """Focus asks the agent for larger, faster frames and all tabs; unfocus drops back."""
    async with _watched(live_server) as (ids, agent, ws, _result):
        sid = ids["students"][ANNA[0]]
        await ws.send_str(json.dumps({"type": "focus", "id": 2, "student_id": sid}))
        await wait_for(lambda: agent.mode == "focus", message="focus watch")
        focus = agent.watches[-1]
        s = live_server.settings
        assert (focus["width"], focus["tabs"]) == (s.focus_width, "all")
        assert focus["interval_ms"] < s.grid_interval_ms
        await ws.send_str(json.dumps({"type": "unfocus", "id": 3, "student_id": sid}))
        await wait_for(lambda: agent.mode == "grid", message="back to grid")


async def test_stalled_viewer_does_not_delay_another(tmp_path):
    """A viewer that stops reading is cut off; another viewer keeps getting every frame."""
    server = await start_live_server(tmp_path, viewer_queue_frames=8)
    ids = await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0])
    fast_client = await server.login("teacher@school.example")
    try:
        await agent.connect()
        fast = await server.dashboard(fast_client)
        await _subscribe(fast, ids["class_id"])
        # The stalled viewer: a raw socket that completes the handshake, then never reads.
        slow_client = await server.login("teacher@school.example")
        slow_ws = await server.dashboard(slow_client)
        await _subscribe(slow_ws, ids["class_id"])
        slow_sock = slow_ws._response.connection.transport.get_extra_info("socket")  # type: ignore[union-attr]
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_ws._response.connection.transport.pause_reading()  # type: ignore[union-attr]
        await wait_for(lambda: agent.mode == "grid")
        big = frame(seq=1)
        big_image = big[: p.FRAME_HEADER_SIZE] + big[p.FRAME_HEADER_SIZE :] + b"\0" * 200_000
        received = 0
        for seq in range(1, 31):
            data = bytearray(big_image)
            data[12:16] = seq.to_bytes(4, "big")
            await agent.send(bytes(data))
            _sid, header, _ = await asyncio.wait_for(next_viewer_frame(fast), timeout=timeout(5))
            assert header.seq == seq
            received += 1
            await asyncio.sleep(0.13)  # at the agent's pace: faster frames are dropped
        assert received == 30
        await wait_for(lambda: len(server.hub.viewers) == 1, message="slow viewer dropped")
    finally:
        await agent.close()
        await server.stop()


async def test_latest_thumbnail_is_replaced_not_accumulated(live_server):
    """Each stored thumbnail overwrites the last: one blob per student, the newest."""
    async with _watched(live_server) as (ids, agent, ws, _result):
        sid = ids["students"][ANNA[0]]
        store = live_server.store
        for seq, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)], start=1):
            sent = frame(seq=seq, color=color)
            await agent.send(sent)
            await next_viewer_frame(ws)
            await live_server.latest.drain()
            blob = await store.get(thumbnail_name(sid))
            assert blob is not None and blob.data == sent[p.FRAME_HEADER_SIZE :]
        names = [b.name async for b in store.list(f"students/{sid}/")]
        assert sorted(names) == [thumbnail_name(sid), thumbnail_place_name(sid)]
        files = list((live_server.store.root / "students" / str(sid)).iterdir())  # type: ignore[attr-defined]
        kept = sorted(f.name for f in files if not f.name.startswith(".tmp-"))
        assert kept == ["thumbnail", "thumbnail.place"]
        # beside them only the empty spares they were exchanged with (storage/blobs/local.py)
        assert [f.stat().st_size for f in files if f.name.startswith(".tmp-")] == [0] * (
            len(files) - 2
        )


async def test_bad_agent_messages_get_codes_and_keep_the_socket(live_server):
    """Malformed JSON, unknown types, bad frames: coded errors, connection stays usable."""
    async with _watched(live_server) as (_ids, agent, ws, _result):
        await agent.send("{oops")
        await agent.send('{"type":"dance"}')
        await agent.send('{"type":"tabs"}')
        await agent.send(b"JUNK" + b"\0" * 40)
        await agent.send(frame()[:20])
        await agent.send(
            json.dumps(
                {
                    "type": "hello",
                    "protocol": 1,
                    "token": "x",
                    "account": "y",
                    "device": {"id": "d", "kind": "demo"},
                }
            )
        )
        await wait_for(lambda: len(agent.errors) == 6, message="six errors")
        assert [e["code"] for e in agent.errors] == [
            "invalid_json",
            "unknown_type",
            "invalid_format",
            "bad_magic",
            "bad_frame",
            "unexpected",
        ]
        await agent.send(frame(seq=77))
        _sid, header, _ = await next_viewer_frame(ws)
        assert header.seq == 77


async def test_oversized_frame_gets_frame_too_large(tmp_path):
    """A frame over max_frame_bytes is refused with frame_too_large, socket kept."""
    server = await start_live_server(tmp_path, max_frame_bytes=8192)
    await server.add_class("7B", [ANNA])
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        await agent.send(frame() + b"\0" * 9000)
        await wait_for(lambda: agent.errors, message="an error")
        assert agent.errors[0]["code"] == "frame_too_large"
        await agent.send('{"type":"heartbeat"}')
        assert not agent.ws.closed
    finally:
        await agent.close()
        await server.stop()


async def test_newer_agent_connection_replaces_older(live_server):
    """A second connection of the same student closes the first with 4009."""
    await live_server.add_class("7B", [ANNA])
    first, second = TestAgent(live_server, ANNA[0]), TestAgent(live_server, ANNA[0])
    try:
        await first.connect()
        await second.connect()
        await wait_for(lambda: first.ws.closed, message="first closed")
        assert first.ws.close_code == p.CloseCode.REPLACED
        assert live_server.hub.agents[1].ws is not None and not second.ws.closed
    finally:
        await first.close()
        await second.close()


async def test_teacher_cannot_subscribe_to_a_class_they_do_not_teach(live_server):
    """Another teacher's class: forbidden; a class that does not exist: not_found."""
    other = await live_server.add_class("8A", [BRAM], teacher="other@school.example")
    await live_server.add_class("7B", [ANNA])
    client = await live_server.login("teacher@school.example")
    ws = await live_server.dashboard(client)
    answer = await _subscribe(ws, other["class_id"])
    assert answer["success"] is False and answer["error"]["code"] == "forbidden"
    answer = await _subscribe(ws, 9999, msg_id=2)
    assert answer["error"]["code"] == "not_found"
    await ws.send_str(json.dumps({"type": "focus", "id": 3, "student_id": 2}))
    focus = json.loads((await ws.receive(timeout=timeout(5))).data)
    assert focus["error"]["code"] == "forbidden"


async def test_dashboard_needs_session_and_same_origin(live_server):
    """No session: 401. Foreign Origin with a session: 403. Pages redirect to sign-in."""
    await live_server.add_class("7B", [ANNA])
    async with aiohttp.ClientSession() as anon:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await anon.ws_connect(live_server.dashboard_url, origin=live_server.base_url)
        assert info.value.status == 401
        r = await anon.get(live_server.base_url + "/", allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (303, "/signin")
        r = await anon.get(live_server.base_url + "/api/me")
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "not_authenticated"
    client = await live_server.login("teacher@school.example")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(live_server.dashboard_url, origin="https://evil.example")
    assert info.value.status == 403


async def test_demo_sign_in_refused_outside_demo_mode(live_server):
    """Without demo mode there is no demo sign-in and no open dashboard."""
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            live_server.base_url + "/auth/demo",
            headers={"Origin": live_server.base_url},
            allow_redirects=False,
        )
        assert r.status == 403
        options = await (await http.get(live_server.base_url + "/api/auth/options")).json()
        assert options == {"demo": False, "microsoft": False}


async def test_pages_carry_a_content_security_policy(live_server):
    """Every answer, errors included, has the CSP and nosniff headers."""
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/api/me", "/signin"):
            r = await http.get(live_server.base_url + path, allow_redirects=False)
            assert "script-src 'self'" in r.headers["Content-Security-Policy"], path
            assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_healthz_reports_ok(live_server):
    """/healthz answers 200 with database and blob store ok."""
    async with aiohttp.ClientSession() as http:
        r = await http.get(live_server.base_url + "/healthz")
        body = await r.json()
    assert r.status == 200
    assert (body["status"], body["database"], body["blob_store"]) == ("ok", "ok", "ok")


async def test_demo_sign_in_only_from_loopback(tmp_path):
    """In demo mode the demo sign-in works from this machine and not from elsewhere."""
    server = await start_live_server(
        tmp_path, demo=True, demo_students=3, trusted_proxies=("127.0.0.1",)
    )
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            far = {"Origin": server.base_url, "X-Forwarded-For": "203.0.113.5"}
            r = await http.post(server.base_url + "/auth/demo", headers=far, allow_redirects=False)
            assert r.status == 403
            assert "this machine" in (await r.json())["error"]["message"]
            options = await (
                await http.get(server.base_url + "/api/auth/options", headers=far)
            ).json()
            assert options["demo"] is False
            r = await http.post(
                server.base_url + "/auth/demo",
                headers={"Origin": server.base_url},
                allow_redirects=False,
            )
            assert (r.status, r.headers["Location"]) == (303, "/")
            me = await (await http.get(server.base_url + "/api/me")).json()
            assert me["user"]["name"] == "Demo Teacher" and me["demo"] is True
            assert [c["student_count"] for c in me["classes"]] == [2, 1]
    finally:
        await server.stop()


async def test_state_changing_requests_need_csrf(live_server):
    """Sign-out without the CSRF header is refused; with it, the session ends."""
    await live_server.add_class("7B", [ANNA])
    client = await live_server.login("teacher@school.example")
    url = live_server.base_url
    me = await (await client.get(url + "/api/me")).json()
    r = await client.post(url + "/auth/signout", headers={"Origin": url})
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    r = await client.post(
        url + "/auth/signout", headers={"Origin": url, "X-CSRF-Token": me["csrf_token"]}
    )
    assert r.status == 200
    assert (await client.get(url + "/api/me")).status == 401
