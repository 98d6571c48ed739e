"""Roster-sync benchmark for a school board: 40 schools, 20,000 students, synced from the
local Graph emulator (Microsoft's documented shapes, paging at ``--page-size``) through the
real Graph client, first a full sync, then a delta sync after a day's worth of changes
(accounts disabled and deleted, students moved between classes, a class whose term ended).
Prints Graph requests and seconds per sync; asserts nothing.

    .venv/bin/python -m bench.roster_sync [--schools 40] [--students 20000]
        [--class-size 25] [--page-size 100] [--latency-ms 0] [--database-url URL]

Without ``--database-url`` it runs on SQLite in a temporary folder; pass a
``postgresql+asyncpg://...`` URL (an empty database) to measure PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.graph_emulator import GraphEmulator, start_graph_emulator

from klasblik.server.roster.graph import GraphClient
from klasblik.server.roster.sync import sync_roster
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database


def _board(graph: GraphEmulator, schools: int, students: int, class_size: int) -> list[str]:
    """Fill the emulator; return the class ids."""
    per_school = students // schools
    classes_per_school = max(1, per_school // class_size)
    rng = random.Random(7)
    class_ids: list[str] = []
    for n in range(schools):
        brin = f"{10 + n // 26:02d}{chr(65 + n % 26)}A"
        sid = graph.add_school(f"School {n}", f"{brin}00")
        for c in range(classes_per_school):
            teacher = graph.add_user(
                f"t{n}.{c}@board.example", "Docent", f"Nummer {c}", "teacher", sid
            )
            kids = [
                graph.add_user(
                    f"s{n}.{c}.{i}@board.example",
                    f"Kind{i}",
                    rng.choice(["de Vries", "Jansen", "van Dijk", "Bakker"]),
                    "student",
                    sid,
                )
                for i in range(class_size)
            ]
            class_ids.append(graph.add_class(f"Groep {c}", sid, kids, [teacher]))
    return class_ids


def _a_day_of_changes(graph: GraphEmulator, class_ids: list[str]) -> Counter[str]:
    rng = random.Random(11)
    done: Counter[str] = Counter()
    students = [u for u in graph.users.values() if u.role == "student"]
    for u in rng.sample(students, 40):
        graph.disable_user(u.id)
        done["disabled"] += 1
    for u in rng.sample([u for u in students if u.enabled], 20):
        graph.delete_user(u.id)
        done["deleted"] += 1
    for _ in range(60):
        a, b = rng.sample(class_ids, 2)
        members = [m for m in graph.classes[a].members if m not in graph.classes[a].teachers]
        if members:
            uid = rng.choice(members)
            graph.remove_member(a, uid)
            graph.add_member(b, uid)
            done["moved"] += 1
    graph.set_term(class_ids[0], {"displayName": "2025", "endDate": "2026-07-10"})
    done["ended class"] += 1
    return done


async def main(args: argparse.Namespace) -> None:
    graph, runner = await start_graph_emulator(
        GraphEmulator(page_size=args.page_size, latency_s=args.latency_ms / 1000)
    )
    t0 = time.perf_counter()
    class_ids = _board(graph, args.schools, args.students, args.class_size)
    print(
        f"board: {args.schools} schools, {len(graph.users)} accounts, {len(class_ids)} classes "
        f"(emulator filled in {time.perf_counter() - t0:.1f} s); page size {args.page_size}, "
        f"{args.latency_ms} ms per Graph answer"
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        engine = create_engine(url)
        await upgrade_database(engine)
        sm = sessionmaker(engine)

        async def token() -> str:
            return graph.token

        today = dt.date(2026, 12, 1)
        async with GraphClient(graph.base_url, token) as client:
            for label in ("full sync", "delta sync"):
                if label == "delta sync":
                    changes = _a_day_of_changes(graph, class_ids)
                    print(
                        "changes made in Microsoft 365: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(changes.items()))
                    )
                n0 = len(graph.requests)
                t0 = time.perf_counter()
                marks: dict[str, float] = {}

                def progress(message: str, marks: dict[str, float] = marks) -> None:
                    if message == "writing the roster":
                        marks["write"] = time.perf_counter()

                summary = await sync_roster(sm, client, progress, today=today)
                took = time.perf_counter() - t0
                read = marks.get("write", t0) - t0
                kinds = Counter(
                    path.split("?")[0].rsplit("/", 1)[-1] for _t, path, _s in graph.requests[n0:]
                )
                print(
                    f"{label}: {took:.1f} s (reading Graph {read:.1f} s, writing "
                    f"{took - read:.1f} s), {len(graph.requests) - n0} Graph requests "
                    f"({', '.join(f'{k} {v}' for k, v in kinds.most_common(6))}); "
                    f"{summary.text()}"
                )
        await engine.dispose()
    await runner.cleanup()
    print("command: .venv/bin/python -m bench.roster_sync " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--class-size", type=int, default=25)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="added to each Graph answer (real Graph: ~100)"
    )
    asyncio.run(main(parser.parse_args()))
