"""The ``klasblik`` command: ``serve``, ``db upgrade``, ``roster sync|import``, ``purge``,
``student export|erase``, ``privacy documents|breach``, ``agents policy|google-map|forget-devices``,
``agent`` (the desktop agent)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from klasblik.server.auth.agent_cli import add_agents_parser, run_agents_command
from klasblik.server.logs import configure_logging
from klasblik.server.roster.cli import add_roster_parser, run_roster_command
from klasblik.server.settings import Settings, SettingsError, load_settings

__all__ = ["main", "serve"]

log = logging.getLogger("klasblik")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klasblik",
        description="Klasblik: a teacher sees, live, what their own students have on screen.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve_p = sub.add_parser("serve", help="run the server (dashboard, agent endpoint, jobs)")
    serve_p.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    serve_p.add_argument(
        "--host",
        help="address to listen on; defaults to 127.0.0.1, which means only this machine "
        "can connect",
    )
    serve_p.add_argument("--port", type=int, help="port to listen on (default 8080; 0 = any free)")
    serve_p.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: demo school and simulated students; the demo sign-in works only "
        "from this machine. Never use it with real data.",
    )

    db_p = sub.add_parser("db", help="database maintenance")
    db_sub = db_p.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply database migrations (serve does this too)")
    up.add_argument("--config")

    from klasblik.server.retention.cli import add_parsers as add_retention_parsers

    add_retention_parsers(sub)

    sub.add_parser(
        "agent", help="run the desktop agent (see `klasblik agent --help`)", add_help=False
    )
    add_roster_parser(sub)
    add_agents_parser(sub)
    return parser


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    clean = {k: v for k, v in overrides.items() if v is not None and v is not False}
    return load_settings(config_file=getattr(args, "config", None), overrides=clean)


def demo_banner(app: web.Application, host: str, port: int) -> str:
    """What demo mode prints: how to sign in (teacher, IT admin), the enrollment token and
    a ready command that connects a real desktop agent as the demo student left free."""
    from klasblik.server.keys import DEMO, SETTINGS

    demo = app[DEMO]
    lines = [
        "Demo mode: simulated students are connected. Sign in at "
        f"http://{host}:{port}/signin with a demo button (works from this machine only):",
        "  'Demo sign-in' is a teacher with two classes; 'Demo sign-in as IT admin' opens",
        "  the location and audit pages.",
        f"Demo enrollment token: {app[SETTINGS].enrollment_token}",
    ]
    if demo.free_account:
        lines += [
            "Connect a real desktop agent on this machine as the demo student without one:",
            f"  .venv/bin/klasblik agent --server ws://127.0.0.1:{port}/ws/agent "
            f"--token {app[SETTINGS].enrollment_token} --account {demo.free_account}",
        ]
    lines.append(
        "On a server without a screen, forward the port and open it on your own computer: "
        f"ssh -L {port}:127.0.0.1:{port} user@server, then http://127.0.0.1:{port}/"
    )
    return "\n".join(lines)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT; then close every connection and resource cleanly."""
    from klasblik.server.app import init_app

    app = init_app(settings)
    from klasblik.server.web.ops import AccessLogger

    access: dict[str, Any] = (
        {"access_log": logging.getLogger("klasblik.access"), "access_log_class": AccessLogger}
        if settings.access_log
        else {"access_log": None}
    )
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5, **access)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"Klasblik is running. Dashboard: http://{host}:{port}/", flush=True)
    if settings.demo:
        from klasblik.server.demo.mode import start_demo_agents

        await start_demo_agents(app, f"ws://127.0.0.1:{port}/ws/agent")
        print(demo_banner(app, host, port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        print("Klasblik is stopping.", flush=True)
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        from klasblik.agent.cli import main as agent_main

        return int(agent_main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = _settings(args, host=args.host, port=args.port, demo=args.demo)
        else:
            settings = _settings(args)
    except SettingsError as exc:
        print(f"klasblik: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        try:
            asyncio.run(serve(settings))
        except Exception:  # at start: the database did not answer in time, a port is taken
            log.exception("klasblik serve stopped")  # one line, traceback included
            return 1
        return 0
    if args.command == "roster":
        return run_roster_command(args, settings)
    if args.command == "agents":
        return run_agents_command(args, settings)
    if args.command == "db":
        from klasblik.server.storage.engine import create_engine, upgrade_database

        async def upgrade() -> None:
            engine = create_engine(settings.database_url)
            await upgrade_database(engine)
            await engine.dispose()

        asyncio.run(upgrade())
        print("database is at the newest schema")
        return 0
    if args.command in ("purge", "student", "privacy"):
        from klasblik.server.retention.cli import run as run_retention

        return run_retention(args, settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
