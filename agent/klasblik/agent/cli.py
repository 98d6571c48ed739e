"""``klasblik-agent``: the desktop agent's command line (also ``klasblik agent ...``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from klasblik.agent import native_host
from klasblik.agent.client import AgentClient
from klasblik.agent.indicator import CHILD_FLAG
from klasblik.agent.indicator import main as indicator_main
from klasblik.agent.native_host import is_native_host_call
from klasblik.agent.settings import (
    AGENT_SETTINGS,
    AgentConfigError,
    AgentSettings,
    load_agent_settings,
)

__all__ = ["build_parser", "default_config_path", "main", "settings_from_args"]

log = logging.getLogger("klasblik.agent")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every setting from AGENT_SETTINGS becomes a flag."""
    parser = argparse.ArgumentParser(
        prog="klasblik-agent",
        description="Klasblik desktop agent: shows this screen to the student's own teacher, "
        "only while the teacher looks. Each flag can also come from the environment "
        "variable named in its help, or from the TOML file given with --config.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file with settings (top-level keys or an [agent] table); "
        "env KLASBLIK_AGENT_CONFIG. Default, when it exists: /etc/klasblik/agent.toml (Linux), "
        "/Library/Application Support/Klasblik/agent.toml (macOS), "
        "%%ProgramData%%\\Klasblik\\agent.toml (Windows). Flags and environment override it.",
    )
    for setting in AGENT_SETTINGS:
        extra = (
            " Required."
            if setting.required
            else (f" Default: {setting.default}." if setting.default is not None else "")
        )
        if setting.switch:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                default=None,
                action="store_const",
                const=True,
                help=f"{setting.help} Env {setting.env}=true.",
            )
            continue
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            default=None,
            metavar=setting.name.upper(),
            help=f"{setting.help}{extra} Env {setting.env}.",
        )
    return parser


def default_config_path(platform: str = sys.platform) -> Path:
    """The settings file IT pushes, read when it exists and no other file is named."""
    if platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Klasblik" / "agent.toml"
    if platform == "darwin":
        return Path("/Library/Application Support/Klasblik/agent.toml")
    return Path("/etc/klasblik/agent.toml")


def settings_from_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> AgentSettings:
    """Parse ``argv`` and merge with ``env`` and the config file; may raise AgentConfigError."""
    args = build_parser().parse_args(argv)
    config = args.config
    if config is None and env.get("KLASBLIK_AGENT_CONFIG"):
        config = Path(env["KLASBLIK_AGENT_CONFIG"])
    if config is None and default_config_path().is_file():
        config = default_config_path()
    flags = {s.name: getattr(args, s.name) for s in AGENT_SETTINGS}
    return load_agent_settings(flags, env, config)


async def _run(client: AgentClient) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt instead
            pass
    await client.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until SIGINT/SIGTERM. Exit code 2 on a bad setting."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [CHILD_FLAG]:  # the watched indicator's own process (frozen builds)
        return indicator_main(args[1:])
    if is_native_host_call(args):  # started by Chrome/Edge for the Klasblik extension
        return native_host.serve()
    try:
        settings = settings_from_args(args, os.environ)
    except AgentConfigError as exc:
        print(f"klasblik-agent: error: {exc}", file=sys.stderr)
        return 2
    try:
        if settings.log_file is not None:
            settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            level=settings.log_level_number,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            filename=settings.log_file,
            encoding="utf-8",
        )
    except OSError as exc:
        print(
            f"klasblik-agent: error: setting log_file: cannot write {settings.log_file}: {exc}",
            file=sys.stderr,
        )
        return 2
    log.info("starting with %s", settings.redacted())
    try:
        asyncio.run(_run(AgentClient(settings)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
