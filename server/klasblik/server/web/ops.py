"""What operations needs of a running instance: ``/livez`` (the process answers),
``/readyz`` (it can serve: database, blob store, Redis when configured), ``/metrics``
(Prometheus text, only with the ``metrics_token`` bearer token) and the HTTP access log
(one line per request, the path without its query string).

``/healthz`` (``api.py``) stays what it was; these are new endpoints beside it, wired by
:func:`setup_ops_routes`. See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from klasblik.server.errors import ApiError
from klasblik.server.keys import (
    AGENT_SOCKETS,
    DB,
    ENGINE,
    HUB,
    LATEST,
    METRICS,
    PROXIES,
    SETTINGS,
    STORE,
)
from klasblik.server.live.hub import Hub
from klasblik.server.metrics import OpsMetrics
from klasblik.server.net import forwarded_client_ip
from klasblik.server.roster.health import roster_health
from klasblik.server.settings import Settings
from klasblik.server.storage.engine import ping

__all__ = ["AccessLogger", "livez", "metrics", "readyz", "setup_ops_routes"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("klasblik.access")

#: Longest one readiness or metrics check of a dependency may take.
CHECK_TIMEOUT_S = 3.0


def setup_ops_routes(app: web.Application) -> None:
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def livez(request: web.Request) -> web.Response:
    """The process answers: nothing else is asked (a database outage is no reason to
    restart the process; readiness says it)."""
    return web.json_response({"status": "ok"})


async def _check(coro: Any) -> str:
    """``ok``, or ``down: ErrorType`` (a type name only: the answer is public)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await coro
    except TimeoutError:
        return "down: timeout"
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """200 when this instance can serve: the database answers, the blob store is usable,
    and Redis is connected when ``redis_url`` is set; else 503 naming what is not."""
    app = request.app
    checks = {
        "database": await _check(ping(app[ENGINE])),
        "blob_store": await _check(app[STORE].check()),
    }
    if app[SETTINGS].redis_url:
        cluster = app[HUB].cluster
        checks["redis"] = (
            "down: stopped" if cluster is None else ("ok" if cluster.up else "down: disconnected")
        )
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", **checks}
    return web.json_response(body, status=200 if ready else 503)


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text. Closed unless ``metrics_token`` is set, and then only to a request
    that carries it as a bearer token."""
    app = request.app
    token = app[SETTINGS].metrics_token
    if not token:
        raise ApiError("not_found", "metrics are off (set metrics_token to turn them on)", 404)
    if not _authorized(request, token):
        resp = web.json_response(
            {"error": {"code": "unauthorized", "message": "metrics need the bearer token"}},
            status=401,
        )
        resp.headers["WWW-Authenticate"] = 'Bearer realm="klasblik-metrics"'
        return resp
    started = time.monotonic()
    db = await _check(ping(app[ENGINE]))
    db_s = time.monotonic() - started
    ops = app.get(METRICS) or OpsMetrics()
    if db == "ok":
        await _read_roster_sync(app, ops)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        Snapshot(
            app[SETTINGS],
            app[HUB],
            ops,
            hello_phase=len(app[AGENT_SOCKETS]),
            database_up=db == "ok",
            database_ping_s=db_s,
            blob_store_degraded=app[LATEST].degraded,
        )
    )
    ProcessCollector(registry=registry)
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _read_roster_sync(app: web.Application, ops: OpsMetrics) -> None:
    """The last successful roster sync as the database has it, so that a sync run by another
    instance or by ``klasblik roster sync`` counts too."""
    try:
        roster = await roster_health(app[DB], app[SETTINGS])
    except Exception:  # the figure stays as it was; /readyz and /healthz report the database
        log.warning("metrics: roster-sync health unreadable", exc_info=True)
        return
    if roster and roster["last_success"]:
        ops.roster_synced(dt.datetime.fromisoformat(roster["last_success"]).timestamp())


class Snapshot(Collector):
    """The instance's figures at one scrape, read from the services that keep them."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        ops: OpsMetrics,
        *,
        hello_phase: int,
        database_up: bool,
        database_ping_s: float,
        blob_store_degraded: bool,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.ops = ops
        self.hello_phase = hello_phase
        self.database_up = database_up
        self.database_ping_s = database_ping_s
        self.blob_store_degraded = blob_store_degraded

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        yield _gauge(
            "klasblik_agents_connected", "Agents connected here (after hello).", len(hub.agents)
        )
        yield _gauge(
            "klasblik_agents_in_hello",
            "Agent sockets open here, still in their hello phase.",
            self.hello_phase,
        )
        yield _gauge(
            "klasblik_viewers_connected", "Dashboard sockets connected here.", len(hub.viewers)
        )
        yield _gauge(
            "klasblik_students_watched",
            "Students at least one viewer here watches.",
            len(hub.watchers),
        )
        yield _counter(
            "klasblik_frames_received", "Agent frames received here.", hub.frames_received
        )
        yield _counter("klasblik_frames_sent", "Frames queued to viewers here.", hub.frames_relayed)
        dropped = CounterMetricFamily(
            "klasblik_frames_dropped", "Frames not delivered, by why.", labels=["reason"]
        )
        dropped.add_metric(["viewer_queue_full"], hub.frames_dropped)
        if hub.cluster is not None:
            dropped.add_metric(["redis_backlog"], hub.cluster.dropped)
        yield dropped
        yield _counter(
            "klasblik_slow_viewers_cut_off",
            "Dashboards disconnected because they could not keep up.",
            hub.viewers_cut_off,
        )
        yield from self._outboxes()
        yield _gauge(
            "klasblik_database_up",
            "1 when the database answered this scrape.",
            int(self.database_up),
        )
        yield _gauge(
            "klasblik_database_ping_seconds",
            "Time the database took to answer this scrape.",
            self.database_ping_s,
        )
        yield _gauge(
            "klasblik_blob_store_up",
            "0 while writes to the blob store fail.",
            int(not self.blob_store_degraded),
        )
        if self.settings.redis_url:
            cluster = hub.cluster
            yield _gauge(
                "klasblik_redis_up",
                "1 while connected to Redis.",
                int(cluster is not None and cluster.up),
            )
            if cluster is not None:
                msgs = CounterMetricFamily(
                    "klasblik_cluster_messages",
                    "Messages over Redis, by direction.",
                    labels=["direction"],
                )
                msgs.add_metric(["published"], cluster.published)
                msgs.add_metric(["received"], cluster.received)
                msgs.add_metric(["rejected"], cluster.rejected)
                yield msgs
        yield from self._jobs()
        synced = self.ops.roster_synced_at
        if synced is not None:
            yield _gauge(
                "klasblik_roster_last_sync_timestamp_seconds",
                "Unix time of the last successful roster sync in this process.",
                synced,
            )
            yield _gauge(
                "klasblik_roster_sync_age_seconds",
                "Seconds since the last successful roster sync in this process.",
                max(0.0, time.time() - synced),
            )

    def _outboxes(self) -> Iterator[Metric]:
        sides = {
            "viewer": [v.outbox.pending for v in self.hub.viewers],
            "agent": [a.outbox.pending for a in self.hub.agents.values()],
        }
        total = GaugeMetricFamily(
            "klasblik_outbox_pending_messages",
            "Messages waiting in outboxes, summed.",
            labels=["side"],
        )
        most = GaugeMetricFamily(
            "klasblik_outbox_pending_max_messages",
            "Messages waiting in the fullest outbox.",
            labels=["side"],
        )
        for side, depths in sides.items():
            total.add_metric([side], sum(depths))
            most.add_metric([side], max(depths, default=0))
        yield total
        yield most
        yield _gauge(
            "klasblik_viewer_outbox_capacity_messages",
            "Messages a viewer may have waiting before it is cut off (viewer_queue_frames).",
            self.settings.viewer_queue_frames,
        )
        if self.hub.cluster is not None:
            yield _gauge(
                "klasblik_redis_outbox_bytes",
                "Bytes of frames waiting to be published to Redis.",
                self.hub.cluster.queued_bytes,
            )

    def _jobs(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "klasblik_job_runs", "Retention job runs here, by outcome.", labels=["job", "outcome"]
        )
        for (job, outcome), n in sorted(self.ops.job_runs.items()):
            runs.add_metric([job, outcome], n)
        yield runs
        took = GaugeMetricFamily(
            "klasblik_job_last_duration_seconds", "How long the last run took.", labels=["job"]
        )
        removed = GaugeMetricFamily(
            "klasblik_job_last_removed",
            "What the last run removed, by kind.",
            labels=["job", "kind"],
        )
        success = GaugeMetricFamily(
            "klasblik_job_last_success_timestamp_seconds",
            "Unix time of the last run that did its work.",
            labels=["job"],
        )
        for job, last in sorted(self.ops.job_last.items()):
            took.add_metric([job], last.duration_s)
            for kind, n in sorted(last.removed.items()):
                removed.add_metric([job, kind], n)
        for job, at in sorted(self.ops.job_last_success.items()):
            success.add_metric([job], at)
        yield took
        yield removed
        yield success


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class AccessLogger(AbstractAccessLogger):
    """One line per HTTP request: method, path (never the query string, which can carry
    a sign-in code or other secrets), status, bytes, duration and the client's address
    (through the trusted proxies only)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        app = getattr(request, "app", None)
        proxies = app[PROXIES] if app is not None and PROXIES in app else ()
        ip = forwarded_client_ip(request, proxies)
        fields = {
            "method": request.method,
            "path": request.rel_url.path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(time * 1000, 1),
            "client": ip,
        }
        self.logger.info(
            "%s %s %s %s B %.1f ms from %s",
            fields["method"],
            fields["path"],
            fields["status"],
            fields["bytes"],
            fields["duration_ms"],
            ip,
            extra={"http": fields},
        )
