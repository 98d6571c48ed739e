"""Roster benchmark: a first and a second (delta) sync of one school against the local
Graph emulator, and a CSV import, on SQLite. Prints figures; asserts nothing.

    .venv/bin/python -m bench.roster [--students 1200] [--classes 48] [--page-size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.graph_emulator import GraphEmulator, start_graph_emulator

from klasblik.server.roster.csv_import import import_students_csv
from klasblik.server.roster.graph import GraphClient
from klasblik.server.roster.sync import sync_roster
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database


def _school(graph: GraphEmulator, students: int, classes: int) -> None:
    sid = graph.add_school("De Regenboog", "12AB00")
    per = max(1, students // classes)
    for c in range(classes):
        teacher = graph.add_user(f"t{c}@school.example", "Docent", f"Nummer {c}", "teacher", sid)
        kids = [
            graph.add_user(f"s{c}.{i}@school.example", f"Kind{i}", "van Dijk", "student", sid)
            for i in range(per)
        ]
        graph.add_class(f"Groep {c}", sid, kids, [teacher])


async def main(students: int, classes: int, page_size: int) -> None:
    graph, runner = await start_graph_emulator(GraphEmulator(page_size=page_size))
    _school(graph, students, classes)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await upgrade_database(engine)
        sm = sessionmaker(engine)

        async def token() -> str:
            return graph.token

        async with GraphClient(graph.base_url, token) as client:
            for label in ("first sync", "second sync (delta, no changes)"):
                n0 = len(graph.requests)
                t0 = time.perf_counter()
                summary = await sync_roster(sm, client)
                dt = time.perf_counter() - t0
                print(
                    f"{label}: {dt:.2f} s, {len(graph.requests) - n0} Graph requests; {summary.text()}"
                )
        rows = [
            "Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Groep;M365 gebruikersnaam;BRIN;Vestiging"
        ]
        rows += [
            f"{i};Kind{i};de;Vries;C{i % classes};csv{i}@school.example;34CD;00"
            for i in range(students)
        ]
        data = ("\n".join(rows) + "\n").encode()
        t0 = time.perf_counter()
        result = await import_students_csv(sm, data)
        print(f"CSV import of {students} lines: {time.perf_counter() - t0:.2f} s; {result.text()}")
        await engine.dispose()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=1200)
    parser.add_argument("--classes", type=int, default=48)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.students, args.classes, args.page_size))
