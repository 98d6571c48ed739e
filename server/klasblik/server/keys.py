"""Typed application state: one ``web.AppKey`` per service the handlers share, owned by
the app (opened and closed in ``app.py``'s cleanup contexts).

This module is a leaf: it imports the services' types for the type checker only, so every
folder may use the keys without depending on the folders that provide the services.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from klasblik.server.access.refusals import RefusalLog
    from klasblik.server.auth.agent_identity import AgentIdentity
    from klasblik.server.auth.m365.client import M365Client
    from klasblik.server.demo.mode import DemoState
    from klasblik.server.live.admission import HelloGate
    from klasblik.server.live.hub import Hub
    from klasblik.server.live.lastseen import LastSeenWriter
    from klasblik.server.locations.policy import LocationPolicy
    from klasblik.server.metrics import OpsMetrics
    from klasblik.server.net import Network
    from klasblik.server.retention.schedule import JobRunner
    from klasblik.server.roster.lookup import StudentLookup
    from klasblik.server.settings import Settings
    from klasblik.server.storage.blobs.base import BlobStore
    from klasblik.server.storage.latest import LatestWriter

__all__ = [
    "AGENT_IDENTITY",
    "AGENT_SOCKETS",
    "DASHBOARD_FILES",
    "DB",
    "DEMO",
    "ENGINE",
    "HELLO_GATE",
    "HUB",
    "LAST_SEEN",
    "LATEST",
    "LOCATIONS",
    "M365",
    "METRICS",
    "NOTICES",
    "OPEN_WEBSOCKET",
    "PROXIES",
    "REFUSALS",
    "RETENTION_JOBS",
    "ROSTER_JOBS",
    "SETTINGS",
    "STORE",
    "STUDENTS",
]

#: every setting, checked at start (``settings.py``)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
#: the database engine and the session factory on it (``storage/``)
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine", AsyncEngine)
DB: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db")
#: the blob store and the writer of each student's latest thumbnail and tab list
STORE: web.AppKey[BlobStore] = web.AppKey("store")
LATEST: web.AppKey[LatestWriter] = web.AppKey("latest")
#: this process's agent and dashboard connections (``live/hub.py``)
HUB: web.AppKey[Hub] = web.AppKey("hub")
#: agent sockets still in their hello phase, closed at shutdown
AGENT_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("agent_sockets")
#: the count of agent sockets in their hello phase, per address and in total
HELLO_GATE: web.AppKey[HelloGate] = web.AppKey("hello_gate")
#: refused agents in the audit log, aggregated (``access/refusals.py``)
REFUSALS: web.AppKey[RefusalLog] = web.AppKey("refusals")
#: batched writes of last IP and last-seen time, and batched roster look-ups of hellos
LAST_SEEN: web.AppKey[LastSeenWriter] = web.AppKey("last_seen")
STUDENTS: web.AppKey[StudentLookup] = web.AppKey("students")
#: the location rule, remote-lesson mode and lesson hours (``locations/``)
LOCATIONS: web.AppKey[LocationPolicy] = web.AppKey("locations")
#: the trusted reverse proxies whose forwarding headers are believed
PROXIES: web.AppKey[tuple[Network, ...]] = web.AppKey("proxies")
#: where the dashboard's files are (package data)
DASHBOARD_FILES: web.AppKey[Path] = web.AppKey("dashboard_dir", Path)
#: the Microsoft 365 client; absent when sign-in with Microsoft 365 is not configured
M365: web.AppKey[M365Client] = web.AppKey("m365")
#: agent identity: token validation, enrollment tokens, school policies, device keys
AGENT_IDENTITY: web.AppKey[AgentIdentity] = web.AppKey("agent_identity")
#: the retention jobs (sweep, nightly purge) and the scheduled roster sync
RETENTION_JOBS: web.AppKey[JobRunner] = web.AppKey("retention_jobs")
ROSTER_JOBS: web.AppKey[AsyncIOScheduler] = web.AppKey("roster_jobs")
#: demo mode's teacher and simulated agents; absent outside demo mode
DEMO: web.AppKey[DemoState] = web.AppKey("demo")
#: the retention jobs' and the roster sync's figures for /metrics (``metrics.py``)
METRICS: web.AppKey[OpsMetrics] = web.AppKey("metrics")
#: banners shown on every teacher's page (demo mode says so)
NOTICES: web.AppKey[list[dict[str, Any]]] = web.AppKey("notices")

#: per request: the WebSocket it was upgraded to, set right after the handshake by both
#: live endpoints; ``web/middleware.py`` then never writes an HTTP answer for that request
OPEN_WEBSOCKET: web.RequestKey[web.WebSocketResponse] = web.RequestKey(
    "open_websocket", web.WebSocketResponse
)
