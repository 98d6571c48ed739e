"""The relay's lean parts: an idle agent's outbox holds no task, a viewer's frame is
written at once when nothing is queued (and in order when a write has to wait), a stalled
viewer is still cut off (by one watchdog, not a timeout per message), and the collector
policy freezes after connection bursts and collects the frozen set only while nobody
watches."""

from __future__ import annotations

import asyncio

from klasblik.server.live import collector
from klasblik.server.live.collector import CollectorPolicy
from klasblik.server.live.outbox import Outbox
from tests.support.timing import timeout, wait_for


class _Peer:
    """Stands in for a WebSocketResponse: records what is sent; ``hold`` stalls sends."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[str | bytes] = []
        self.hold: asyncio.Event | None = None

    async def send_str(self, text: str) -> None:
        if self.hold is not None:
            await self.hold.wait()
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.send_str(data)  # type: ignore[arg-type]


class _Transport:
    """Stands in for the peer's transport: how much it holds unsent, its high-water mark."""

    def __init__(self, buffered: int = 0, high: int = 65536) -> None:
        self.buffered = buffered
        self.high = high
        self.closing = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self.high // 4, self.high)

    def is_closing(self) -> bool:
        return self.closing


async def test_a_frame_is_written_at_once_when_nothing_waits():
    """With nothing queued and room in the peer's transport, put() writes the message
    before it returns (no writer wake-up); when it would take the transport's unsent bytes
    over its high-water mark, or the transport is closing, it goes through the queue, and
    the order of messages holds either way."""
    peer, transport = _Peer(), _Transport()
    box = Outbox(peer, maxsize=8, transport=transport)  # type: ignore[arg-type]
    box.start()
    assert box.put(b"one") and peer.sent == [b"one"]  # written before put returned
    transport.buffered = 65535
    assert box.put(b"two") and peer.sent == [b"one"]  # queued: that would reach the mark
    transport.buffered = 0
    assert box.put(b"three") and peer.sent == [b"one"]  # behind "two": queued too
    await wait_for(lambda: len(peer.sent) == 3, message="queue drained")
    assert box.put(b"x" * 70000) and peer.sent[-1] == b"three"  # over the high-water mark
    await wait_for(lambda: len(peer.sent) == 4, message="large one sent")
    transport.closing = True
    box.put(b"four")
    assert peer.sent[-1] == b"x" * 70000
    transport.closing = False
    await wait_for(lambda: peer.sent[-1] == b"four", message="queued one sent")
    assert peer.sent == [b"one", b"two", b"three", b"x" * 70000, b"four"]
    assert box.sent == 5
    await box.close()


async def test_a_write_started_at_once_that_waits_keeps_the_order():
    """A send that waits after all (its peer's buffer filled): the rest of it runs as a
    task, the messages put meanwhile are queued behind it, and a stall of it is still
    noticed by the watchdog."""
    peer, transport = _Peer(), _Transport()
    cut: list[int] = []
    box = Outbox(
        peer, maxsize=8, stall_s=0.3, on_overflow=lambda: cut.append(1), transport=transport
    )  # type: ignore[arg-type]
    box.start()
    peer.hold = asyncio.Event()
    box.put(b"waits")
    assert box._inflight is not None and peer.sent == []
    box.put(b"after")
    peer.hold.set()
    await wait_for(lambda: peer.sent == [b"waits", b"after"], message="both in order")
    assert box._inflight is None and cut == []
    peer.hold = asyncio.Event()
    box.put(b"stuck")
    await wait_for(lambda: cut == [1], timeout(5), message="stall of the started write")
    await asyncio.wait_for(box.close(), timeout(5))
    assert box._inflight is None


async def test_a_lazy_outbox_has_a_writer_only_while_it_has_something_to_send():
    """No task before anything is queued or after the queue ran dry; what is queued is
    sent in order, latest-state slots after the queue."""
    peer = _Peer()
    box = Outbox(peer, maxsize=8, lazy=True)  # type: ignore[arg-type]
    box.put("before start")
    assert box._task is None
    box.start()
    box.put(b"frame")
    box.put_latest("status", "old")
    box.put_latest("status", "new")
    await wait_for(lambda: box._task is None and len(peer.sent) == 3, message="drained")
    assert peer.sent == ["before start", b"frame", "new"]
    box.put("later")
    assert box._task is not None
    await wait_for(lambda: peer.sent[-1] == "later" and box._task is None, message="again")
    await box.close()
    assert not box.put("after close") or box._task is None


async def test_a_write_that_stalls_cuts_the_peer_off_once():
    """A peer whose write never finishes is given up on after stall_s: the overflow
    handler runs once, nothing more is queued, and close() still returns."""
    peer = _Peer()
    cut: list[int] = []
    box = Outbox(peer, maxsize=8, stall_s=0.2, on_overflow=lambda: cut.append(1))  # type: ignore[arg-type]
    box.start()
    box.put("fine")
    await wait_for(lambda: peer.sent == ["fine"], message="first write")
    peer.hold = asyncio.Event()
    box.put("stuck")
    await wait_for(lambda: cut == [1], timeout(5), message="stall noticed")
    assert box.overflowed and not box.put("more")
    await asyncio.wait_for(box.close(), timeout(5))
    assert cut == [1]


async def test_steady_writes_never_count_as_a_stall():
    """Many quick writes spread over more than stall_s are not a stall."""
    peer = _Peer()
    cut: list[int] = []
    box = Outbox(peer, maxsize=64, stall_s=0.1, on_overflow=lambda: cut.append(1))  # type: ignore[arg-type]
    box.start()
    for i in range(30):
        box.put(f"m{i}")
        await asyncio.sleep(0.01)
    await wait_for(lambda: len(peer.sent) == 30, message="all sent")
    assert cut == [] and not box.overflowed
    await box.close()


def test_collector_freezes_on_every_tick_but_a_clean_up():
    """Each tick collects the young generations and freezes what survives, connects or
    not; only a due clean-up does otherwise."""
    policy = CollectorPolicy(last_cleanup=0.0)
    assert policy.decide(1.0, connects=500, agents=500, viewers=3) == "freeze"
    assert policy.decide(1.25, connects=2000, agents=2000, viewers=3) == "freeze"
    assert policy.decide(1.5, connects=2000, agents=2000, viewers=3) == "freeze"


def test_collector_collects_the_frozen_set_only_while_nobody_watches():
    """The long full collection waits for a moment without dashboards (and the interval);
    with dashboards connected throughout, only after a school's worth of reconnects."""
    every = collector.CLEANUP_EVERY_S
    policy = CollectorPolicy(last_cleanup=0.0)
    assert policy.decide(10.0, connects=100, agents=100, viewers=0) == "freeze"  # too soon
    assert policy.decide(every + 1, connects=100, agents=100, viewers=5) != "cleanup"
    assert policy.decide(every + 2, connects=100, agents=100, viewers=0) == "cleanup"
    assert policy.decide(2 * every + 3, connects=100, agents=100, viewers=0) != "cleanup"
    many = 100 + int(collector.CLEANUP_GROWTH * 100)
    assert policy.decide(2 * every + 4, connects=many - 1, agents=100, viewers=5) != "cleanup"
    assert policy.decide(2 * every + 5, connects=many, agents=100, viewers=5) == "cleanup"


async def test_the_collector_task_freezes_on_its_clock(monkeypatch):
    """The running task calls freeze on its ticks."""
    calls: list[str] = []
    monkeypatch.setattr(collector, "TICK_S", 0.01)
    monkeypatch.setattr(collector, "freeze", lambda: calls.append("freeze"))
    connects = [0]
    task = asyncio.create_task(collector.run(lambda: connects[0], lambda: 1, lambda: 1))
    try:
        connects[0] = 100
        await wait_for(lambda: "freeze" in calls, message="a freeze after the connects")
    finally:
        task.cancel()


async def test_a_running_server_freezes_and_a_stopped_one_unfreezes(tmp_path):
    """The server freezes what start-up made and turns Python's automatic collector off;
    garbage in a reference cycle is still collected, on the collector's clock; when it
    stops, nothing stays frozen and the automatic collector is back (the process goes on
    collecting as usual: tests, an embedding program)."""
    import gc
    import weakref

    from tests.support.live import start_live_server

    class Node:
        pass

    assert gc.isenabled()
    server = await start_live_server(tmp_path)
    try:
        assert gc.get_freeze_count() > 0
        assert not gc.isenabled()
        node = Node()
        node.me = node  # a cycle: only a collection frees it
        gone = weakref.ref(node)
        del node
        await wait_for(lambda: gone() is None, message="the cycle collected on a tick")
    finally:
        await server.stop()
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


async def test_on_a_real_socket_writes_at_once_use_aiohttp_s_frame_writer_in_order():
    """On a real aiohttp socket, a write at once goes through aiohttp's own frame writer
    (no coroutine per frame). A client gets text and binary messages intact and in order,
    both those written at once and those that went through the queue (a send buffer
    over its mark). Once the close frame went out, nothing more is written."""
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    boxes: list[Outbox] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        box = Outbox(ws, maxsize=100, transport=request.transport)
        box.start()
        boxes.append(box)
        await done.wait()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    port = server.port
    try:
        async with aiohttp.ClientSession() as http:
            client = await http.ws_connect(f"http://127.0.0.1:{port}/")
            await wait_for(lambda: boxes, message="the server socket")
            box = boxes[0]
            assert box._frame is not None
            big = bytes(range(256)) * 1024  # 256 KB: over the mark, through the queue
            sent: list[str | bytes] = ["hello", b"\x00\x01", "x" * 200, b"y" * 70000, big]
            sent += [f"after {i}" for i in range(5)]
            for message in sent:
                assert box.put(message)
            got: list[str | bytes] = []
            while len(got) < len(sent):
                msg = await client.receive(timeout=timeout(5))
                got.append(msg.data)
            assert got == sent
            await wait_for(lambda: box.sent == len(sent), message="all counted as sent")
            closing = asyncio.create_task(box._ws.close())
            await wait_for(lambda: box._ws._writer._closing, message="the close frame sent")
            box.put(b"too late")
            msg = await client.receive(timeout=timeout(5))
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg  # not "too late"
            await client.close()
            await asyncio.wait_for(closing, timeout(5))
            assert box.sent == len(sent)
    finally:
        done.set()
        await server.close()
