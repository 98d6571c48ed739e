"""Figures for ``/metrics`` that no service keeps by itself: the retention jobs' last
results and durations, and when the roster was last synced.

A leaf (imports nothing of the server), so every folder may report to it; one instance
per application, at ``keys.METRICS``. ``web/ops.py`` turns it, with the hub's and the
cluster link's own counters, into Prometheus text at each scrape.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["JobResult", "OpsMetrics"]


@dataclass(frozen=True, slots=True)
class JobResult:
    """The last finished run of one job."""

    outcome: str  # done, busy, already-done, failed
    duration_s: float
    finished_at: float  # Unix time
    #: what the run removed, by kind (sweep: blobs; purge: the report's counts)
    removed: dict[str, int]


@dataclass
class OpsMetrics:
    #: (job, outcome) -> number of runs
    job_runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: job -> its last run
    job_last: dict[str, JobResult] = field(default_factory=dict)
    #: job -> Unix time of its last run that did its work ("done")
    job_last_success: dict[str, float] = field(default_factory=dict)
    #: Unix time of the last successful roster sync in this process (None: none yet)
    roster_synced_at: float | None = None

    def job_finished(
        self,
        job: str,
        outcome: str,
        duration_s: float,
        removed: dict[str, int] | None = None,
    ) -> None:
        """Record one run of a retention job (``outcome``: done, busy, already-done, failed)."""
        now = time.time()
        self.job_runs[(job, outcome)] += 1
        self.job_last[job] = JobResult(outcome, duration_s, now, dict(removed or {}))
        if outcome == "done":
            self.job_last_success[job] = now

    def roster_synced(self, at: float | None = None) -> None:
        """The roster code calls this after each successful sync (Unix time; default now)."""
        self.roster_synced_at = time.time() if at is None else at
