"""Hardening benchmark against a `klasblik serve` process, over real sockets on loopback:

1. **memory per pre-hello socket**: N agent sockets complete the WebSocket handshake and
   then send no hello: first silent ones, then ones that start a large text message (an
   unfinished 1 MB "hello") and never finish it; the server's RSS growth per socket
   (``/proc/PID/status``) after each wave, and how many of each were let in;
2. **the teacher during a reconnect storm**: a teacher watches a class of 1,000 students
   while all 1,000 agents connect at once, all drop off, and all connect again; the
   teacher's ping→answer latency (p50/p99/max; one ping in flight, every 20 ms) and
   whether the teacher was cut off.

Run it with this checkout's server and with another one's (say, before a change):

    .venv/bin/python bench/hardening.py
    .venv/bin/python bench/hardening.py --klasblik /path/to/other/.venv/bin/klasblik

Every phase is bounded in time; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.hardening.rawws import RawSocket, ws_frame

from server_load import TOKEN, Proc, free_port, seed, wait_http

ROOT = Path(__file__).parents[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(exe: str, tmp: Path, env: dict[str, str]) -> Proc:
    import subprocess

    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_")}
    full.update(
        {
            "KLASBLIK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/k.db",
            "KLASBLIK_BLOB_STORE": f"file:{tmp}/blobs",
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_LOG_LEVEL": "WARNING",
            **env,
        }
    )
    log = open(tmp / f"server-{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    popen = subprocess.Popen(
        [exe, "serve", "--port", str(port)], env=full, cwd=tmp, stdout=log, stderr=log
    )
    proc = Proc("server", popen, port)
    wait_http(proc)
    return proc


async def pre_hello(proc: Proc, n: int) -> dict[str, Any]:
    base = rss_kib(proc.pid)
    out: dict[str, Any] = {"sockets": n}
    silent = []
    for _ in range(n):
        try:
            raw = await RawSocket.open(proc.port, "/ws/agent")
        except OSError:
            break
        silent.append(raw)
    await asyncio.sleep(1)
    admitted = sum(1 for r in silent if r.status == 101)
    out["silent_admitted"] = admitted
    out["silent_kib_per_socket"] = round((rss_kib(proc.pid) - base) / max(1, admitted), 1)
    for r in silent:
        r.close()
    silent = []
    await asyncio.sleep(1)
    base = rss_kib(proc.pid)
    stuffed = []
    chunk = b"x" * 65536
    for _ in range(n):
        try:
            raw = await RawSocket.open(proc.port, "/ws/agent")
        except OSError:
            break
        if raw.status != 101:
            stuffed.append(raw)
            continue
        # a text frame announcing 1 MB, of which 1 MB minus one byte is sent
        head = ws_frame(0x1, b"", fin=True)[:1] + bytes([0x80 | 127]) + (2**20).to_bytes(8, "big")
        try:
            await raw.send(head + b"\0\0\0\0")
            for _ in range(15):
                await raw.send(chunk)
        except (ConnectionError, OSError):
            pass
        stuffed.append(raw)
    await asyncio.sleep(1)
    out["stuffed_admitted"] = sum(1 for r in stuffed if r.status == 101)
    out["stuffed_kib_per_socket"] = round(
        (rss_kib(proc.pid) - base) / max(1, out["stuffed_admitted"]), 1
    )
    for r in silent + stuffed:
        r.close()
    return out


async def storm(proc: Proc, cookie: str, students: list[int], rounds: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{proc.port}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookies={"klasblik_session": cookie}
    ) as http:
        teacher = await http.ws_connect(base.replace("http", "ws") + "/ws/dashboard", origin=base)
        await teacher.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": 1}))
        sent: dict[int, float] = {}
        rtts: list[float] = []
        closed: list[Any] = []
        statuses = 0

        async def read() -> None:
            nonlocal statuses
            async for msg in teacher:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                if m["type"] == "result" and m["id"] in sent:
                    rtts.append(time.monotonic() - sent.pop(m["id"]))
                elif m["type"] == "status":
                    statuses += 1
                elif m["type"] == "closed":
                    closed.append(m["error"]["code"])
            closed.append(f"socket closed {teacher.close_code}")

        reader = asyncio.create_task(read())
        stop = asyncio.Event()

        async def ping() -> None:
            """One ping in flight at a time (as a dashboard's own commands are), every 20 ms."""
            n = 100
            while not stop.is_set() and not teacher.closed:
                n += 1
                sent[n] = time.monotonic()
                await teacher.send_str(json.dumps({"type": "ping", "id": n}))
                deadline = time.monotonic() + 30
                while n in sent and time.monotonic() < deadline and not teacher.closed:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.02)

        pinger = asyncio.create_task(ping())
        await asyncio.sleep(0.5)
        rtts.clear()
        agents: list[aiohttp.ClientWebSocketResponse] = []

        async def one(i: int) -> aiohttp.ClientWebSocketResponse | None:
            try:
                ws = await http.ws_connect(base.replace("http", "ws") + "/ws/agent")
                hello = {
                    "type": "hello",
                    "protocol": 1,
                    "token": TOKEN,
                    "account": f"s{i}@bench.example",
                    "device": {"id": f"d{i}", "kind": "desktop"},
                }
                await ws.send_str(json.dumps(hello))
                await ws.receive(timeout=30)
                return ws
            except (aiohttp.ClientError, TimeoutError, OSError):
                return None

        started = time.monotonic()
        for r in range(rounds):
            agents = [a for a in await asyncio.gather(*(one(i) for i in students)) if a]
            if r < rounds - 1:
                await asyncio.gather(*(a.close() for a in agents))
        storm_s = time.monotonic() - started
        await asyncio.sleep(1)
        stop.set()
        await pinger
        cut_off = teacher.closed or bool(closed)
        await teacher.close()
        await asyncio.wait([reader], timeout=5)
        await asyncio.gather(*(a.close() for a in agents))
    rtts.sort()
    return {
        "agents": len(students),
        "rounds": rounds,
        "welcomed_last_round": len(agents),
        "storm_s": round(storm_s, 2),
        "teacher_pings": len(rtts),
        "teacher_p50_ms": round(statistics.median(rtts) * 1000, 1) if rtts else None,
        "teacher_p99_ms": round(rtts[int(len(rtts) * 0.99) - 1] * 1000, 1) if rtts else None,
        "teacher_max_ms": round(rtts[-1] * 1000, 1) if rtts else None,
        "teacher_status_messages": statuses,
        "teacher_cut_off": closed if cut_off else False,
    }


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--klasblik", default=str(ROOT / ".venv" / "bin" / "klasblik"))
    ap.add_argument("--sockets", type=int, default=300)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeded = await seed(f"sqlite+aiosqlite:///{tmp}/k.db", args.agents, args.agents, 1)
        # the limits let every socket in here: this measures what each one costs
        wide = {"KLASBLIK_HELLO_MAX_PER_ADDRESS": "100000", "KLASBLIK_HELLO_MAX_TOTAL": "100000"}
        proc = start(args.klasblik, tmp, {"KLASBLIK_AUTH_TIMEOUT_S": "60", **wide})
        try:
            print("pre-hello:", json.dumps(await pre_hello(proc, args.sockets)))
        finally:
            proc.popen.terminate()
            proc.popen.wait(30)
        proc = start(args.klasblik, tmp, wide)  # all 1,000 agents come from one address
        try:
            result = await storm(proc, seeded["cookies"][0], seeded["classes"][1], args.rounds)
            print("storm:", json.dumps(result))
        finally:
            proc.popen.terminate()
            proc.popen.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
