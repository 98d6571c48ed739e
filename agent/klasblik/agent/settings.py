"""Every agent setting, declared once, with its flag, environment variable and help.

Precedence: command-line flag, then environment (``KLASBLIK_AGENT_<NAME>``), then the
TOML file (``--config`` or ``KLASBLIK_AGENT_CONFIG``), then the default. Each value is
checked at start; a bad one stops the agent with a message that names the setting.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from klasblik.agent.device import default_state_dir, load_device_id, signed_in_upn
from klasblik.protocol.errors import KlasblikError

__all__ = [
    "AGENT_SETTINGS",
    "AgentConfigError",
    "AgentSetting",
    "AgentSettings",
    "load_agent_settings",
    "machine_policy",
]

ENCODING_CHOICES = ("jpeg", "webp", "server")
LANGUAGES = ("nl", "en")
INDICATOR_CHOICES = ("auto", "x11", "tk")
MONITOR_CHOICES = ("all", "active", "primary")
LOG_LEVELS = ("debug", "info", "warning", "error")


class AgentConfigError(KlasblikError, ValueError):
    """A setting has a value the agent cannot use; the message names the setting."""

    code = "invalid_setting"


@dataclass(frozen=True)
class AgentSetting:
    name: str
    help: str
    default: Any = None
    required: bool = False
    parse: Callable[[Any], Any] = str
    secret: bool = False
    #: a switch: the flag takes no value (``--account-from-upn``)
    switch: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "KLASBLIK_AGENT_" + self.name.upper()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value.strip()


def _server_url(value: Any) -> str:
    url = _text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"must start with wss:// (or ws:// on loopback), got {url!r}")
    if not parts.hostname:
        raise ValueError(f"has no host name: {url!r}")
    if parts.scheme == "ws" and not _is_loopback(parts.hostname):
        raise ValueError(
            "plain ws:// would send the enrollment token and screens unencrypted; "
            f"use wss:// for {parts.hostname} (ws:// is only for 127.0.0.1/localhost)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(value: Any) -> str:
    token = _text(value)
    if not token:
        raise ValueError("must not be empty")
    if any(c.isspace() for c in token):
        raise ValueError("must not contain spaces")
    return token


def _account(value: Any) -> str:
    account = _text(value)
    if not account:
        raise ValueError("must not be empty (the Microsoft 365 username of the student)")
    if any(c.isspace() for c in account) or len(account) > 256:
        raise ValueError(f"must be a username without spaces, at most 256 characters: {account!r}")
    return account


def _domain(value: Any) -> str:
    domain = _text(value).lstrip("@").lower()
    if not domain or "." not in domain or any(c.isspace() or c in "@/\\" for c in domain):
        raise ValueError(f"must be a domain name such as school.example, got {value!r}")
    return domain


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _device_id(value: Any) -> str:
    dev = _text(value)
    if not 1 <= len(dev) <= 128 or not dev.isprintable():
        raise ValueError("must be 1 to 128 printable characters")
    return dev


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def _seconds(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if not 1 <= number <= 3600:
        raise ValueError("must be between 1 and 3600 seconds")
    return number


def _path(value: Any) -> Path:
    # %LOCALAPPDATA% (Windows) and $HOME style variables too: autostart entries pass them as is
    return Path(os.path.expandvars(_text(value))).expanduser()


AGENT_SETTINGS: tuple[AgentSetting, ...] = (
    AgentSetting(
        "server",
        "WebSocket address of the Klasblik server, e.g. wss://klasblik.school.example/ws/agent.",
        required=True,
        parse=_server_url,
    ),
    AgentSetting(
        "token",
        "The school's enrollment token (pushed by device management). "
        "A wrong token is refused by the server.",
        required=True,
        parse=_token,
        secret=True,
    ),
    AgentSetting(
        "account",
        "Microsoft 365 username of the student signed in on this device. "
        "The server accepts only students of its roster.",
        required=True,
        parse=_account,
    ),
    AgentSetting(
        "account_from_upn",
        "Windows: when no account is given, use the signed-in "
        "user's Microsoft 365 username (the UPN of an Entra ID or AD account).",
        default=False,
        parse=_bool,
        switch=True,
    ),
    AgentSetting(
        "account_domain",
        "When no account is given and account_from_upn is off, use the "
        "signed-in local user name plus @ and this domain, e.g. school.example: for Linux "
        "and macOS devices whose local accounts match the Microsoft 365 usernames.",
        parse=_domain,
    ),
    AgentSetting(
        "device_id",
        "Stable id of this device (not personal). Default: a random id "
        "made once and kept in the state folder.",
        parse=_device_id,
    ),
    AgentSetting(
        "state_dir",
        "Folder for the agent's state (the device id). Default: the "
        "per-user state folder of the OS.",
        parse=_path,
    ),
    AgentSetting(
        "m365_client_id",
        "Application (client) id of Klasblik's app registration. With it the agent gets a "
        "Microsoft 365 token for Klasblik's API silently, for the account signed in on "
        "the device (through the OS broker), and sends it as its identity proof. Empty: "
        "no proof (accepted only where the school's policy is token or device).",
        default="",
    ),
    AgentSetting(
        "m365_tenant_id",
        "Directory (tenant) id of the school's Microsoft 365 (with m365_client_id).",
        default="",
    ),
    AgentSetting(
        "m365_authority",
        "Sign-in authority; empty means https://login.microsoftonline.com/TENANT.",
        default="",
    ),
    AgentSetting(
        "m365_scope",
        "Scope of Klasblik's API the token is asked for; empty means "
        "api://CLIENT_ID/Agent.Connect.",
        default="",
    ),
    AgentSetting(
        "device_key",
        "Prove this device with its own key pair (made at first start, kept in the state "
        "folder, readable by this user only). Default: true.",
        default=True,
        parse=_bool,
    ),
    AgentSetting(
        "encoding",
        "Image encoding: jpeg (fastest; see docs/agent.md for the "
        "figures), webp (fewer bytes, more CPU) or server (what the server asks for).",
        default="jpeg",
        parse=_choice(ENCODING_CHOICES),
    ),
    AgentSetting(
        "language",
        "Language of the sign shown on screen while a teacher watches: nl or en.",
        default="nl",
        parse=_choice(LANGUAGES),
    ),
    AgentSetting(
        "indicator",
        "How the watched sign is drawn: auto (X11 on Linux, Tk on Windows and macOS), "
        "x11 or tk. It cannot be switched off: without it the agent does not capture.",
        default="auto",
        parse=_choice(INDICATOR_CHOICES),
    ),
    AgentSetting(
        "monitors",
        "Which monitors a frame shows: all (the whole desktop, side by side), active (the "
        "monitor with the active window) or primary.",
        default="all",
        parse=_choice(MONITOR_CHOICES),
    ),
    AgentSetting(
        "capture_retry_s",
        "Seconds between attempts when the screen cannot be captured.",
        default=10.0,
        parse=_seconds,
    ),
    AgentSetting(
        "log_level",
        "How much to log: debug, info, warning or error.",
        default="info",
        parse=_choice(LOG_LEVELS),
    ),
    AgentSetting(
        "log_file",
        "Append the log to this file instead of standard error "
        "(useful where the agent runs without a console, as pythonw on Windows).",
        parse=_path,
    ),
)

_BY_NAME = {s.name: s for s in AGENT_SETTINGS}


@dataclass(frozen=True)
class AgentSettings:
    server: str
    token: str
    account: str
    account_from_upn: bool
    account_domain: str | None
    device_id: str
    state_dir: Path
    m365_client_id: str
    m365_tenant_id: str
    m365_authority: str
    m365_scope: str
    device_key: bool
    encoding: str
    language: str
    indicator: str
    monitors: str
    capture_retry_s: float
    log_level: str
    log_file: Path | None

    @property
    def log_level_number(self) -> int:
        return int(getattr(logging, self.log_level.upper()))

    def redacted(self) -> dict[str, Any]:
        """The settings for a log line, secrets hidden."""
        return {
            name: (
                "***" if _BY_NAME[name].secret else str(value) if isinstance(value, Path) else value
            )
            for name, value in self.__dict__.items()
        }


POLICY_KEY = r"HKLM\SOFTWARE\Policies\Klasblik\Agent"


#: where the MSI writes the settings it is given (SERVER=, TOKEN=, ...)
INSTALLER_KEY = r"HKLM\SOFTWARE\Klasblik\Agent"

if sys.platform == "win32":

    def _registry_values(path: str) -> dict[str, Any]:
        import winreg

        values: dict[str, Any] = {}
        try:
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path, 0, winreg.KEY_READ)
        except OSError:
            return values
        with key:
            index = 0
            while True:
                try:
                    name, value, _kind = winreg.EnumValue(key, index)
                except OSError:
                    break
                if value not in (None, ""):
                    values[name.lower()] = value if isinstance(value, str) else str(value)
                index += 1
        return values

    def machine_policy() -> dict[str, Any]:
        """Machine-scope settings (only administrators write HKLM): the installer's values
        under INSTALLER_KEY, overridden by Group Policy's under POLICY_KEY."""
        return {
            **_registry_values(r"SOFTWARE\Klasblik\Agent"),
            **_registry_values(r"SOFTWARE\Policies\Klasblik\Agent"),
        }

else:

    def machine_policy() -> dict[str, Any]:
        """No machine policy store outside Windows (the config file is IT's there)."""
        return {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        # Windows PowerShell 5.1 writes UTF-8 with a byte-order mark; TOML has none.
        data = tomllib.loads(raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AgentConfigError(f"config file {path} is not UTF-8: {exc}") from None
    except FileNotFoundError:
        raise AgentConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AgentConfigError(f"config file {path} cannot be read: {exc}") from None
    # Either top-level keys or an [agent] table.
    table = data.get("agent", data)
    if not isinstance(table, dict):
        raise AgentConfigError(f"config file {path}: [agent] must be a table")
    unknown = sorted(set(table) - set(_BY_NAME))
    if unknown:
        raise AgentConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(_BY_NAME)}"
        )
    return dict(table)


def _account_from_upn(
    flags: Mapping[str, Any], env: Mapping[str, str], file_values: Mapping[str, Any]
) -> bool:
    setting = _BY_NAME["account_from_upn"]
    raw = flags.get(setting.name, env.get(setting.env, file_values.get(setting.name, False)))
    try:
        return bool(_bool(raw))
    except ValueError as exc:
        raise AgentConfigError(
            f"setting account_from_upn ({setting.flag}, {setting.env}): {exc}"
        ) from None


def _upn_account(upn_reader: Callable[[], str | None]) -> str:
    upn = upn_reader()
    if not upn:
        raise AgentConfigError(
            "setting account (--account, KLASBLIK_AGENT_ACCOUNT) is required: "
            "account_from_upn could not read a Microsoft 365 username (UPN) for the signed-in "
            "user on this device (it works on Windows with an Entra ID or AD account)"
        )
    try:
        return _account(upn)
    except ValueError as exc:
        raise AgentConfigError(f"setting account from the UPN {upn!r}: {exc}") from None


def _raw(
    name: str, flags: Mapping[str, Any], env: Mapping[str, str], file_values: Mapping[str, Any]
) -> Any:
    setting = _BY_NAME[name]
    return flags.get(name, env.get(setting.env, file_values.get(name)))


def _local_account(domain_raw: Any, user_reader: Callable[[], str]) -> str:
    setting = _BY_NAME["account_domain"]
    try:
        domain = _domain(domain_raw)
        return _account(f"{user_reader()}@{domain}")
    except (ValueError, OSError, KeyError) as exc:
        raise AgentConfigError(
            f"setting account_domain ({setting.flag}, {setting.env}): {exc}"
        ) from None


def load_agent_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    upn_reader: Callable[[], str | None] = signed_in_upn,
    user_reader: Callable[[], str] = getpass.getuser,
    machine_reader: Callable[[], dict[str, Any]] | None = None,
) -> AgentSettings:
    """Merge flags, environment, file, machine policy and defaults; check each value.

    The machine policy (Windows: string values named like the settings under
    ``HKLM\\SOFTWARE\\Klasblik\\Agent``, written by the MSI, and under
    ``HKLM\\SOFTWARE\\Policies\\Klasblik\\Agent``, by Group Policy, which wins) fills in
    whatever the flags, the environment and the file do not set. Raises AgentConfigError.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    file_values = _read_toml(config_file) if config_file is not None else {}
    machine = (machine_reader or machine_policy)()
    unknown = sorted(set(machine) - set(_BY_NAME))
    if unknown:
        raise AgentConfigError(
            f"machine policy {POLICY_KEY}: unknown value(s) {', '.join(unknown)}; "
            f"known: {', '.join(_BY_NAME)}"
        )
    file_values = {**{k: v for k, v in machine.items() if v not in (None, "")}, **file_values}
    values: dict[str, Any] = {}
    for setting in AGENT_SETTINGS:
        where = f"setting {setting.name} ({setting.flag}, {setting.env})"
        if setting.name in flags:
            raw, source = flags[setting.name], "flag"
        elif setting.env in env:
            raw, source = env[setting.env], "environment"
        elif setting.name in file_values:
            raw, source = file_values[setting.name], "config file"
        else:
            raw, source = setting.default, "default"
        if raw is None:
            if setting.name == "account" and _account_from_upn(flags, env, file_values):
                values["account"] = _upn_account(upn_reader)
                continue
            if setting.name == "account" and _raw("account_domain", flags, env, file_values):
                values["account"] = _local_account(
                    _raw("account_domain", flags, env, file_values), user_reader
                )
                continue
            if setting.required:
                raise AgentConfigError(f"{where} is required")
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise AgentConfigError(f"{where} from the {source}: {exc}") from None
    if values["m365_client_id"] and not (values["m365_tenant_id"] or values["m365_authority"]):
        raise AgentConfigError(
            "setting m365_tenant_id (--m365-tenant-id, KLASBLIK_AGENT_M365_TENANT_ID) is "
            "required with m365_client_id"
        )
    if values["state_dir"] is None:
        values["state_dir"] = default_state_dir()
    if values["device_id"] is None:
        try:
            values["device_id"] = load_device_id(values["state_dir"])
        except OSError as exc:
            raise AgentConfigError(
                f"setting state_dir: cannot keep the device id in {values['state_dir']}: {exc}"
            ) from None
    return AgentSettings(**values)
