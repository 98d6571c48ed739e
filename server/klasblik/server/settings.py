"""Every server setting, declared once, with its default and help text.

Settings come from, in order of precedence: keyword overrides (tests, CLI flags), the
environment (``KLASBLIK_<NAME>``), and an optional TOML file (``KLASBLIK_CONFIG`` or
``--config``). Each value is validated at start; a bad one stops the server with a message
that names the setting. ``docs/configuration.md`` documents each one, and a test fails when
it does not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import secrets
import tomllib
import urllib.parse
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


#: The shipped private-page list: webmail, health, banking and counselling services a
#: Dutch student may use privately. Schools extend or replace it (private_pages).
PRIVATE_PAGES_DEFAULT: tuple[str, ...] = (
    "mail.google.com",
    "outlook.live.com",
    "mail.yahoo.com",
    "proton.me/mail",
    "mail.proton.me",
    "gmx.net",
    "ziggo.nl/webmail",
    "kpnmail.nl",
    "mijn.zorgverzekeraar.nl",
    "mijngezondheid.net",
    "thuisarts.nl",
    "huisarts.nl",
    "ggd.nl",
    "ing.nl",
    "rabobank.nl",
    "abnamro.nl",
    "bunq.com",
    "snsbank.nl",
    "asnbank.nl",
    "triodos.nl",
    "knab.nl",
    "paypal.com",
    "kindertelefoon.nl",
    "113.nl",
    "jouwggd.nl",
    "sense.info",
    "watwat.nl",
    "korrelatie.nl",
    "mindyoung.nl",
    "fier.nl",
)


#: The shipped title words for the desktop agent (window titles, not addresses).
PRIVATE_TITLES_DEFAULT: tuple[str, ...] = (
    "Gmail",
    "Yahoo Mail",
    "Proton Mail",
    "Outlook.com",
    "Internetbankieren",
    "Mijn ING",
    "Rabo Online Bankieren",
    "ABN AMRO",
    "bunq",
    "PayPal",
    "DigiD",
    "Mijn Zorgverzekering",
    "MijnGezondheid",
    "Thuisarts",
    "Kindertelefoon",
    "113 Zelfmoordpreventie",
    "Sense.info",
    "WatWat",
    "MIND Young",
)


def _titles(text: str) -> tuple[str, ...]:
    out = tuple(part.strip() for part in text.split(",") if part.strip())
    for word in out:
        if len(word) < 3 or len(word) > 100:
            raise ValueError(f"{word!r}: title words must be 3 to 100 characters")
    return out


def _patterns(text: str) -> tuple[str, ...]:
    out = []
    for part in text.replace(",", " ").split():
        word = part.strip().lower().removeprefix("https://").removeprefix("http://").lstrip(".")
        host = word.split("/", 1)[0]
        if not host or not all(c.isalnum() or c in ".-" for c in host) or len(word) > 200:
            raise ValueError(f"{part!r} is not a host name or host/path")
        out.append(word)
    return tuple(out)


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo} and {hi}"

    return check


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else "must be one of " + ", ".join(allowed)

    return check


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in text.replace(",", " ").split())


def _until(text: str) -> str:
    """An ISO date or time; kept as text, read by :func:`previous_token_until`."""
    text = text.strip()
    if text:
        previous_token_until(text)
    return text


def previous_token_until(text: str) -> dt.datetime | None:
    """The moment ``enrollment_token_previous_until`` names (a date: the end of that day,
    UTC), or None when empty."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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


def _account_url(value: Any) -> str | None:
    if not value or value.startswith(("https://", "http://127.0.0.1:", "http://localhost:")):
        return None
    return "must be an https:// address (plain http only to this machine, for tests)"


def _graph_url(value: Any) -> str | None:
    if not value or value.startswith(("https://", "http://127.0.0.1:", "http://localhost:")):
        return None
    return "must be an https:// address"


#: Microsoft's clouds: (sign-in host, Microsoft Graph host), from Microsoft's "National
#: cloud deployments" page (https://learn.microsoft.com/graph/deployments).
M365_CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("login.microsoftonline.com", "graph.microsoft.com"),
    "usgov": ("login.microsoftonline.us", "graph.microsoft.us"),
    "usgovdod": ("login.microsoftonline.us", "dod-graph.microsoft.us"),
    "china": ("login.chinacloudapi.cn", "microsoftgraph.chinacloudapi.cn"),
}


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
        "m365_agent_audience",
        "",
        "Audience (aud) of the Microsoft 365 access tokens agents present: Klasblik's API "
        "in the app registration. Empty: m365_client_id (v2.0 tokens name the client id).",
    ),
    Setting(
        "m365_client_secret",
        "",
        "Client secret of the app registration (used for "
        "sign-in and for reading rosters from Microsoft Graph).",
        secret=True,
    ),
    Setting(
        "m365_cloud",
        "global",
        "Microsoft cloud the tenant lives in: global (every Dutch school), usgov, usgovdod "
        "or china. Gives the sign-in host, the Graph host and the Graph token's resource.",
        str,
        _one_of(*M365_CLOUDS),
    ),
    Setting(
        "m365_authority",
        "",
        "Sign-in authority; empty means "
        "https://SIGN-IN-HOST/TENANT/v2.0 of m365_cloud. Must be https.",
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
        "admins, read by every roster sync (needs GroupMember.Read.All); when set, the group "
        "alone decides and m365_admin_role is not used. Empty: the app role decides.",
    ),
    Setting(
        "graph_url",
        "",
        "Microsoft Graph endpoint used "
        "for roster sync; empty: https://GRAPH-HOST/v1.0 of m365_cloud (https; plain http "
        "only to this machine, for tests). The token is never sent to another host.",
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
        "roster_max_age_h",
        24,
        "Hours without a successful roster sync from Microsoft 365 after which viewing is "
        "refused (roster_stale), because access can no longer be shown to follow the roster. "
        "0: never refused (not recommended). Only with m365_tenant_id.",
        _int,
        _range(0, 14 * 24),
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


#: Google identity of Chromebook agents (docs/chromebook.md, Identity).
GOOGLE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "google_client_id",
        "",
        "OAuth client id the Chromebook extension gets its Google ID token for (the aud "
        "the server requires). Empty: Google identity proofs are not accepted.",
    ),
    Setting(
        "google_issuer",
        "https://accounts.google.com",
        "Google's OpenID Connect issuer; its discovery document names the published keys.",
        str,
        _https_url,
    ),
    Setting(
        "google_domains",
        (),
        "The school's Google Workspace domains (hd claim), space-separated: a Google "
        "token of any other domain is refused. Required with google_client_id.",
        _words,
    ),
    Setting(
        "google_ca_file",
        "",
        "PEM file of the certificate authorities to trust for google_issuer instead of the "
        "system's (for a TLS-inspecting proxy). Empty: the system's.",
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
        "enrollment_token_previous",
        "",
        "The enrollment token before the last rotation: still accepted until "
        "enrollment_token_previous_until, so devices can move to the new one without an "
        "outage (docs/agent.md, Rotating the enrollment token). Empty: none.",
        secret=True,
    ),
    Setting(
        "enrollment_token_previous_until",
        "",
        "Date (YYYY-MM-DD, to the end of that day in UTC) or ISO 8601 time until which "
        "enrollment_token_previous is accepted. Required with enrollment_token_previous.",
        _until,
    ),
    Setting(
        "agent_identity",
        "verified",
        "How agents prove who they are, for schools without a policy of their own "
        "(`klasblik agents policy`): verified refuses an agent without a valid identity "
        "token; device also accepts a device enrolled earlier with one; token accepts the "
        "enrollment token alone (for a transition: such tiles show unverified). In every "
        "mode an unverified connection never replaces a verified one. Demo mode: token.",
        str,
        _one_of("verified", "device", "token"),
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
        "hello_max_per_address",
        256,
        "Agent sockets from one address that may be waiting for their hello at once; more "
        "are refused (503 busy) before the upgrade. A school behind one NAT address "
        "reconnecting all at once needs room here.",
        _int,
        _range(1, 100000),
    ),
    Setting(
        "hello_max_total",
        1024,
        "Agent sockets that may be waiting for their hello at once, from all addresses.",
        _int,
        _range(1, 1000000),
    ),
    Setting(
        "refusal_log_window_s",
        60.0,
        "Refused agents are audit-logged once per account, reason and address in this many "
        "seconds, with a count of the repeats (docs/security.md).",
        _float,
        _range(1, 3600),
    ),
    Setting(
        "refusal_log_max",
        50,
        "Distinct refused agents logged one by one per refusal_log_window_s; the rest of the "
        "window is one entry with counts.",
        _int,
        _range(1, 100000),
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
        1000,
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
        "viewer_queue_bytes",
        8 * 1024 * 1024,
        "Bytes a dashboard may have waiting (frames and messages) before it is cut off as "
        "too slow: the server's memory for a viewer that does not read stays below this.",
        _int,
        _range(64 * 1024, 1024 * 1024 * 1024),
    ),
    Setting(
        "viewer_stall_s",
        10.0,
        "Seconds one message to a dashboard may take to be written before the dashboard "
        "is cut off and its connection aborted.",
        _float,
        _range(0.1, 600),
    ),
    Setting(
        "store_interval_s",
        30.0,
        "Least time between two writes of one student's stored "
        "thumbnail or tab list while the device is online (the last state of a device "
        "that goes offline is written at once). Each student is written on its own beat, "
        "the next write within two intervals of the first, so that students who came into "
        "view together are not written together again; live frames still flow at full rate.",
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
        "Seconds between checks that the open dashboards' sign-ins are still valid "
        "(all of them in one query); an expired one closes the dashboard's live connection.",
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
        "proxy_header",
        "x-forwarded-for",
        "The one header the trusted proxies write the client's address into: "
        "x-forwarded-for (nginx, Caddy, Azure) or forwarded (RFC 7239). The other one is "
        "never read: a client could have written it (docs/security.md).",
        lambda text: text.strip().lower(),
        _one_of("x-forwarded-for", "forwarded"),
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
    # ---- operations (docs/operations.md) ----
    Setting(
        "log_format",
        "text",
        "Log lines as text or json (one JSON object per line: time, level, logger, "
        "message, and the traceback when there is one). Every event is one line either way.",
        str,
        _one_of("text", "json"),
    ),
    Setting(
        "access_log",
        True,
        "Log one line per HTTP request (method, path without its query string, status, "
        "bytes, duration, client address) to the klasblik.access logger.",
        _bool,
    ),
    Setting(
        "metrics_token",
        "",
        "Bearer token that Prometheus must send to read /metrics "
        "(Authorization: Bearer TOKEN). Empty: /metrics answers 404 to everyone.",
        secret=True,
    ),
    Setting(
        "database_start_timeout_s",
        120.0,
        "At start, seconds to keep retrying a database that does not answer "
        "(restarting, failing over) before giving up; 0: give up at once.",
        _float,
        _range(0, 3600),
    ),
    Setting(
        "database_password",
        "",
        "Password for database_url, kept out of the URL (so it needs no "
        "URL-encoding); use KLASBLIK_DATABASE_PASSWORD_FILE for a secret file. Empty: the "
        "URL's own, if any.",
        secret=True,
    ),
    Setting(
        "redis_password",
        "",
        "Password (access key) for redis_url, kept out of the URL; use "
        "KLASBLIK_REDIS_PASSWORD_FILE for a secret file. Empty: the URL's own, if any.",
        secret=True,
    ),
    Setting(
        "azure_account_url",
        "",
        "Blob endpoint of the storage account (https://ACCOUNT.blob.core.windows.net), "
        "used with blob_store = azure:CONTAINER instead of a connection string: the "
        "server signs in with Microsoft Entra ID (managed identity on Azure), no account key.",
        str,
        _account_url,
    ),
    Setting(
        "azure_client_id",
        "",
        "With azure_account_url: client id of the user-assigned managed identity to "
        "use. Empty: the system-assigned identity, or whatever DefaultAzureCredential finds "
        "(environment, workload identity, Azure CLI).",
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
        "Months an audit entry is kept before the nightly purge removes it. More than 6 "
        "only with audit_retention_exception set.",
        _int,
        _range(1, 24),
    ),
    # ---- privacy (docs/privacy.md) ----
    Setting(
        "audit_retention_exception",
        "",
        "Only for audit_retention_months above 6: the exception the school decided and "
        "notified (who decided, when, why), stated in the privacy documents. Empty: at most "
        "6 months.",
    ),
    Setting(
        "store_url_query",
        False,
        "Keep the query string (?...) and fragment (#...) of tab addresses in the stored "
        "tab list. Off: the stored list keeps only scheme, host and path; queries often "
        "carry search terms and personal data.",
        _bool,
    ),
    Setting(
        "privacy_contact",
        "",
        "How students and parents reach the school's data protection officer (an e-mail "
        "address or web page); printed in the export and the privacy documents.",
    ),
    Setting(
        "private_pages",
        PRIVATE_PAGES_DEFAULT,
        "Pages the agents blank on the device before capture (private use: webmail, "
        "health, banking, counselling). Host names (a leading dot or none: the host and its "
        "sub-domains), optionally with a path prefix (host/path), comma- or "
        "space-separated. The tile shows 'private page' with no title or address.",
        _patterns,
    ),
    Setting(
        "private_titles",
        PRIVATE_TITLES_DEFAULT,
        "Words in the active window's title that make the desktop agent blank the screen "
        "before capture (a desktop has no addresses): private mail, health, banking, "
        "counselling. Comma-separated; matched without regard to case.",
        _titles,
    ),
    *M365_SETTINGS,
    *GOOGLE_SETTINGS,
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
    enrollment_token_previous: str
    enrollment_token_previous_until: str
    agent_identity: str
    demo: bool
    demo_students: int
    auth_timeout_s: float
    hello_max_per_address: int
    hello_max_total: int
    refusal_log_window_s: float
    refusal_log_max: int
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
    viewer_queue_bytes: int
    viewer_stall_s: float
    store_interval_s: float
    session_lifetime_s: int
    session_idle_s: int
    dashboard_session_check_s: float
    trusted_proxies: tuple[str, ...]
    proxy_header: str
    redis_url: str
    cluster_refresh_s: float
    remote_mode_max_hours: int
    location_check_interval_s: float
    log_level: str
    log_format: str
    access_log: bool
    metrics_token: str
    database_start_timeout_s: float
    database_password: str
    redis_password: str
    azure_account_url: str
    azure_client_id: str
    jobs: bool
    sweep_interval_min: int
    sweep_max_age_h: float
    sweep_budget_min: int
    purge_time: str
    timezone: str
    school_year_end: str
    audit_retention_months: int
    audit_retention_exception: str
    store_url_query: bool
    privacy_contact: str
    private_pages: tuple[str, ...]
    private_titles: tuple[str, ...]
    m365_tenant_id: str
    m365_client_id: str
    m365_agent_audience: str
    m365_client_secret: str
    m365_cloud: str
    m365_authority: str
    m365_ca_file: str
    m365_admin_role: str
    m365_admin_group: str
    graph_url: str
    roster_sync_interval_min: int
    roster_max_age_h: int
    access_check_s: int
    google_client_id: str
    google_issuer: str
    google_domains: tuple[str, ...]
    google_ca_file: str

    @property
    def values(self) -> dict[str, Any]:
        """Every setting by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def effective_graph_url(self) -> str:
        """Microsoft Graph's v1.0 endpoint: ``graph_url``, else the cloud's."""
        if self.graph_url:
            return self.graph_url.rstrip("/")
        return f"https://{M365_CLOUDS[self.m365_cloud][1]}/v1.0"

    @property
    def graph_scope(self) -> list[str]:
        """The client-credentials scope: the cloud's Graph resource + ``/.default``."""
        return [f"https://{M365_CLOUDS[self.m365_cloud][1]}/.default"]

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
        elif setting.parse in (_cidrs, _words) and isinstance(raw, (list, tuple)):
            value = setting.parse(" ".join(str(r) for r in raw))
        elif setting.parse is _patterns and isinstance(raw, (list, tuple)):
            value = _patterns(" ".join(str(r) for r in raw))
        elif setting.parse is _titles and isinstance(raw, (list, tuple)):
            value = _titles(",".join(str(r) for r in raw))
        else:
            raise ValueError(f"has the wrong type ({type(raw).__name__})")
    except ValueError as exc:
        raise SettingsError(f"{setting.name} ({source}): {exc}; got {raw!r}") from None
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise SettingsError(f"{setting.name} ({source}): {problem}; got {value!r}")
    return value


def _read_secret_file(setting: Setting, path: str) -> str:
    """A secret from a file (Docker/Kubernetes secrets): its text, less the final newline."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(
            f"{setting.name} ({setting.env}_FILE): cannot read {path}: {exc.strerror}"
        ) from None


def _with_password(name: str, url: str, password: str) -> str:
    """``url`` with ``password`` put in as its password, percent-encoded: any character of a
    generated key or password is safe. Refused when the URL carries a password already."""
    if not password or not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        if urllib.parse.unquote(parts.password) == password:
            return url  # put in already (settings loaded again by Settings.replace)
        raise SettingsError(
            f"{name.replace('_url', '_password')}: {name} has a password already; keep it in "
            "one place (the password setting)"
        )
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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
    for s in SETTINGS:
        if s.secret and s.env + "_FILE" in env:
            if s.env in env:
                raise SettingsError(f"{s.name}: set {s.env} or {s.env}_FILE, not both")
            env_values[s.name] = _read_secret_file(s, env[s.env + "_FILE"])
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
    if values["demo"] and not any("agent_identity" in layer for _, layer in layers):
        values["agent_identity"] = "token"  # the simulated agents have no identity to prove
    if values["enrollment_token_previous"] and not values["enrollment_token_previous_until"]:
        raise SettingsError(
            "enrollment_token_previous_until: required with enrollment_token_previous "
            "(the date after which the old token is refused)"
        )
    if values["google_client_id"] and not values["google_domains"]:
        raise SettingsError(
            "google_domains: required with google_client_id (the school's Workspace domains)"
        )
    if values["blob_store"].startswith("azure:") and not (
        values["azure_connection_string"] or values["azure_account_url"]
    ):
        raise SettingsError(
            "azure_connection_string: azure_connection_string or azure_account_url is "
            "required with blob_store = azure:CONTAINER"
        )
    if values["azure_connection_string"] and values["azure_account_url"]:
        raise SettingsError(
            "azure_account_url: set azure_connection_string or azure_account_url, not both"
        )
    values["database_url"] = _with_password(
        "database_url", values["database_url"], values["database_password"]
    )
    values["redis_url"] = _with_password("redis_url", values["redis_url"], values["redis_password"])
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
    if values["audit_retention_months"] > 6 and not values["audit_retention_exception"].strip():
        raise SettingsError(
            "audit_retention_months: more than 6 months needs audit_retention_exception "
            "(the exception the school decided and notified); see docs/privacy.md"
        )
    if not values["jobs"] and not values["redis_url"]:
        raise SettingsError(
            "jobs: a lone instance (no redis_url) must run the retention jobs, or nothing "
            "deletes screenshots after 48 hours; leave jobs on (see docs/privacy.md)"
        )
    if values["m365_tenant_id"] and not (values["m365_client_id"] and values["m365_client_secret"]):
        raise SettingsError(
            "m365_client_id: m365_client_id and m365_client_secret are required with m365_tenant_id"
        )
    return Settings(**values)
