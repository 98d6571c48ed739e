"""Every server setting, declared once, with its default and help text.

Settings come from, in order of precedence: keyword overrides (tests, CLI flags), the
environment (``KLASBLIK_<NAME>``), and an optional TOML file (``KLASBLIK_CONFIG`` or
``--config``). Each value is validated at start; a bad one stops the server with a message
that names the setting. ``docs/configuration.md`` documents each one, and a test fails when
it does not.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from klasblik.protocol.errors import KlasblikError

__all__ = ["SETTINGS", "Setting", "Settings", "SettingsError", "load_settings"]


class SettingsError(KlasblikError, ValueError):
    """A setting has a value Klasblik cannot use; the message names the setting."""

    code = "invalid_setting"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    check: Callable[[Any], str | None] | None = None
    secret: bool = False

    @property
    def env(self) -> str:
        return "KLASBLIK_" + self.name.upper()


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("must be a number") from None


def _cidrs(text: str) -> tuple[str, ...]:
    out = []
    for part in text.replace(",", " ").split():
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network (CIDR)") from None
    return tuple(out)


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo} and {hi}"

    return check


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else "must be one of " + ", ".join(allowed)

    return check


def _hhmm(text: str) -> str:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or int(hh) > 23 or int(mm) > 59:
        raise ValueError("must be a time HH:MM (00:00 to 23:59)")
    return f"{int(hh):02d}:{int(mm):02d}"


def _tz(text: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Amsterdam") from None
    return text.strip()


def _year_end(text: str) -> str:
    import datetime as dt

    value = text.strip()
    try:
        if len(value) == 5:
            dt.date(2024, int(value[:2]), int(value[3:]))  # a leap year accepts 02-29
            if value[2] != "-":
                raise ValueError
        else:
            dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be MM-DD (every year) or YYYY-MM-DD (one date)") from None
    return value


def _db_url(value: Any) -> str | None:
    if value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return None
    return "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"


def _redis_url(value: Any) -> str | None:
    if not value or value.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be empty (one instance) or start with redis://, rediss:// or unix://"


def _blob_url(value: Any) -> str | None:
    if value.startswith(("file:", "azure:")):
        return None
    return "must be file:PATH (a local folder) or azure:CONTAINER (with azure_connection_string)"


def _https_url(value: Any) -> str | None:
    if not value or value.startswith("https://"):
        return None
    return "must be an https:// address"


def _graph_url(value: Any) -> str | None:
    if value.startswith(("https://", "http://127.0.0.1:", "http://localhost:")):
        return None
    return "must be an https:// address"


#: Microsoft 365 sign-in and roster sync (docs/microsoft365.md).
M365_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "m365_tenant_id",
        "",
        "Directory (tenant) id of the school's Microsoft 365. Only "
        "accounts of this tenant can sign in. Empty: Microsoft 365 sign-in and sync are off.",
    ),
    Setting("m365_client_id", "", "Application (client) id of Klasblik's app registration."),
    Setting(
        "m365_client_secret",
        "",
        "Client secret of the app registration (used for "
        "sign-in and for reading rosters from Microsoft Graph).",
        secret=True,
    ),
    Setting(
        "m365_authority",
        "",
        "Sign-in authority; empty means "
        "https://login.microsoftonline.com/TENANT/v2.0. Must be https.",
        str,
        _https_url,
    ),
    Setting(
        "m365_ca_file",
        "",
        "PEM file of the certificate authorities to trust for the "
        "sign-in authority and Graph instead of the system's (for a TLS-inspecting proxy). "
        "Empty: the system's.",
    ),
    Setting(
        "m365_admin_role",
        "Klasblik.Admin",
        "App role (value) that makes a signed-in "
        "staff member an IT admin. Being IT admin does not grant viewing any student.",
    ),
    Setting(
        "m365_admin_group",
        "",
        "Object id of a Microsoft 365 group whose members are IT "
        "admins (needs the groups claim in the ID token); empty: only the app role counts.",
    ),
    Setting(
        "graph_url",
        "https://graph.microsoft.com/v1.0",
        "Microsoft Graph endpoint used "
        "for roster sync (https; plain http only to this machine, for tests).",
        str,
        _graph_url,
    ),
    Setting(
        "roster_sync_interval_min",
        60,
        "Minutes between two roster syncs from Microsoft "
        "365 (0: only on demand with `klasblik roster sync`). A teacher disabled or removed "
        "in Microsoft 365 loses access at the next sync.",
        _int,
        _range(0, 7 * 24 * 60),
    ),
    Setting(
        "access_check_s",
        30,
        "Seconds between two checks that every open dashboard view "
        "still belongs to active staff (catches roster changes made by another process).",
        _int,
        _range(1, 3600),
    ),
)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "host",
        "127.0.0.1",
        "Address to listen on. The default, 127.0.0.1, means only "
        "this machine can connect; use 0.0.0.0 behind a reverse proxy or in a container.",
    ),
    Setting("port", 8080, "TCP port to listen on (0: any free port).", _int, _range(0, 65535)),
    Setting(
        "public_url",
        "",
        "The address teachers and agents use (https://klasblik.school.example). "
        "Used for the Microsoft 365 redirect and the dashboard Origin check; empty means "
        "http://HOST:PORT.",
    ),
    Setting(
        "database_url",
        "sqlite+aiosqlite:///klasblik-data/klasblik.db",
        "SQLAlchemy URL of the database. SQLite (the default, a file under klasblik-data/) "
        "serves one school on one machine; use postgresql+asyncpg://user@host/db for several "
        "instances.",
        str,
        _db_url,
        secret=True,
    ),
    Setting(
        "blob_store",
        "file:klasblik-data/blobs",
        "Where the latest thumbnail and tab list "
        "of each student are kept: file:PATH for a local folder, azure:CONTAINER for Azure "
        "Blob Storage.",
        str,
        _blob_url,
    ),
    Setting(
        "azure_connection_string",
        "",
        "Azure Storage connection string, used with "
        "blob_store = azure:CONTAINER. Keep the account in an EU region.",
        secret=True,
    ),
    Setting(
        "enrollment_token",
        "",
        "The school's enrollment token: agents must present it. "
        "Required outside demo mode; push it to devices with your device management.",
        secret=True,
    ),
    Setting(
        "demo",
        False,
        "Demo mode: seeds a demo school and class, runs simulated agents, "
        "and allows the demo sign-in from this machine (loopback) only. Never in production.",
        _bool,
    ),
    Setting(
        "demo_students",
        45,
        "Number of simulated students in demo mode (two thirds in the first class: 45 "
        "make a class of 30). Only used when the demo data is first seeded.",
        _int,
        _range(1, 500),
    ),
    Setting(
        "auth_timeout_s",
        10.0,
        "Seconds an agent has to send hello before it is closed.",
        _float,
        _range(0.1, 120),
    ),
    Setting(
        "heartbeat_s",
        20,
        "Seconds between agent heartbeats; an agent silent for three periods is offline.",
        _int,
        _range(1, 300),
    ),
    Setting(
        "max_frame_bytes",
        1024 * 1024,
        "Largest accepted agent frame (header + image) in bytes.",
        _int,
        _range(4096, 16 * 1024 * 1024),
    ),
    Setting(
        "grid_width", 400, "Largest thumbnail width in the class grid.", _int, _range(64, 1920)
    ),
    Setting(
        "grid_height", 225, "Largest thumbnail height in the class grid.", _int, _range(36, 1080)
    ),
    Setting(
        "grid_interval_ms",
        2000,
        "Time between two thumbnails of one student in the grid.",
        _int,
        _range(250, 60000),
    ),
    Setting("grid_quality", 55, "JPEG/WebP quality of grid thumbnails.", _int, _range(1, 100)),
    Setting("focus_width", 1280, "Largest frame width in the focus view.", _int, _range(160, 3840)),
    Setting("focus_height", 720, "Largest frame height in the focus view.", _int, _range(90, 2160)),
    Setting(
        "focus_interval_ms",
        500,
        "Time between two frames of the student in focus.",
        _int,
        _range(100, 60000),
    ),
    Setting("focus_quality", 70, "JPEG/WebP quality of focus frames.", _int, _range(1, 100)),
    Setting(
        "encoding",
        "jpeg",
        "Image encoding asked of agents: jpeg or webp.",
        str,
        _one_of("jpeg", "webp"),
    ),
    Setting(
        "viewer_queue_frames",
        64,
        "Messages a dashboard may have waiting before it is cut off as too slow.",
        _int,
        _range(4, 10000),
    ),
    Setting(
        "store_interval_s",
        10.0,
        "Least time between two writes of one student's stored "
        "thumbnail or tab list; live frames still flow at full rate.",
        _float,
        _range(0, 3600),
    ),
    Setting(
        "session_lifetime_s",
        12 * 3600,
        "Longest a dashboard sign-in lasts.",
        _int,
        _range(60, 7 * 24 * 3600),
    ),
    Setting(
        "session_idle_s",
        2 * 3600,
        "A dashboard sign-in ends after this long without use.",
        _int,
        _range(60, 7 * 24 * 3600),
    ),
    Setting(
        "dashboard_session_check_s",
        30.0,
        "Seconds between checks that an open dashboard's sign-in is still valid; "
        "an expired one closes the dashboard's live connection.",
        _float,
        _range(0.2, 600),
    ),
    Setting(
        "trusted_proxies",
        (),
        "Addresses or networks (CIDR, comma- or space-separated) of "
        "reverse proxies whose X-Forwarded-For/Forwarded header is believed. Empty: the "
        "header is ignored and the direct peer address counts.",
        _cidrs,
    ),
    Setting(
        "redis_url",
        "",
        "Redis URL (redis://host:6379/0) that several instances share to "
        "route frames, watch commands and presence between them. Empty: this process "
        "serves only its own agents and dashboards (one instance).",
        str,
        _redis_url,
        secret=True,
    ),
    Setting(
        "cluster_refresh_s",
        5.0,
        "With redis_url: seconds between re-announcing which "
        "students this instance has viewers for and which agents it holds. An instance "
        "silent for three periods counts as gone; its agents show offline until they "
        "reconnect elsewhere.",
        _float,
        _range(0.2, 60),
    ),
    Setting(
        "remote_mode_max_hours",
        168,
        "Longest period IT may switch remote-lesson mode on "
        "for in one go (hours). It always ends by itself at the end time IT sets.",
        _int,
        _range(1, 2160),
    ),
    Setting(
        "location_check_interval_s",
        60.0,
        "Seconds between two checks of lesson-hour "
        "boundaries, remote-lesson end times and location changes made on other instances. "
        "The rules themselves are applied on every frame by the clock.",
        _float,
        _range(0.05, 3600),
    ),
    Setting(
        "log_level", "INFO", "Logging level.", str, _one_of("DEBUG", "INFO", "WARNING", "ERROR")
    ),
    # ---- retention (see docs/privacy.md for the 48-hour arithmetic) ----
    Setting(
        "jobs",
        True,
        "Run the retention jobs (blob sweep, nightly purge) in this process. "
        "With several instances leave it on everywhere: a database lock makes each job "
        "run once.",
        _bool,
    ),
    Setting(
        "sweep_interval_min",
        15,
        "Minutes between two sweeps that delete stored "
        "thumbnails and tab lists older than sweep_max_age_h.",
        _int,
        _range(1, 120),
    ),
    Setting(
        "sweep_max_age_h",
        47.25,
        "Age in hours at which the sweep deletes a stored "
        "thumbnail or tab list. sweep_max_age_h + sweep_interval_min + sweep_budget_min "
        "must stay under 48 hours.",
        _float,
        _range(1, 47.9),
    ),
    Setting(
        "sweep_budget_min",
        15,
        "Longest a sweep may take, in minutes; a slower sweep is "
        "logged as an error. Part of the 48-hour arithmetic.",
        _int,
        _range(1, 240),
    ),
    Setting("purge_time", "03:30", "Local time (HH:MM, in timezone) of the nightly purge.", _hhmm),
    Setting("timezone", "Europe/Amsterdam", "Time zone of purge_time and school_year_end.", _tz),
    Setting(
        "school_year_end",
        "07-31",
        "Last day of the school year (MM-DD, or a date "
        "YYYY-MM-DD for one year): the first nightly purge after it removes student and "
        "teacher records created before it.",
        _year_end,
    ),
    Setting(
        "audit_retention_months",
        6,
        "Months an audit entry is kept before the nightly purge removes it.",
        _int,
        _range(1, 24),
    ),
    *M365_SETTINGS,
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated settings, typed: one attribute per entry of :data:`SETTINGS`, in the same
    order (``tests/test_settings.py`` holds the two together). Build them with
    :func:`load_settings`, which checks every value."""

    host: str
    port: int
    public_url: str
    database_url: str
    blob_store: str
    azure_connection_string: str
    enrollment_token: str
    demo: bool
    demo_students: int
    auth_timeout_s: float
    heartbeat_s: int
    max_frame_bytes: int
    grid_width: int
    grid_height: int
    grid_interval_ms: int
    grid_quality: int
    focus_width: int
    focus_height: int
    focus_interval_ms: int
    focus_quality: int
    encoding: str
    viewer_queue_frames: int
    store_interval_s: float
    session_lifetime_s: int
    session_idle_s: int
    dashboard_session_check_s: float
    trusted_proxies: tuple[str, ...]
    redis_url: str
    cluster_refresh_s: float
    remote_mode_max_hours: int
    location_check_interval_s: float
    log_level: str
    jobs: bool
    sweep_interval_min: int
    sweep_max_age_h: float
    sweep_budget_min: int
    purge_time: str
    timezone: str
    school_year_end: str
    audit_retention_months: int
    m365_tenant_id: str
    m365_client_id: str
    m365_client_secret: str
    m365_authority: str
    m365_ca_file: str
    m365_admin_role: str
    m365_admin_group: str
    graph_url: str
    roster_sync_interval_min: int
    access_check_s: int

    @property
    def values(self) -> dict[str, Any]:
        """Every setting by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return load_settings(env={}, file_values=dict(self.values), overrides=changes)

    def describe(self) -> dict[str, Any]:
        """Settings for logs and /healthz-like output, with secrets hidden."""
        return {
            s.name: ("***" if s.secret and self.values[s.name] else self.values[s.name])
            for s in SETTINGS
        }


def _coerce(setting: Setting, raw: Any, source: str) -> Any:
    try:
        if isinstance(raw, str):
            value = setting.parse(raw)
        elif isinstance(raw, bool) and setting.parse is not _bool:
            raise ValueError(f"must not be true/false, got {raw!r}")
        elif setting.parse is _int and isinstance(raw, int):
            value = raw
        elif setting.parse is _float and isinstance(raw, (int, float)):
            value = float(raw)
        elif setting.parse is _bool and isinstance(raw, bool):
            value = raw
        elif setting.parse is _cidrs and isinstance(raw, (list, tuple)):
            value = _cidrs(" ".join(str(r) for r in raw))
        else:
            raise ValueError(f"has the wrong type ({type(raw).__name__})")
    except ValueError as exc:
        raise SettingsError(f"{setting.name} ({source}): {exc}; got {raw!r}") from None
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise SettingsError(f"{setting.name} ({source}): {problem}; got {value!r}")
    return value


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings; raise :class:`SettingsError` naming the bad setting."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    config_file = config_file or env.get("KLASBLIK_CONFIG") or None
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if file_values:
        layers.append(("file", file_values))
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - set(_BY_NAME))
        if unknown:
            raise SettingsError(f"config file {path}: unknown setting(s): {', '.join(unknown)}")
        layers.append((str(path), data))
    env_values = {s.name: env[s.env] for s in SETTINGS if s.env in env}
    layers.append(("environment", env_values))
    if overrides:
        unknown = sorted(set(overrides) - set(_BY_NAME))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        layers.append(("override", overrides))
    for source, layer in layers:
        for name, raw in layer.items():
            if name not in _BY_NAME:
                continue
            src = f"{_BY_NAME[name].env}" if source == "environment" else source
            values[name] = _coerce(_BY_NAME[name], raw, src)
    if values["grid_width"] > values["focus_width"]:
        raise SettingsError("grid_width: must not be larger than focus_width")
    if values["demo"] and not values["enrollment_token"]:
        values["enrollment_token"] = "demo-" + secrets.token_urlsafe(16)
    if not values["demo"] and not values["enrollment_token"]:
        raise SettingsError(
            "enrollment_token: required outside demo mode (set KLASBLIK_ENROLLMENT_TOKEN)"
        )
    if values["blob_store"].startswith("azure:") and not values["azure_connection_string"]:
        raise SettingsError("azure_connection_string: required with blob_store = azure:CONTAINER")
    budget_h = (
        values["sweep_max_age_h"]
        + values["sweep_interval_min"] / 60
        + values["sweep_budget_min"] / 60
    )
    if budget_h >= 48:
        raise SettingsError(
            f"sweep_max_age_h: sweep_max_age_h + sweep_interval_min + sweep_budget_min is "
            f"{budget_h:.2f} h; it must stay under 48 h (see docs/privacy.md)"
        )
    if values["m365_tenant_id"] and not (values["m365_client_id"] and values["m365_client_secret"]):
        raise SettingsError(
            "m365_client_id: m365_client_id and m365_client_secret are required with m365_tenant_id"
        )
    return Settings(**values)
