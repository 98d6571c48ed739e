"""Running roster sync: on demand (``klasblik roster sync``) and on a schedule inside the
server (APScheduler, job ids ``roster.sync`` and ``roster.access_check``), followed each
time by taking access away from staff who lost it."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.auth.m365.client import M365Client, M365Error
from klasblik.server.keys import DB, HUB, M365, ROSTER_JOBS
from klasblik.server.live.hub import Hub
from klasblik.server.roster.graph import GraphClient, GraphError
from klasblik.server.roster.revocation import recheck_no_view, recheck_viewers, revoke_lost_access
from klasblik.server.roster.sync import Progress, SyncBusy, SyncSummary, sync_roster
from klasblik.server.settings import Settings

__all__ = ["ACCESS_JOB", "SYNC_JOB", "graph_for", "require_tenant", "roster_jobs_ctx", "run_sync"]

log = logging.getLogger(__name__)

SYNC_JOB = "roster.sync"
ACCESS_JOB = "roster.access_check"


@contextlib.asynccontextmanager
async def graph_for(settings: Settings, m365: M365Client) -> AsyncIterator[GraphClient]:
    """A Graph client on the app token of ``m365`` (msal client credentials, cached by
    msal), closed when the block ends. The server passes its one client (``keys.M365``);
    the CLI the one it opened for its run."""
    graph = GraphClient(settings.graph_url, m365.graph_token, ca_file=settings.m365_ca_file)
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
) -> SyncSummary:
    """One sync, then access follows it: sessions and views of staff who lost access end,
    and open views are checked again."""
    summary = await sync_roster(sm, graph, progress)
    closed = await revoke_lost_access(sm, hub, summary.lost_access)
    if hub is not None:
        closed += await recheck_viewers(sm, hub)
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

        async def sync_job() -> None:
            try:
                async with graph_for(settings, app[M365]) as graph:
                    summary = await run_sync(app[DB], graph, app[HUB], log.info)
                log.info("roster sync done: %s", summary.text())
                await _reload_locations(app)
            except SyncBusy as exc:
                log.info("roster sync skipped: %s", exc)
            except (M365Error, GraphError) as exc:
                # Microsoft 365 refused or failed (a wrong or expired client secret, a
                # missing permission, Graph down): the reason is the message, no traceback
                log.error("roster sync failed; the roster is unchanged: %s", exc)
            except Exception:
                log.exception("roster sync failed; the roster is unchanged")

        async def access_job() -> None:
            try:
                await recheck_no_view(app[DB], app[HUB])
            except Exception:
                log.exception("do-not-view check of connected agents failed")
            if not app[HUB].viewers:
                return
            try:
                await recheck_viewers(app[DB], app[HUB])
            except Exception:
                log.exception("access check of open dashboard views failed")

        if settings.m365_tenant_id and settings.roster_sync_interval_min:
            scheduler.add_job(
                sync_job,
                IntervalTrigger(minutes=settings.roster_sync_interval_min),
                id=SYNC_JOB,
                name="roster sync",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
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
