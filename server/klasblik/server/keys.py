"""Typed application state: everything the handlers share, owned by the app."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from klasblik.server.live.hub import Hub
from klasblik.server.live.lastseen import LastSeenWriter
from klasblik.server.net import Network, client_ip
from klasblik.server.roster.lookup import StudentLookup
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import BlobStore
from klasblik.server.storage.latest import LatestWriter

__all__ = ["CTX", "AppContext"]


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sm: async_sessionmaker[AsyncSession]
    store: BlobStore
    latest: LatestWriter
    hub: Hub
    dashboard_dir: Path
    proxies: tuple[Network, ...] = ()
    agent_ws: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    extras: dict[str, Any] = field(default_factory=dict)
    last_seen: LastSeenWriter | None = None
    students: StudentLookup | None = None

    def client_ip(self, request: web.BaseRequest) -> str:
        return client_ip(request, self.proxies)


CTX: web.AppKey[AppContext] = web.AppKey("klasblik", AppContext)
