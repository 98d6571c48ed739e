"""The ``klasblik purge``, ``klasblik student export|erase`` and ``klasblik privacy
documents|breach`` commands."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from klasblik.server.access import audit
from klasblik.server.retention.joblock import job_lock
from klasblik.server.retention.purge import PurgeReport, purge
from klasblik.server.retention.schedule import NIGHTLY
from klasblik.server.retention.subject_rights import UnknownStudent, erase_student, export_student
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs import open_blob_store
from klasblik.server.storage.blobs.base import BlobStoreError
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database

__all__ = ["ProgressPrinter", "add_parsers", "run"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge_p = sub.add_parser(
        "purge",
        help="run the retention purge now: expired sessions, old audit entries, records of "
        "an ended school year, orphaned and expired blobs",
    )
    purge_p.add_argument("--config", help="TOML settings file")
    purge_p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be removed and remove nothing",
    )
    student_p = sub.add_parser("student", help="data-subject rights for one student")
    st_sub = student_p.add_subparsers(dest="student_command", required=True)
    exp = st_sub.add_parser("export", help="write everything held about a student to a zip file")
    exp.add_argument("username", help="the student's Microsoft 365 username")
    exp.add_argument("--out", required=True, help="the zip file to write (must not exist)")
    exp.add_argument("--config")
    exp.add_argument(
        "--reason",
        default="",
        help="include the stored screenshot and tab list, for this stated reason (logged)",
    )
    era = st_sub.add_parser(
        "erase",
        help="erase a student's record, class memberships and stored screenshot and tabs; "
        "this cannot be undone (an audit entry records that it happened)",
    )
    era.add_argument("username", help="the student's Microsoft 365 username")
    era.add_argument("--yes", action="store_true", help="confirm: really erase")
    era.add_argument("--config")
    priv = sub.add_parser(
        "privacy",
        help="write the privacy paperwork from the actual settings and data (DPIA aid, "
        "art. 30 register entry, information for parents and students, privacy and "
        "security annex), or a breach-support export of a time window",
    )
    pv_sub = priv.add_subparsers(dest="privacy_command", required=True)
    docs = pv_sub.add_parser("documents", help="write every document, in Dutch and English")
    docs.add_argument("--out", required=True, help="the folder to write into")
    docs.add_argument("--config")
    breach = pv_sub.add_parser(
        "breach",
        help="a zip of the audit entries, sign-in sessions and remote-lesson periods of a "
        "time window, for the 72-hour duty to report (docs/operations.md)",
    )
    breach.add_argument("--since", required=True, help="start, ISO 8601 (UTC if no zone)")
    breach.add_argument("--until", required=True, help="end, ISO 8601 (UTC if no zone)")
    breach.add_argument("--out", required=True, help="the zip file to write (must not exist)")
    breach.add_argument("--config")


class ProgressPrinter:
    """Progress lines on stderr, at most one per step every ``every_s`` seconds."""

    def __init__(self, out: TextIO | None = None, every_s: float = 1.0) -> None:
        self.out = out  # None: whatever sys.stderr is when a line is printed
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def __call__(self, step: str, done: int) -> None:
        now = time.monotonic()
        if now - self._last.get(step, float("-inf")) >= self.every_s:
            self._last[step] = now
            print(f"purge: {step}: {done}", file=self.out or sys.stderr, flush=True)


def _actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except Exception:  # no user name in this environment
        return "cli"


def _print_report(report: PurgeReport, listing: bool) -> None:
    if listing:
        if report.school_year_boundary:
            print(
                f"school year ended: records created before "
                f"{report.school_year_boundary.isoformat()} go"
            )
        for name in report.students:
            print(f"student record: {name}")
        for name in report.staff:
            print(f"staff record: {name}")
        for name in report.orphaned_blobs:
            print(f"orphaned blob: {name}")
        for name in report.expired_blobs:
            print(f"expired blob: {name}")
        if report.audit_entries:
            print(
                f"audit entries before {report.audit_cutoff.isoformat() if report.audit_cutoff else '?'}: "
                f"{report.audit_entries}"
            )
        if report.sessions:
            print(f"expired sessions: {report.sessions}")
    print(report.summary())


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    store = open_blob_store(
        settings.blob_store,
        settings.azure_connection_string,
        settings.azure_account_url,
        settings.azure_client_id,
    )
    try:
        await upgrade_database(engine)
        sm = sessionmaker(engine)
        if args.command == "purge":
            async with job_lock(engine, NIGHTLY) as got:
                if not got:
                    print(
                        "klasblik: a purge is running elsewhere right now; try later",
                        file=sys.stderr,
                    )
                    return 1
                report = await purge(
                    sm, store, settings, dry_run=args.dry_run, progress=ProgressPrinter()
                )
            await audit.record(
                sm,
                _actor(),
                audit.Actions.PURGE_MANUAL,
                "",
                ("dry run: " if args.dry_run else "") + report.summary(),
            )
            _print_report(report, listing=args.dry_run)
            return 0
        if args.command == "privacy":
            return await _privacy(args, settings, sm)
        if args.student_command == "export":
            out = Path(args.out)
            if await asyncio.to_thread(out.exists):
                print(f"klasblik: {out} exists; choose a new file name", file=sys.stderr)
                return 2
            data = await export_student(
                sm,
                store,
                args.username,
                _actor(),
                settings=settings,
                latest_reason=args.reason or None,
            )
            await asyncio.to_thread(out.write_bytes, data)
            print(f"wrote {out} ({len(data)} bytes)")
            return 0
        if not args.yes:
            print("klasblik: erasing cannot be undone; add --yes to confirm", file=sys.stderr)
            return 2
        result = await erase_student(sm, store, args.username, _actor())
        print(
            f"erased student {result.student_id}: record, {result.class_memberships} class "
            f"membership(s), {result.blobs_deleted} stored blob(s). If the server is running, "
            "the student's device stays connected until it reconnects; the admin API "
            "disconnects it at once."
        )
        return 0
    except UnknownStudent as exc:
        print(f"klasblik: {exc}", file=sys.stderr)
        return 1
    except BlobStoreError as exc:
        print(
            f"klasblik: blob store unavailable: {exc}; nothing is lost, run it again",
            file=sys.stderr,
        )
        return 1
    finally:
        await store.close()
        await engine.dispose()


def _when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _privacy(args: argparse.Namespace, settings: Settings, sm: Any) -> int:
    from klasblik.server.retention.documents import breach_export, write_documents

    if args.privacy_command == "documents":
        written = await write_documents(sm, settings, Path(args.out), _actor())
        for path in written:
            print(f"wrote {path}")
        return 0
    out = Path(args.out)
    if await asyncio.to_thread(out.exists):
        print(f"klasblik: {out} exists; choose a new file name", file=sys.stderr)
        return 2
    try:
        since, until = _when(args.since), _when(args.until)
        data = await breach_export(sm, since, until, _actor())
    except ValueError as exc:
        print(f"klasblik: {exc}", file=sys.stderr)
        return 2
    await asyncio.to_thread(out.write_bytes, data)
    print(f"wrote {out} ({len(data)} bytes)")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
