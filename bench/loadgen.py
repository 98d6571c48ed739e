"""One load-generator process: simulated agents and dashboards over real WebSockets.

``server_load.py`` starts several of these and drives them with one JSON command per line
on stdin; each answers with one JSON line on stdout. Agents speak the Klasblik agent
protocol (hello, heartbeats, frames while the server asks for them); each frame carries its
send time in the header's ``captured_at`` field, so a dashboard measures agent→dashboard
latency as ``now - captured_at``.

Commands: ``{"cmd": "connect"}``, ``{"cmd": "view"}``, ``{"cmd": "rate", "fps": F}``,
``{"cmd": "measure", "seconds": S}``, ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["main"]

_HEADER = struct.Struct(">4sBBBBHHIQ")  # the agent frame header (docs/protocol.md)
_VIEWER = struct.Struct(">4sH")


def _thumbnail(size: int) -> bytes:
    """A real 400x225 JPEG (the server reads its size from the JPEG header), padded with
    random bytes after its end to ``size``, as an 8 KB thumbnail would be."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (400, 225), (200, 210, 220)).save(out, "JPEG", quality=70)
    jpeg = out.getvalue()
    return jpeg + random.randbytes(max(0, size - len(jpeg)))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Stats:
    frames_in: int = 0
    frames_out: int = 0
    heartbeats: int = 0
    latencies: list[int] = field(default_factory=list)
    dashboards_closed: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.target: str = cfg["target"]
        self.fps = 0.0
        self.rate_changed = asyncio.Event()
        self.stats = Stats()
        self.image = _thumbnail(cfg["frame_bytes"])
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
        self.agents: list[aiohttp.ClientWebSocketResponse] = []
        self.dashboards: list[aiohttp.ClientWebSocketResponse] = []
        self.tasks: list[asyncio.Task[None]] = []

    # ---- agents ---------------------------------------------------------------------

    async def connect_all(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.cfg.get("connect_concurrency", 40))
        failed = 0
        t0 = time.monotonic()

        async def one(spec: list[Any]) -> None:
            nonlocal failed
            url, account, sid, *rest = spec  # rest: an identity token (m365), when given
            hello: dict[str, Any] = {
                "type": "hello",
                "protocol": 1,
                "token": self.cfg["token"],
                "account": account,
                "device": {"id": str(sid), "kind": "desktop"},
            }
            if rest:
                hello["identity"] = {"kind": "m365", "token": rest[0]}
            async with gate:
                try:
                    ws = await self.http.ws_connect(url, autoping=True, max_msg_size=0)
                    await ws.send_str(json.dumps(hello))
                    first = json.loads(await ws.receive_str(timeout=60))
                    if first.get("type") != "welcome":
                        raise RuntimeError(f"refused: {first}")
                except Exception as exc:  # counted and reported; the run goes on
                    failed += 1
                    if len(self.stats.errors) < 5:
                        self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                    return
            self.agents.append(ws)
            self.tasks.append(asyncio.create_task(self._agent(ws, first.get("heartbeat_s", 20))))

        await asyncio.gather(*(one(s) for s in self.cfg["agents"]))
        return {
            "connected": len(self.agents),
            "failed": failed,
            "seconds": round(time.monotonic() - t0, 2),
            "errors": self.stats.errors,
        }

    async def _agent(self, ws: aiohttp.ClientWebSocketResponse, heartbeat_s: float) -> None:
        mode = ["off"]
        reader = asyncio.create_task(self._agent_reader(ws, mode))
        seq = 0
        beats = 0
        next_beat = time.monotonic() + random.uniform(0, heartbeat_s)
        try:
            while not ws.closed:
                now = time.monotonic()
                if now >= next_beat:
                    beats += 1  # as both agents write it (protocol/session.py, protocol.js)
                    await ws.send_str(f'{{"type":"heartbeat","seq":{beats}}}')
                    self.stats.heartbeats += 1
                    next_beat = now + heartbeat_s
                if mode[0] == "off" or self.fps <= 0:
                    await asyncio.sleep(min(1.0, max(0.01, next_beat - now)))
                    continue
                seq += 1
                header = _HEADER.pack(b"KBF1", 1, 1, 1, 0, 400, 225, seq, _now_ms())
                await ws.send_bytes(header + self.image)
                self.stats.frames_out += 1
                await asyncio.sleep(random.uniform(0.5, 1.5) / self.fps)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            reader.cancel()

    async def _agent_reader(self, ws: aiohttp.ClientWebSocketResponse, mode: list[str]) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                m = json.loads(msg.data)
                if m.get("type") == "watch":
                    mode[0] = m["mode"]

    # ---- dashboards -----------------------------------------------------------------

    async def view_all(self) -> dict[str, Any]:
        results = await asyncio.gather(*(self._open_dashboard(d) for d in self.cfg["dashboards"]))
        return {"dashboards": sum(results)}

    async def _open_dashboard(self, spec: dict[str, Any]) -> int:
        try:
            ws = await self.http.ws_connect(
                spec["url"],
                origin=spec["origin"],
                max_msg_size=0,
                headers={"Cookie": f"klasblik_session={spec['cookie']}"}
                if spec["cookie"]
                else None,
            )
            if self.target == "bare":
                await ws.send_str(
                    json.dumps({"type": "subscribe", "id": 1, "students": spec["students"]})
                )
            else:
                await ws.send_str(
                    json.dumps({"type": "subscribe", "id": 1, "class_id": spec["class_id"]})
                )
            while True:  # measure relaying only once the view is open
                msg = await ws.receive(timeout=120)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    if m.get("type") == "result" and m.get("id") == 1:
                        break
                    if m.get("type") == "error":
                        raise RuntimeError(f"subscribe refused: {m}")
                elif msg.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"dashboard closed while subscribing: {msg}")
        except Exception as exc:
            self.stats.errors.append(f"dashboard: {type(exc).__name__}: {exc}")
            return 0
        self.dashboards.append(ws)
        self.tasks.append(asyncio.create_task(self._dashboard(ws)))
        return 1

    async def _dashboard(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stats = self.stats
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                data = msg.data
                ref_len = _VIEWER.unpack_from(data)[1]
                captured = _HEADER.unpack_from(data, _VIEWER.size + ref_len)[8]
                stats = self.stats
                stats.frames_in += 1
                stats.latencies.append(_now_ms() - captured)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                m = json.loads(msg.data)
                if m.get("type") == "error" or (m.get("type") == "closed"):
                    self.stats.errors.append(json.dumps(m)[:200])
        self.stats.dashboards_closed += 1

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.http.close()


async def _serve(cfg: dict[str, Any]) -> None:
    worker = Worker(cfg)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "connect":
            answer(await worker.connect_all())
        elif cmd["cmd"] == "view":
            answer(await worker.view_all())
        elif cmd["cmd"] == "rate":
            worker.fps = float(cmd["fps"])
            answer({"fps": worker.fps})
        elif cmd["cmd"] == "measure":
            closed_before = worker.stats.dashboards_closed
            worker.stats = Stats(dashboards_closed=closed_before)
            await asyncio.sleep(float(cmd["seconds"]))
            s = worker.stats
            answer(
                {
                    "frames_in": s.frames_in,
                    "frames_out": s.frames_out,
                    "heartbeats": s.heartbeats,
                    "latencies": s.latencies,
                    "dashboards_closed": s.dashboards_closed,
                    "errors": s.errors[:5],
                }
            )
        elif cmd["cmd"] == "quit":
            break
    await worker.close()


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(sys.argv[1], encoding="utf-8") as f:  # the config file server_load.py wrote
        cfg = json.load(f)
    asyncio.run(_serve(cfg))


if __name__ == "__main__":
    main()
