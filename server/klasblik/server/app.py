"""The application factory: ``init_app(settings)`` builds the aiohttp app; its resources
(database, blob store, hub, demo agents) are opened and closed in ``cleanup_ctx``."""

from __future__ import annotations

import importlib.resources
import logging
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from klasblik.server.access.refusals import RefusalLog
from klasblik.server.auth.agent_identity import agent_identity_ctx
from klasblik.server.auth.m365.routes import setup_m365_signin
from klasblik.server.keys import (
    AGENT_SOCKETS,
    DASHBOARD_FILES,
    DB,
    DEMO,
    ENGINE,
    HELLO_GATE,
    HUB,
    LAST_SEEN,
    LATEST,
    METRICS,
    NOTICES,
    PROXIES,
    REFUSALS,
    SETTINGS,
    STORE,
    STUDENTS,
)
from klasblik.server.live.admission import HelloGate
from klasblik.server.live.collector import collector_ctx
from klasblik.server.live.dashboard_endpoint import session_watch_ctx
from klasblik.server.live.hub import Hub
from klasblik.server.live.lastseen import LastSeenWriter
from klasblik.server.live.silence import silence_ctx
from klasblik.server.locations.policy import locations_ctx
from klasblik.server.metrics import OpsMetrics
from klasblik.server.net import parse_networks
from klasblik.server.retention.schedule import jobs_ctx
from klasblik.server.roster.jobs import roster_jobs_ctx
from klasblik.server.roster.lookup import StudentLookup
from klasblik.server.roster.revocation import recheck_no_view
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs import open_blob_store
from klasblik.server.storage.blobs.base import BlobStoreError
from klasblik.server.storage.engine import (
    create_engine,
    sessionmaker,
    upgrade_database,
    wait_for_database,
)
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.web.admin_locations import setup_location_admin_routes
from klasblik.server.web.ops import setup_ops_routes
from klasblik.server.web.routes import middlewares, setup_routes

__all__ = ["DASHBOARD_DIR", "init_app"]

log = logging.getLogger(__name__)

#: The dashboard's files, shipped inside the package (``klasblik.dashboard``).
DASHBOARD_DIR = Path(str(importlib.resources.files("klasblik.dashboard")))


def init_app(settings: Settings, dashboard_dir: Path | None = None) -> web.Application:
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[DASHBOARD_FILES] = dashboard_dir or DASHBOARD_DIR
    app[PROXIES] = parse_networks(settings.trusted_proxies)
    hello_phase: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
    app[AGENT_SOCKETS] = hello_phase
    app[HELLO_GATE] = HelloGate(settings.hello_max_per_address, settings.hello_max_total)
    app[NOTICES] = []
    app[METRICS] = OpsMetrics()
    setup_routes(app)
    setup_ops_routes(app)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        try:
            await wait_for_database(engine, settings.database_start_timeout_s)
            await upgrade_database(engine)
        except BaseException:
            await engine.dispose()
            raise
        store = open_blob_store(
            settings.blob_store,
            settings.azure_connection_string,
            settings.azure_account_url,
            settings.azure_client_id,
        )
        latest = LatestWriter(store, settings.store_interval_s)
        try:
            await store.check()
        except BlobStoreError as exc:
            latest.last_error = str(exc)
            log.warning("blob store not usable at start: %s", exc)
        except BaseException:  # refused (soft delete on): the server does not start
            await store.close()
            await engine.dispose()
            raise
        hub = Hub(settings, latest)
        cluster = None
        if settings.redis_url:
            from klasblik.server.live.cluster.link import Cluster

            cluster = Cluster(hub, settings.redis_url, settings.cluster_refresh_s)
            cluster.start()
        sm = sessionmaker(engine)
        app[ENGINE] = engine
        app[DB] = sm
        app[STORE] = store
        app[LATEST] = latest
        app[HUB] = hub
        app[LAST_SEEN] = last_seen = LastSeenWriter(sm)
        app[STUDENTS] = students = StudentLookup(sm)
        if cluster is not None:  # IT's do-not-view change on another instance: apply it now

            def recheck(_what: str, ids: tuple[int, ...]) -> None:
                hub.tasks.spawn(recheck_no_view(sm, hub, ids), "do-not-view recheck")

            cluster.on_recheck = recheck
        app[REFUSALS] = refusals = RefusalLog(
            sm, settings.refusal_log_window_s, settings.refusal_log_max
        )
        try:
            yield
        finally:
            await refusals.close()
            if cluster is not None:
                await cluster.close()
            await hub.close_all()
            await students.close()
            await latest.close()
            await last_seen.close()
            await store.close()
            await engine.dispose()

    async def stop_connections(app: web.Application) -> None:
        demo = app.get(DEMO)
        if demo is not None:
            await demo.close()
        hub = app[HUB]
        if hub.cluster is not None:  # say goodbye to the other instances first
            await hub.cluster.close()
        await hub.close_all()
        hello_phase = app[AGENT_SOCKETS]
        for ws in list(hello_phase):  # agents still in their hello phase
            await ws.close(code=1001, message=b"server shutting down")

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(silence_ctx)
    app.cleanup_ctx.append(session_watch_ctx)  # after resources: reads the hub
    app.cleanup_ctx.append(collector_ctx)  # after resources: reads the hub
    app.cleanup_ctx.append(jobs_ctx)  # after resources: stopped before they close
    setup_m365_signin(app, settings)
    app.cleanup_ctx.append(agent_identity_ctx)  # after the Microsoft 365 client
    app.cleanup_ctx.append(roster_jobs_ctx(settings))  # after the Microsoft 365 client
    app.on_shutdown.append(stop_connections)
    if settings.demo:
        from klasblik.server.demo.mode import demo_ctx

        app.cleanup_ctx.append(demo_ctx)
    app.cleanup_ctx.append(locations_ctx)  # after the demo seed: it reads the locations
    setup_location_admin_routes(app)
    return app
