"""``klasblik roster sync`` and ``klasblik roster import FILE.csv``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from klasblik.server.settings import Settings

__all__ = ["add_roster_parser", "run_roster_command"]

T = TypeVar("T")


def add_roster_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    roster = sub.add_parser("roster", help="school roster: sync from Microsoft 365, import CSV")
    rsub = roster.add_subparsers(dest="roster_command", required=True)
    sync = rsub.add_parser(
        "sync",
        help="read schools, classes, students and teachers from Microsoft 365 now; staff "
        "disabled or removed there lose access (their sessions end)",
    )
    sync.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    imp = rsub.add_parser(
        "import",
        help="import students from the student administration's CSV export, all or nothing "
        "(see docs/microsoft365.md for the columns)",
    )
    imp.add_argument("file", help="the CSV file (UTF-8, comma- or semicolon-separated)")
    imp.add_argument("--config", help="TOML settings file (see docs/configuration.md)")


async def _with_db(settings: Settings, job: Callable[[Any], Awaitable[T]]) -> T:
    from klasblik.server.storage.engine import with_database

    return await with_database(settings.database_url, job)


def run_roster_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.roster_command == "sync":
        return _sync(settings)
    return _import(settings, Path(args.file))


def _sync(settings: Settings) -> int:
    from klasblik.server.auth.m365.client import M365Client, M365Error
    from klasblik.server.roster.graph import GraphError
    from klasblik.server.roster.jobs import graph_for, require_tenant, run_sync
    from klasblik.server.roster.sync import SyncBusy, SyncSummary

    def progress(message: str) -> None:
        print(f"roster sync: {message}", flush=True)

    async def job(sm: Any) -> SyncSummary:
        require_tenant(settings)
        m365 = M365Client(settings)
        try:
            async with graph_for(settings, m365) as graph:
                summary = await run_sync(sm, graph, None, progress, settings)
            if m365.app_roles is not None:
                from klasblik.server.roster.health import permission_report

                report = permission_report(settings, m365.app_roles)
                progress(f"app permissions: {report.text()}")
            return summary
        finally:
            m365.close()

    try:
        summary = asyncio.run(_with_db(settings, job))
    except (GraphError, M365Error, SyncBusy, ValueError) as exc:
        print(f"klasblik: roster sync failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    for warning in summary.warnings:
        print(f"roster sync: warning: {warning}")
    print(f"roster sync done: {summary.text()}")
    return 0


def _import(settings: Settings, path: Path) -> int:
    from klasblik.server.roster.csv_import import CsvImportError, ImportSummary, import_students_csv

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"klasblik: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2

    async def job(sm: Any) -> ImportSummary:
        return await import_students_csv(sm, data)

    try:
        summary = asyncio.run(_with_db(settings, job))
    except CsvImportError as exc:
        print(f"klasblik: {path} was not imported; nothing changed:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {path.name}: {error}", file=sys.stderr)
        return 1
    print(f"imported {path.name}: {summary.text()}")
    return 0
