"""Running roster sync: on demand (``klasblik roster sync``, or IT's button on the admin
page) and on a schedule inside the server (APScheduler, job ids ``roster.sync``,
``roster.sync.now``, ``roster.access_check`` and, once at start, ``roster.permissions``),
followed each time by taking access away from staff who lost it.

A failed run is recorded (``roster.health``) and logged at warning level with how long
the roster has gone without a successful sync; past ``roster_max_age_h`` the access check
closes every open view (``roster_stale``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.access.rules import roster_max_age_s
from klasblik.server.auth.m365.client import M365Client, M365Error
from klasblik.server.keys import DB, HUB, M365, ROSTER_JOBS
from klasblik.server.live.hub import Hub
from klasblik.server.roster.graph import GraphClient, GraphError
from klasblik.server.roster.health import log_permissions, record_failure, roster_health
from klasblik.server.roster.revocation import recheck_no_view, recheck_viewers, revoke_lost_access
from klasblik.server.roster.sync import Progress, SyncBusy, SyncSummary, sync_roster
from klasblik.server.settings import Settings

__all__ = [
    "ACCESS_JOB",
    "PERMISSIONS_JOB",
    "SYNC_JOB",
    "SYNC_NOW_JOB",
    "graph_for",
    "require_tenant",
    "roster_jobs_ctx",
    "run_sync",
    "start_sync_now",
]

log = logging.getLogger(__name__)

SYNC_JOB = "roster.sync"
SYNC_NOW_JOB = "roster.sync.now"
ACCESS_JOB = "roster.access_check"
PERMISSIONS_JOB = "roster.permissions"


@contextlib.asynccontextmanager
async def graph_for(settings: Settings, m365: M365Client) -> AsyncIterator[GraphClient]:
    """A Graph client on the app token of ``m365`` (msal client credentials, cached by
    msal), closed when the block ends. The server passes its one client (``keys.M365``);
    the CLI the one it opened for its run."""
    graph = GraphClient(
        settings.effective_graph_url, m365.graph_token, ca_file=settings.m365_ca_file
    )
    try:
        yield graph
    finally:
        await graph.close()


def require_tenant(settings: Settings) -> None:
    if not settings.m365_tenant_id:
        raise ValueError(
            "m365_tenant_id is not set: roster sync from Microsoft 365 needs the app "
            "registration (docs/microsoft365.md)"
        )


async def run_sync(
    sm: async_sessionmaker[AsyncSession],
    graph: GraphClient,
    hub: Hub | None = None,
    progress: Progress = lambda _m: None,
    settings: Settings | None = None,
) -> SyncSummary:
    """One sync, then access follows it: sessions and views of staff who lost access end,
    and open views are checked again. A failure from Microsoft 365 is recorded for the
    health report, then raised."""
    try:
        summary = await sync_roster(
            sm, graph, progress, admin_group=settings.m365_admin_group if settings else ""
        )
    except (GraphError, M365Error) as exc:
        await record_failure(sm, exc.code, str(exc))
        raise
    closed = await revoke_lost_access(sm, hub, summary.lost_access)
    if hub is not None:
        closed += await recheck_viewers(sm, hub, roster_max_age_s(settings) if settings else 0.0)
    if closed:
        progress(f"closed {closed} dashboard view(s) of staff who lost access")
    return summary


async def _reload_locations(app: web.Application) -> None:
    """Let the location rules know locations the sync may have added or renamed."""
    from klasblik.server.locations.policy import policy_of

    policy = policy_of(app)
    if policy is not None:
        await policy.reload()


def roster_jobs_ctx(
    settings: Settings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx generator that runs the scheduled sync and the access check."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:

        scheduler = AsyncIOScheduler(timezone=dt.UTC)
        running = asyncio.Lock()

        async def sync_job() -> None:
            if running.locked():
                log.info("roster sync skipped: a sync is already running in this process")
                return
            async with running:
                await _sync_once(app, settings)

        async def access_job() -> None:
            try:
                await recheck_no_view(app[DB], app[HUB])
            except Exception:
                log.exception("do-not-view check of connected agents failed")
            if not app[HUB].viewers:
                return
            try:
                await recheck_viewers(app[DB], app[HUB], roster_max_age_s(settings))
            except Exception:
                log.exception("access check of open dashboard views failed")

        async def permissions_job() -> None:
            try:
                await app[M365].graph_token()
            except M365Error as exc:
                log.warning("Microsoft 365 app permissions not checked: %s", exc)
                return
            log_permissions(settings, app[M365].app_roles)

        if settings.m365_tenant_id:
            interval = settings.roster_sync_interval_min
            # always there (paused when only by hand), so IT's button can run it now
            scheduler.add_job(
                sync_job,
                IntervalTrigger(minutes=interval or 60),
                id=SYNC_JOB,
                name="roster sync",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                **({} if interval else {"next_run_time": None}),
            )
            if M365 in app:
                scheduler.add_job(
                    permissions_job, id=PERMISSIONS_JOB, name="permission check", max_instances=1
                )
        scheduler.add_job(
            access_job,
            IntervalTrigger(seconds=settings.access_check_s),
            id=ACCESS_JOB,
            name="access check",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        app[ROSTER_JOBS] = scheduler
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)

    return ctx


async def _sync_once(app: web.Application, settings: Settings) -> None:
    try:
        async with graph_for(settings, app[M365]) as graph:
            summary = await run_sync(app[DB], graph, app[HUB], log.info, settings)
        log.info("roster sync done: %s", summary.text())
        for warning in summary.warnings:
            log.warning("roster sync: %s", warning)
        log_permissions(settings, app[M365].app_roles)
        await _reload_locations(app)
    except SyncBusy as exc:
        log.info("roster sync skipped: %s", exc)
    except (M365Error, GraphError) as exc:
        # Microsoft 365 refused or failed (a wrong or expired client secret, a missing
        # permission, Graph down): the reason is the message, no traceback
        log.error("roster sync failed; the roster is unchanged: %s", exc)
        await _warn_age(app, settings)
    except Exception:
        log.exception("roster sync failed; the roster is unchanged")
        await _warn_age(app, settings)


async def _warn_age(app: web.Application, settings: Settings) -> None:
    health = await roster_health(app[DB], settings)
    if health is None:
        return
    age = health["age_s"]
    since = "never" if age is None else f"{age / 3600:.1f} hours ago"
    log.warning(
        "roster has not followed Microsoft 365 since the last successful sync (%s)%s",
        since,
        "; viewing is refused until a sync succeeds" if health["stale"] else "",
    )


def start_sync_now(app: web.Application) -> bool:
    """Run the roster sync now, in the background (IT's button); False when one of this
    process is already waiting to start."""
    scheduler = app[ROSTER_JOBS]
    job = scheduler.get_job(SYNC_JOB)
    if job is None:
        raise ValueError("roster sync from Microsoft 365 is not configured")
    if scheduler.get_job(SYNC_NOW_JOB) is not None:
        return False
    scheduler.add_job(
        job.func, id=SYNC_NOW_JOB, name="roster sync (by hand)", misfire_grace_time=None
    )
    return True
