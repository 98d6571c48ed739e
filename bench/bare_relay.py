"""A bare aiohttp relay: agents in, dashboards out, nothing else.

No authentication, no protocol checks, no database, no per-viewer queues: it reads the
agent's hello only to learn which student it is, tells agents to send when a dashboard
subscribes, and forwards each frame (behind the same viewer prefix Klasblik uses) by
awaiting each dashboard's send in turn. It is the yardstick ``server_load.py`` measures
Klasblik against in the same run, so the figures are ratios rather than absolutes.

    python bench/bare_relay.py --port 9000
"""

from __future__ import annotations

import argparse
import json
import struct

from aiohttp import WSMsgType, web

__all__ = ["main", "make_app"]

_VIEWER = struct.Struct(">4sH")


def _prefix(student_id: int) -> bytes:
    ref = str(student_id).encode()
    return _VIEWER.pack(b"KBV1", len(ref)) + ref


def make_app() -> web.Application:
    agents: dict[int, web.WebSocketResponse] = {}
    subscribers: dict[int, set[web.WebSocketResponse]] = {}
    watch = json.dumps({"type": "watch", "mode": "grid"})

    async def agent_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024, compress=False)
        await ws.prepare(request)
        hello = json.loads((await ws.receive()).data)
        sid = int(hello["device"]["id"])
        agents[sid] = ws
        prefix = _prefix(sid)
        await ws.send_str(json.dumps({"type": "welcome", "heartbeat_s": 20}))
        if subscribers.get(sid):
            await ws.send_str(watch)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    payload = prefix + msg.data
                    for dash in list(subscribers.get(sid, ())):
                        try:
                            await dash.send_bytes(payload)
                        except (ConnectionError, RuntimeError):
                            pass
        finally:
            if agents.get(sid) is ws:
                del agents[sid]
        return ws

    async def dashboard_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        mine: set[int] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                if m.get("type") == "subscribe":
                    for sid in m["students"]:
                        subscribers.setdefault(sid, set()).add(ws)
                        mine.add(sid)
                        if sid in agents:
                            await agents[sid].send_str(watch)
                    await ws.send_str(json.dumps({"type": "result", "id": m.get("id")}))
        finally:
            for sid in mine:
                subscribers.get(sid, set()).discard(ws)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "agents": len(agents)})

    app = web.Application()
    app.router.add_get("/ws/agent", agent_ws)
    app.router.add_get("/ws/dashboard", dashboard_ws)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
