"""The scheduled retention jobs: the blob sweep every ``sweep_interval_min`` minutes and the
nightly purge at ``purge_time`` (``timezone``, Europe/Amsterdam by default).

APScheduler 3 has no cross-process locking, so each job body takes a database lock
(``joblock.py``) and the nightly purge also records its run in ``job_runs``: several
instances that fire at the same moment, or one after the other, purge once per night. A
run that was cut off is not marked finished, so the next trigger (or a restart) redoes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from klasblik.server.access import audit
from klasblik.server.keys import DB, ENGINE, LATEST, METRICS, RETENTION_JOBS, SETTINGS, STORE
from klasblik.server.metrics import OpsMetrics
from klasblik.server.retention.joblock import job_lock
from klasblik.server.retention.purge import Clock, PurgeReport, purge, sweep
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import BlobStore, BlobStoreError
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.storage.models import JobRun, utcnow

__all__ = ["NIGHTLY", "SWEEP", "JobRunner", "jobs_ctx"]

log = logging.getLogger(__name__)

#: Seconds after start of the first sweep (a restart never waits a full interval).
FIRST_SWEEP_S = 5.0
NIGHTLY = "nightly-purge"
SWEEP = "blob-sweep"
Outcome = Literal["done", "busy", "already-done", "over-budget"]


class JobRunner:
    """Runs the retention jobs of one instance, each under its database lock."""

    def __init__(
        self,
        engine: AsyncEngine,
        sm: async_sessionmaker[AsyncSession],
        store: BlobStore,
        settings: Settings,
        now: Clock = utcnow,
        latest: LatestWriter | None = None,
        metrics: OpsMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.sm = sm
        self.store = store
        self.settings = settings
        self.now = now
        self.latest = latest
        self.tz = zoneinfo.ZoneInfo(settings.timezone)
        self.last_report: PurgeReport | None = None
        #: sweeps cut off at their time budget (``sweep_budget_min``; ``budget_s`` in tests)
        self.over_budget = 0
        self.budget_s: float | None = None
        #: where each run's outcome, duration and counts go (``/metrics``)
        self.metrics = metrics or OpsMetrics()

    def night_key(self, moment: dt.datetime | None = None) -> str:
        """The night a purge at ``moment`` belongs to: the local date of the last purge_time
        at or before it."""
        local = (moment or self.now()).astimezone(self.tz)
        hh, mm = (int(x) for x in self.settings.purge_time.split(":"))
        if (local.hour, local.minute) < (hh, mm):
            local -= dt.timedelta(days=1)
        return local.date().isoformat()

    async def run_sweep(self) -> Outcome:
        async with job_lock(self.engine, SWEEP) as got:
            if not got:
                self.metrics.job_finished(SWEEP, "busy", 0.0)
                return "busy"
            started = time.monotonic()
            budget = (
                self.budget_s if self.budget_s is not None else self.settings.sweep_budget_min * 60
            )
            try:
                async with asyncio.timeout(budget):
                    deleted = await sweep(
                        self.store, self.now, dt.timedelta(hours=self.settings.sweep_max_age_h)
                    )
            except TimeoutError:
                self.over_budget += 1
                log.error(
                    "blob sweep cut off after %.0f s, at sweep_budget_min (%s min): the "
                    "48-hour promise depends on it; the next sweep starts now; see "
                    "docs/operations.md",
                    time.monotonic() - started,
                    self.settings.sweep_budget_min,
                )
                self.metrics.job_finished(SWEEP, "over-budget", time.monotonic() - started)
                return "over-budget"
            took = time.monotonic() - started
            if deleted:
                log.info("blob sweep deleted %d blob(s) in %.1f s", deleted, took)
            self.metrics.job_finished(SWEEP, "done", took, {"blobs": deleted})
            return "done"

    async def run_nightly(self) -> Outcome:
        """The nightly purge, at most once per night over every instance."""
        key = self.night_key()
        started = time.monotonic()
        async with job_lock(self.engine, NIGHTLY) as got:
            if not got:
                log.info("nightly purge %s runs in another instance", key)
                self.metrics.job_finished(NIGHTLY, "busy", 0.0)
                return "busy"
            async with self.sm() as session, session.begin():
                row = await session.get(JobRun, (NIGHTLY, key))
                if row is not None and row.finished_at is not None:
                    self.metrics.job_finished(NIGHTLY, "already-done", 0.0)
                    return "already-done"
                if row is None:
                    session.add(JobRun(job=NIGHTLY, run_key=key, started_at=self.now()))
                else:
                    row.started_at = self.now()  # a cut-off run, redone
            report = await purge(self.sm, self.store, self.settings, self.now, latest=self.latest)
            self.last_report = report
            summary = report.summary()
            async with self.sm() as session, session.begin():
                row = await session.get(JobRun, (NIGHTLY, key))
                assert row is not None
                row.finished_at = self.now()
                row.summary = summary
            await audit.record(
                self.sm,
                "system",
                audit.Actions.PURGE,
                "",
                json.dumps({"night": key, "summary": summary}),
            )
            log.info("nightly purge %s %s", key, summary)
            self.metrics.job_finished(NIGHTLY, "done", time.monotonic() - started, report.counts())
            return "done"


def _guarded(
    name: str,
    tasks: set[asyncio.Task[Any]],
    fn: Any,
    job: str = "",
    metrics: OpsMetrics | None = None,
) -> Any:
    """A job body that logs instead of raising and can be cancelled at shutdown; a failed
    run counts as ``failed`` for ``job`` in ``metrics``."""

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        started = time.monotonic()
        try:
            await fn()
        except BlobStoreError as exc:
            log.warning("%s could not reach the blob store: %s (retried next run)", name, exc)
            if metrics is not None:
                metrics.job_finished(job, "failed", time.monotonic() - started)
        except Exception:
            log.exception("%s failed (retried next run)", name)
            if metrics is not None:
                metrics.job_finished(job, "failed", time.monotonic() - started)
        finally:
            tasks.discard(task)

    return body


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: start the scheduler after the resources exist; stop it before they go."""

    settings = app[SETTINGS]
    if not settings.jobs:
        yield
        return
    runner = JobRunner(
        app[ENGINE], app[DB], app[STORE], settings, latest=app[LATEST], metrics=app.get(METRICS)
    )
    app[RETENTION_JOBS] = runner
    tasks: set[asyncio.Task[Any]] = set()
    tz = zoneinfo.ZoneInfo(settings.timezone)
    hh, mm = (int(x) for x in settings.purge_time.split(":"))
    scheduler = AsyncIOScheduler(timezone=tz)
    now = dt.datetime.now(tz)

    async def sweep_now_again() -> None:
        if await runner.run_sweep() == "over-budget":  # cut off: start the next one at once
            scheduler.modify_job(SWEEP, next_run_time=dt.datetime.now(tz))

    scheduler.add_job(
        _guarded("blob sweep", tasks, sweep_now_again, SWEEP, runner.metrics),
        IntervalTrigger(minutes=settings.sweep_interval_min, timezone=tz),
        id=SWEEP,
        name="blob sweep",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        # APScheduler skips a run more than 1 s late by default: a busy loop or a suspended
        # machine would then skip sweeps. A late sweep always runs (once: coalesce).
        misfire_grace_time=None,
        next_run_time=now + dt.timedelta(seconds=FIRST_SWEEP_S),
    )
    scheduler.add_job(
        _guarded("nightly purge", tasks, runner.run_nightly, NIGHTLY, runner.metrics),
        CronTrigger(hour=hh, minute=mm, timezone=tz),
        id=NIGHTLY,
        name="nightly purge",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    # A night missed while no instance ran is caught up shortly after start.
    scheduler.add_job(
        _guarded("nightly purge (catch-up)", tasks, runner.run_nightly, NIGHTLY, runner.metrics),
        "date",
        run_date=now + dt.timedelta(seconds=60),
        id=NIGHTLY + "-catch-up",
        name="nightly purge (catch-up)",
        replace_existing=True,
        misfire_grace_time=None,
    )
    scheduler.start()
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
