"""``klasblik agents policy``, ``klasblik agents google-map`` and ``klasblik agents
forget-devices``: what IT sets about agent identity (docs/agent.md, Identity)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, select

from klasblik.server.settings import Settings
from klasblik.server.storage.models import AgentDevice, GoogleAccount, School, Student

__all__ = ["add_agents_parser", "load_google_map", "run_agents_command"]

T = TypeVar("T")
_POLICIES = ("verified", "device", "token", "default")
_EMAIL_HEADERS = ("google", "google_email", "google_address", "email")
_USER_HEADERS = ("username", "m365", "m365_username", "upn", "account")


def add_agents_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agents = sub.add_parser("agents", help="agent identity: policies, Google mapping, devices")
    asub = agents.add_subparsers(dest="agents_command", required=True)
    pol = asub.add_parser(
        "policy",
        help="set how a school's agents prove who they are: verified (identity token), "
        "device (or an enrolled device key), token (the enrollment token alone, tiles "
        "marked unverified), default (the agent_identity setting)",
    )
    pol.add_argument("brin", help="the school's BRIN (four characters)")
    pol.add_argument("mode", choices=_POLICIES)
    pol.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    gmap = asub.add_parser(
        "google-map",
        help="load the Google address -> Microsoft 365 username mapping from a CSV file "
        "(columns google_email, username); replaces the whole mapping, all or nothing",
    )
    gmap.add_argument("file", help="the CSV file (UTF-8, comma- or semicolon-separated)")
    gmap.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    forget = asub.add_parser(
        "forget-devices",
        help="remove a student's registered device keys (a lost or handed-on device): "
        "the next device must enrol again with a verified identity",
    )
    forget.add_argument("username", help="the student's Microsoft 365 username")
    forget.add_argument("--config", help="TOML settings file (see docs/configuration.md)")


async def _with_db(settings: Settings, job: Callable[[Any], Awaitable[T]]) -> T:
    from klasblik.server.storage.engine import with_database

    return await with_database(settings.database_url, job)


def run_agents_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.agents_command == "policy":
        return asyncio.run(_with_db(settings, lambda sm: _policy(sm, args.brin, args.mode)))
    if args.agents_command == "google-map":
        try:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"klasblik: cannot read {args.file}: {exc}", file=sys.stderr)
            return 1
        return asyncio.run(_with_db(settings, lambda sm: _google_map(sm, text)))
    return asyncio.run(_with_db(settings, lambda sm: _forget(sm, args.username)))


async def _policy(sm: Any, brin: str, mode: str) -> int:
    async with sm() as session, session.begin():
        school = await session.scalar(select(School).where(School.brin == brin.upper()))
        if school is None:
            print(f"klasblik: no school with BRIN {brin}", file=sys.stderr)
            return 1
        school.agent_identity = None if mode == "default" else mode
    print(f"{brin.upper()}: agent identity {mode} (running servers apply it within 30 s)")
    return 0


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    keys = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header]
    for name in names:
        if name in keys:
            return keys.index(name)
    return None


async def load_google_map(sm: Any, text: str) -> tuple[int, list[str]]:
    """Replace the mapping with the CSV's rows; (rows loaded, errors). Nothing changes
    when there is any error."""
    dialect = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=dialect))
    if not rows:
        return 0, ["the file is empty"]
    email_col, user_col = _column(rows[0], _EMAIL_HEADERS), _column(rows[0], _USER_HEADERS)
    if email_col is None or user_col is None:
        return 0, ["line 1: the header needs a google_email and a username column"]
    pairs: dict[str, str] = {}
    errors: list[str] = []
    for line, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) <= max(email_col, user_col):
            errors.append(f"line {line}: too few fields")
            continue
        email, user = cells[email_col].strip().lower(), cells[user_col].strip().lower()
        if "@" not in email or "@" not in user:
            errors.append(f"line {line}: {email!r} or {user!r} is not an address")
        elif email in pairs:
            errors.append(f"line {line}: {email} appears twice")
        else:
            pairs[email] = user
    async with sm() as session, session.begin():
        found = await session.execute(
            select(func.lower(Student.username), Student.id).where(
                func.lower(Student.username).in_(set(pairs.values()))
            )
        )
        ids = {name: sid for name, sid in found.all()}
        errors += [
            f"{user}: not a student of the roster" for user in set(pairs.values()) - set(ids)
        ]
        if errors:
            await session.rollback()
            return 0, errors
        await session.execute(delete(GoogleAccount))
        session.add_all(GoogleAccount(email=e, student_id=ids[u]) for e, u in pairs.items())
    return len(pairs), []


async def _google_map(sm: Any, text: str) -> int:
    loaded, errors = await load_google_map(sm, text)
    if errors:
        print("klasblik: nothing loaded:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{loaded} Google addresses mapped")
    return 0


async def _forget(sm: Any, username: str) -> int:
    async with sm() as session, session.begin():
        student = await session.scalar(
            select(Student).where(func.lower(Student.username) == username.strip().lower())
        )
        if student is None:
            print(f"klasblik: no student {username}", file=sys.stderr)
            return 1
        result = await session.execute(
            delete(AgentDevice).where(AgentDevice.student_id == student.id)
        )
    print(f"{username}: {getattr(result, 'rowcount', 0)} device key(s) removed")
    return 0
