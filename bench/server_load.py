"""Server load benchmark: N simulated agents and M dashboards over real WebSockets on loopback.

Measures, for each target in one run:

- ``single``: one ``klasblik serve`` process;
- ``cluster``: two ``klasblik serve`` processes sharing PostgreSQL and a private Redis
  (agents and dashboards alternate between them, so about half the frames cross Redis);
- ``bare``: ``bench/bare_relay.py``, a minimal forwarder, as the yardstick;
- ``pair``: two ``klasblik serve`` processes and no Redis, each class (its agents and its
  dashboard) on one of them, so no frame crosses: what two processes cost on this machine
  beside one (their own agents, sweeps and refreshes, the cores they share), the baseline
  that shows what of ``cluster``'s cost is the crossing itself;

the connected agents, server RSS per agent (``/proc/PID/status``), relayed frames/s, and
agent→dashboard latency p50/p99, first at the target load (``--fps`` per watched agent),
then at a higher offered load (``--max-fps``) for throughput. Every phase is bounded in
time, and the whole run stops by itself.

    python bench/server_load.py --agents 10000 --dashboards 100 --fps 1 --max-fps 3

``--identity token`` (the default) runs the agents as today, on the enrollment token alone
(the transition policy); ``--identity verified`` gives every agent a Microsoft 365 access
token for Klasblik's API from a real OpenID Connect provider process (tests/support/oidc.py)
and runs the servers with ``agent_identity = verified``, so every hello is validated
(signature, issuer, audience, tenant, expiry) and the student looked up by object id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "bench-enrollment-token"
PG_ADMIN_DSN = os.environ.get("KLASBLIK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    """The running child processes of ``pid`` (by their parent's id: kernels without
    ``/proc/PID/task/TID/children`` are common)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            if int(_stat(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and of its child processes, the running ones
    (the Azure store's worker) and those that ended."""
    fields = _stat(pid)
    total = sum(int(f) for f in fields[11:15]) / CLK_TCK
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_s(child)
    return total


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the event loop's thread (the main one) and of all
    the other threads of ``pid`` together (executors, the collector log), and of its child
    processes (the Azure store's worker)."""
    out = {"loop": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended
        name = "loop" if task.name == str(pid) else "other threads"
        out[name] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    own = out["loop"] + out["other threads"]
    out["child processes"] = max(0.0, cpu_s(pid) - own)
    return out


# ---- database -------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    name = "klasblik_bench_" + secrets.token_hex(4)
    if shutil.which("psql") is None:
        sys.exit("psql is not installed: scripts/test installs PostgreSQL")
    subprocess.run(["psql", PG_ADMIN_DSN, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        subprocess.run(
            ["psql", PG_ADMIN_DSN, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            check=False,
        )


async def seed(url: str, agents: int, class_size: int, dashboards: int) -> dict[str, Any]:
    """Bulk-insert a school with ``agents`` students in classes of ``class_size``, one
    teacher per class, and a signed-in session for each of the first ``dashboards``."""
    from sqlalchemy import insert, text

    from klasblik.server.auth.sessions import create_session
    from klasblik.server.retention.schedule import NIGHTLY
    from klasblik.server.settings import load_settings
    from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
    from klasblik.server.storage.models import (
        JobRun,
        Location,
        School,
        SchoolClass,
        Staff,
        Student,
        class_students,
        class_teachers,
    )

    engine = create_engine(url)
    await upgrade_database(engine)
    n_classes = -(-agents // class_size)
    async with engine.begin() as conn:
        await conn.execute(insert(School), [{"id": 1, "name": "Bench school", "brin": "99ZZ"}])
        await conn.execute(
            insert(Location),
            [
                {
                    "id": 1,
                    "school_id": 1,
                    "name": "Main",
                    "code": "99ZZ00",
                    "networks": "127.0.0.0/8",
                }
            ],
        )
        await conn.execute(
            insert(Student),
            [
                {
                    "id": i,
                    "school_id": 1,
                    "location_id": 1,
                    "username": f"s{i}@bench.example",
                    "display_name": f"Student{i} B.",
                }
                for i in range(1, agents + 1)
            ],
        )
        await conn.execute(
            insert(Staff),
            [
                {
                    "id": c,
                    "school_id": 1,
                    "location_id": 1,
                    "username": f"t{c}@bench.example",
                    "name": f"Teacher {c}",
                }
                for c in range(1, n_classes + 1)
            ],
        )
        await conn.execute(
            insert(SchoolClass),
            [{"id": c, "school_id": 1, "name": f"Class {c}"} for c in range(1, n_classes + 1)],
        )
        await conn.execute(
            insert(class_teachers),
            [{"class_id": c, "staff_id": c} for c in range(1, n_classes + 1)],
        )
        await conn.execute(
            insert(class_students),
            [
                {"class_id": (i - 1) // class_size + 1, "student_id": i}
                for i in range(1, agents + 1)
            ],
        )
        # last night's purge ran, as in a school's database on any day: no server catches
        # it up 60 s after its start, inside a measured phase (the first target would pay
        # it and the others not). Yesterday to tomorrow: whatever the purge time and zone.
        today = dt.datetime.now(dt.UTC).date()
        await conn.execute(
            insert(JobRun),
            [
                {
                    "job": NIGHTLY,
                    "run_key": (today + dt.timedelta(days=d)).isoformat(),
                    "started_at": dt.datetime.now(dt.UTC),
                    "finished_at": dt.datetime.now(dt.UTC),
                    "summary": "bench: done before the run",
                }
                for d in (-2, -1, 0, 1)
            ],
        )
        if engine.dialect.name == "postgresql":
            for table in ("students", "staff", "classes", "schools", "locations"):
                await conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    settings = load_settings(env={}, overrides={"enrollment_token": TOKEN})
    sm = sessionmaker(engine)
    cookies = []
    for c in range(1, min(dashboards, n_classes) + 1):
        token, _ = await create_session(sm, c, "127.0.0.1", settings)
        cookies.append(token)
    await engine.dispose()
    classes = {
        c: list(range((c - 1) * class_size + 1, min(agents, c * class_size) + 1))
        for c in range(1, n_classes + 1)
    }
    return {"cookies": cookies, "classes": classes}


# ---- servers --------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    #: where gc_probe.py logs the collector's pauses (none for Redis, or under cProfile)
    gc_log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


def gc_pauses(procs: list[Proc], start: float, end: float) -> tuple[float, float, int, float]:
    """(longest pause ms, all pauses ms, full collections, longest pause in CPU ms) of
    ``procs`` between two ``time.time()`` moments, from their gc_probe.py logs. Wall time
    includes waiting for a core on a busy machine; the CPU time is the collector's work."""
    time.sleep(0.6)  # the probe writes twice a second
    longest = total = longest_cpu = 0.0
    full = 0
    for proc in procs:
        if proc.gc_log is None or not proc.gc_log.exists():
            continue
        for line in proc.gc_log.read_text().splitlines():
            at, took, gen, _collected, cpu = line.split()
            if start <= float(at) <= end:
                longest = max(longest, float(took) * 1000)
                longest_cpu = max(longest_cpu, float(cpu) * 1000)
                total += float(took) * 1000
                full += gen == "2"
    return round(longest, 1), round(total), full, round(longest_cpu, 1)


def wait_http(proc: Proc, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            log = proc.gc_log.with_suffix(".log") if proc.gc_log else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            sys.exit(f"{proc.name} exited at start (code {proc.popen.returncode})\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}{path}", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{proc.name} did not answer within {timeout} s")


def start_klasblik(name: str, workdir: Path, env: dict[str, str], cprofile: str | None) -> Proc:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable]
    if cprofile:
        cmd += ["-m", "cProfile", "-o", cprofile]
    else:  # every collector pause, from a gc.callbacks hook in the server process
        cmd += [str(HERE / "gc_probe.py"), str(workdir / f"{name}.gc")]
    cmd += ["-m", "klasblik.server.cli", "serve", "--port", str(port)]
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    # every simulated agent comes from this one address: let a whole school's storm in
    wide = {"KLASBLIK_HELLO_MAX_PER_ADDRESS": "100000", "KLASBLIK_HELLO_MAX_TOTAL": "100000"}
    popen = subprocess.Popen(
        cmd, env={**os.environ, **wide, **env}, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
    )
    proc = Proc(name, popen, port, workdir / f"{name}.gc")
    wait_http(proc)
    return proc


def start_bare(workdir: Path) -> Proc:
    port = free_port()
    probe = [str(HERE / "gc_probe.py"), str(workdir / "bare.gc")]
    popen = subprocess.Popen(
        [sys.executable, *probe, str(HERE / "bare_relay.py"), "--port", str(port)], cwd=workdir
    )
    proc = Proc("bare", popen, port, workdir / "bare.gc")
    wait_http(proc)
    return proc


def start_redis(workdir: Path) -> Proc:
    port = free_port()
    popen = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    proc = Proc("redis", popen, port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


# ---- load generator processes ---------------------------------------------------------


class Workers:
    def __init__(self, configs: list[dict[str, Any]], workdir: Path) -> None:
        self.procs = []
        for i, cfg in enumerate(configs):
            path = workdir / f"worker{i}.json"
            path.write_text(json.dumps(cfg))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "loadgen.py"), str(path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def ask(self, cmd: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(json.dumps(cmd) + "\n")
            p.stdin.flush()
        out = []
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"load generator exited during {cmd['cmd']}")
            out.append(json.loads(line))
        return out

    def close(self) -> None:
        for p in self.procs:
            try:
                assert p.stdin is not None
                p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@dataclass
class Result:
    target: str
    agents: int = 0
    rss_base_kb: int = 0
    rss_kb: int = 0
    connect_s: float = 0.0
    connect_cpu_ms: float = 0.0
    #: collector pauses while the agents connected: longest ms, sum ms, full collections
    connect_gc: tuple[float, float, int, float] = (0.0, 0.0, 0, 0.0)
    #: with no viewer: heartbeats the agents sent per second, server CPU µs per heartbeat
    idle_heartbeats_per_s: float = 0.0
    idle_us_per_heartbeat: float | None = None
    idle_gc: tuple[float, float, int, float] = (0.0, 0.0, 0, 0.0)
    view_s: float = 0.0
    dashboards: int = 0
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return float(values[min(len(values) - 1, int(q * len(values)))])


def _spy(
    args: argparse.Namespace, servers: list[Proc], target: str, phase: str, seconds: float = 0
) -> subprocess.Popen[bytes] | None:
    """py-spy recording the first server of ``target`` through ``phase`` (raw format)."""
    if not args.py_spy:
        return None
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(servers[0].pid),
            "--format",
            "raw",
            *(("--gil", "--rate", "80") if args.py_spy_gil else ("--nonblocking", "--rate", "250")),
            "--duration",
            str(int(seconds or args.seconds)),
            "-o",
            f"{args.py_spy}-{target}-{phase}.txt",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_target(
    target: str, args: argparse.Namespace, roster: dict[str, Any], db_url: str, workdir: Path
) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[Proc] = []
    extra: list[Proc] = []
    res = Result(target)
    try:
        if target == "bare":
            servers.append(start_bare(workdir))
        else:
            kind = target.removeprefix("before-") if target.startswith("before") else target
            kind = "single" if kind == "before" else kind
            env = {
                "KLASBLIK_DATABASE_URL": db_url,
                "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
                "KLASBLIK_LOG_LEVEL": "WARNING",
                "KLASBLIK_AGENT_IDENTITY": args.identity,
                **roster.get("server_env", {}),
                **dict(kv.split("=", 1) for kv in args.server_env),
            }
            if target.startswith("before"):  # the same benchmark, the older server code
                if not args.before_src:
                    sys.exit(f"target {target} needs --before-src")
                src = Path(args.before_src).resolve()
                env["PYTHONPATH"] = os.pathsep.join([str(src / "server"), str(src)])
            if kind == "cluster":
                redis = start_redis(workdir)
                extra.append(redis)
                env["KLASBLIK_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
            count = 2 if kind in ("cluster", "pair") else 1
            for i in range(count):
                name = f"{target}-{i}"
                env_i = {**env, "KLASBLIK_BLOB_STORE": f"file:{workdir}/blobs-{i}"}
                prof = args.cprofile if (target == "single" and args.cprofile) else None
                servers.append(start_klasblik(name, workdir, env_i, prof))
        time.sleep(1)
        res.rss_base_kb = sum(rss_kb(s.pid) for s in servers)

        n_workers = args.workers
        configs: list[dict[str, Any]] = [
            {
                "target": target,
                "token": TOKEN,
                "frame_bytes": args.frame_bytes,
                "agents": [],
                "dashboards": [],
            }
            for _ in range(n_workers)
        ]
        for i in range(1, args.agents + 1):
            if target == "pair":  # a class's agents on its dashboard's server (j % 2 below)
                srv = servers[((i - 1) // args.class_size) % 2]
            else:
                srv = servers[i % len(servers)]
            spec: list[Any] = [f"ws://127.0.0.1:{srv.port}/ws/agent", f"s{i}@bench.example", i]
            if roster.get("tokens") and target != "bare":
                spec.append(roster["tokens"][i - 1])
            configs[i % n_workers]["agents"].append(spec)
        for j, cookie in enumerate(roster["cookies"]):
            srv = servers[j % len(servers)]
            class_id = j + 1
            configs[j % n_workers]["dashboards"].append(
                {
                    "url": f"ws://127.0.0.1:{srv.port}/ws/dashboard",
                    "origin": f"http://127.0.0.1:{srv.port}",
                    "cookie": cookie if target != "bare" else "",
                    "class_id": class_id,
                    "students": roster["classes"][class_id],
                }
            )
        workers = Workers(configs, workdir)
        try:
            t0 = time.monotonic()
            wall0 = time.time()
            cpu0 = sum(cpu_s(p.pid) for p in servers + extra)
            answers = workers.ask({"cmd": "connect"})
            res.connect_s = round(time.monotonic() - t0, 1)
            cpu = sum(cpu_s(p.pid) for p in servers + extra) - cpu0
            res.connect_cpu_ms = round(1000 * cpu / max(1, args.agents), 2)
            res.agents = sum(a["connected"] for a in answers)
            for a in answers:
                res.errors += a["errors"]
            time.sleep(2)  # let the servers settle after the connection storm
            res.connect_gc = gc_pauses(servers, wall0, time.time())
            res.rss_kb = sum(rss_kb(s.pid) for s in servers)
            if args.idle_seconds > 0:  # nobody watches: heartbeats only
                wall0 = time.time()
                cpu0 = sum(cpu_s(p.pid) for p in servers + extra)
                spy = _spy(args, servers, target, "idle", args.idle_seconds)
                answers = workers.ask({"cmd": "measure", "seconds": args.idle_seconds})
                if spy is not None:
                    spy.wait(timeout=60)
                cpu = sum(cpu_s(p.pid) for p in servers + extra) - cpu0
                beats = sum(a["heartbeats"] for a in answers)
                res.idle_heartbeats_per_s = round(beats / args.idle_seconds)
                res.idle_us_per_heartbeat = round(1e6 * cpu / beats) if beats else None
                res.idle_gc = gc_pauses(servers, wall0, time.time())
            t0 = time.monotonic()
            res.dashboards = sum(a["dashboards"] for a in workers.ask({"cmd": "view"}))
            res.view_s = round(time.monotonic() - t0, 1)
            for phase, fps in (("target", args.fps), ("max", args.max_fps)):
                workers.ask({"cmd": "rate", "fps": fps})
                time.sleep(args.warmup)
                procs0 = {p.name: cpu_s(p.pid) for p in servers + extra}
                cpu0 = sum(procs0.values())
                threads0 = thread_cpu_s(servers[0].pid)
                t = time.monotonic()
                wall0 = time.time()
                spy = _spy(args, servers, target, phase)
                answers = workers.ask({"cmd": "measure", "seconds": args.seconds})
                if spy is not None:
                    spy.wait(timeout=60)
                elapsed = time.monotonic() - t
                procs = {p.name: cpu_s(p.pid) - procs0[p.name] for p in servers + extra}
                cpu = sum(procs.values())
                threads = {
                    name: round(100 * (used - threads0.get(name, 0.0)) / elapsed, 1)
                    for name, used in thread_cpu_s(servers[0].pid).items()
                    if used - threads0.get(name, 0.0) > 0
                }
                lat = [x for a in answers for x in a["latencies"]]
                frames_in = sum(a["frames_in"] for a in answers)
                res.phases[phase] = {
                    "fps_per_agent": fps,
                    "sent_per_s": round(sum(a["frames_out"] for a in answers) / elapsed),
                    "relayed_per_s": round(frames_in / elapsed),
                    "p50_ms": percentile(lat, 0.50),
                    "p99_ms": percentile(lat, 0.99),
                    "max_ms": max(lat) if lat else float("nan"),
                    "server_cpu_pct": round(100 * cpu / elapsed),
                    "server_cpu_us_per_frame": round(1e6 * cpu / frames_in) if frames_in else None,
                    "dashboards_closed": sum(a["dashboards_closed"] for a in answers),
                    "gc": gc_pauses(servers, wall0, time.time()),
                    "threads_cpu_pct": threads,
                    # µs per relayed frame by process (the two servers and Redis of a cluster)
                    "procs_us_per_frame": {
                        name: round(1e6 * used / frames_in) if frames_in else None
                        for name, used in procs.items()
                    },
                }
                for a in answers:
                    res.errors += a["errors"]
        finally:
            workers.close()
    finally:
        for proc in servers + extra:
            stop(proc)
    return res


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print("command: " + shlex.join(["python", "bench/server_load.py", *sys.argv[1:]]))
    print(
        f"resolved: agents={args.agents} dashboards={args.dashboards} "
        f"class_size={args.class_size} fps={args.fps} max_fps={args.max_fps} "
        f"frame_bytes={args.frame_bytes} workers={args.workers} seconds={args.seconds} "
        f"cpus={os.cpu_count()}"
    )
    print()
    head = (
        f"{'target':8} {'agents':>6} {'conn s':>6} {'RSS/agent':>10} {'dash':>5} "
        f"{'phase':6} {'sent/s':>7} {'relayed/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv CPU%':>8} {'us/frame':>8} {'cut':>4} {'gc max ms':>9} {'gc sum ms':>9} "
        f"{'full gc':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        per_agent = (r.rss_kb - r.rss_base_kb) / r.agents if r.agents else float("nan")
        for phase, ph in r.phases.items():
            print(
                f"{r.target:8} {r.agents:6d} {r.connect_s:6.1f} {per_agent:7.1f} KB "
                f"{r.dashboards:5d} {phase:6} {ph['sent_per_s']:7d} {ph['relayed_per_s']:9d} "
                f"{ph['p50_ms']:7.0f} {ph['p99_ms']:7.0f} {ph['server_cpu_pct']:8d} "
                f"{ph['server_cpu_us_per_frame'] or 0:8d} {ph['dashboards_closed']:4d} "
                f"{ph['gc'][0]:9.1f} {ph['gc'][3]:6.1f} {ph['gc'][1]:9.0f} {ph['gc'][2]:7d}"
            )
    for r in results:  # where a server's CPU went, by thread (the first server of a target)
        for phase, ph in r.phases.items():
            split = ", ".join(
                f"{name} {pct}%"
                for name, pct in sorted(ph["threads_cpu_pct"].items(), key=lambda kv: -kv[1])
            )
            print(f"  {r.target} {phase}: CPU by thread: {split}")
            if len(ph["procs_us_per_frame"]) > 1:
                parts = ", ".join(f"{n} {us} µs" for n, us in ph["procs_us_per_frame"].items())
                print(f"  {r.target} {phase}: CPU per frame by process: {parts}")
    by = {r.target: r for r in results}
    for phase in ("target", "max"):
        cost = {
            name: r.phases[phase]["server_cpu_us_per_frame"]
            for name, r in by.items()
            if phase in r.phases and r.phases[phase]["server_cpu_us_per_frame"]
        }
        pairs = [
            (a, b)
            for a, b in (
                ("before", "bare"),
                ("single", "bare"),
                ("before-cluster", "before"),
                ("cluster", "single"),
                ("pair", "single"),
                ("cluster", "pair"),
            )
            if a in cost and b in cost
        ]
        if pairs:
            print(
                f"CPU per frame, {phase} load: "
                + "; ".join(f"{a}/{b} {cost[a] / cost[b]:.2f}" for a, b in pairs)
            )
    if "bare" in by:
        bare = by["bare"].phases.get("max", {}).get("relayed_per_s")
        for name in ("single", "cluster"):
            if name in by and bare:
                ratio = by[name].phases["max"]["relayed_per_s"] / bare
                print(f"throughput {name}/bare at max load: {ratio:.2f}")
    for r in results:
        print(
            f"{r.target}: server RSS {r.rss_base_kb / 1024:.0f} MB idle, "
            f"{r.rss_kb / 1024:.0f} MB with {r.agents} agents "
            f"({r.rss_kb / max(1, r.agents):.1f} KB/agent all in); "
            f"server CPU {r.connect_cpu_ms} ms per agent connect; "
            f"{r.dashboards} dashboards subscribed in {r.view_s} s"
        )
        print(
            f"  {r.target} collector while connecting: longest pause {r.connect_gc[0]} ms "
            f"({r.connect_gc[3]} ms CPU), {r.connect_gc[1]} ms in all, {r.connect_gc[2]} full; "
            f"idle (no viewer): {r.idle_heartbeats_per_s} heartbeats/s, "
            f"{r.idle_us_per_heartbeat} µs server CPU per heartbeat, longest pause "
            f"{r.idle_gc[0]} ms ({r.idle_gc[3]} ms CPU)"
        )
        for e in sorted(set(r.errors))[:5]:
            print(f"  {r.target} error: {e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--dashboards", type=int, default=100)
    parser.add_argument("--class-size", type=int, default=30)
    parser.add_argument(
        "--fps",
        type=float,
        default=1.0,
        help="frames per second per watched agent at the target load",
    )
    parser.add_argument(
        "--max-fps",
        type=float,
        default=3.0,
        help="frames per second per watched agent for the throughput phase",
    )
    parser.add_argument("--frame-bytes", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--seconds", type=float, default=8, help="length of each measurement")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument(
        "--targets",
        default="single,bare,cluster",
        help="comma-separated: single, cluster, pair, bare, and before / before-cluster (the "
        "server code in --before-src, e.g. from: git archive COMMIT server | tar -x -C DIR)",
    )
    parser.add_argument("--before-src", help="a source tree whose server/ the before targets run")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10,
        help="length of the idle measurement (agents connected, nobody watching)",
    )
    parser.add_argument("--database-url", help="default: a fresh PostgreSQL database")
    parser.add_argument("--cprofile", help="write a cProfile of the single server here")
    parser.add_argument(
        "--py-spy",
        help="record py-spy profiles of the measured phases to "
        "PREFIX-TARGET-PHASE.txt (raw format)",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="py-spy samples only while the loop thread holds the GIL, pausing the server "
        "80 times a second (where its Python time goes; the default, 250 samples a second "
        "without pausing, can read a running thread's stack wrongly)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the Klasblik servers (repeatable)",
    )
    parser.add_argument(
        "--identity",
        choices=("token", "verified"),
        default="token",
        help="token: the enrollment token alone (as before); verified: every agent sends a "
        "Microsoft 365 identity token that the server validates",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", help="work (server logs, collector logs) in this folder, kept")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.agents + 1000:
        print(f"warning: open-file limit {hard} is low for {args.agents} agents", file=sys.stderr)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="klasblik-bench-")
        if not args.keep
        else _given(args.keep)
    ) as tmp:
        with postgres_database() if not args.database_url else _given(args.database_url) as url:
            roster = asyncio.run(seed(url, args.agents, args.class_size, args.dashboards))
            with identity_provider(args, url, Path(tmp), roster):
                results = []
                for target in targets:
                    print(f"running {target} ...", file=sys.stderr, flush=True)
                    results.append(run_target(target, args, roster, url, Path(tmp) / target))
    report(results, args)
    print(f"total run time {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2))


@contextmanager
def identity_provider(
    args: argparse.Namespace, url: str, tmp: Path, roster: dict[str, Any]
) -> Iterator[None]:
    """With ``--identity verified``: the OIDC provider process, an object id per student,
    and an access token for Klasblik's API per agent (signed with the provider's key)."""
    if args.identity != "verified":
        yield
        return
    import uuid

    sys.path.insert(0, str(ROOT))
    from tests.support.oidc import CLIENT_ID, run_provider

    folder = tmp / "oidc"
    folder.mkdir()
    with run_provider(folder) as provider:
        oids = [str(uuid.uuid4()) for _ in range(args.agents)]
        asyncio.run(_set_object_ids(url, oids))
        scope = [f"api://{CLIENT_ID}/Agent.Connect"]
        t0 = time.monotonic()
        roster["tokens"] = [
            provider.mint_access_token(
                provider.api_claims(
                    {
                        "oid": oid,
                        "sub": oid,
                        "tid": provider.tenant,
                        "preferred_username": f"s{i}@bench.example",
                    },
                    scope,
                    CLIENT_ID,
                )
            )
            for i, oid in enumerate(oids, start=1)
        ]
        print(f"minted {len(oids)} tokens in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        roster["server_env"] = {
            f"KLASBLIK_{k.upper()}": str(v) for k, v in provider.settings().items()
        }
        yield


async def _set_object_ids(url: str, oids: list[str]) -> None:
    from sqlalchemy import bindparam, update

    from klasblik.server.storage.engine import create_engine
    from klasblik.server.storage.models import Student

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            update(Student.__table__)
            .where(Student.__table__.c.id == bindparam("sid"))
            .values(m365_id=bindparam("oid")),
            [{"sid": i, "oid": oid} for i, oid in enumerate(oids, start=1)],
        )
    await engine.dispose()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
