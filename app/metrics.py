"""Prometheus metrics at `/metrics`.

Two sources, merged in one scrape:
- per-request HTTP metrics (requests by route and status, latency), counted
  by prometheus-client in each process. gunicorn runs several processes, so
  under gunicorn they are kept in multiprocess mode (gunicorn.conf.py sets
  PROMETHEUS_MULTIPROC_DIR) and any process's scrape sums all of them.
- service-wide state read from Redis at scrape time: queue depth and jobs in
  progress per model, each model's backlog (`inferq_backlog`, tasks.backlog:
  what an autoscaler scales on), jobs by final status, tokens, and each
  worker's engine load from its heartbeat. Every API instance reports the same numbers.

Who may scrape: these numbers describe every tenant's traffic, so an API key
is not enough. A client on loopback (not forwarded by a proxy) may scrape
freely; from elsewhere the request must carry `Authorization: Bearer
<METRICS_TOKEN>` (INFERQ_METRICS_TOKEN); without a token configured, others
get 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.errors import APIError
from tasks import stats
from tasks.backlog import backlogs
from tasks.heartbeat import live_workers, worker_loads, workers_key

#: This process's HTTP metrics (in multiprocess mode they are also written to files).
LOCAL = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "inferq_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
    registry=LOCAL,
)
LATENCY = Histogram(
    "inferq_http_request_duration_seconds",
    "Time to the response headers (a stream's first byte), by route.",
    ["method", "route"],
    registry=LOCAL,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
UNMATCHED = "<unmatched>"


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
    return response


class RedisCollector:
    """Reads the service-wide numbers from Redis when Prometheus scrapes."""

    def __init__(self, app: Flask) -> None:
        self.config = app.extensions["inferq.settings"]
        self.jobs = app.extensions["inferq.jobs"]
        self.redis = self.jobs.redis

    def collect(self) -> Iterator[Metric]:
        models = list(self.config.models)
        depth = GaugeMetricFamily("inferq_queue_depth", "Jobs waiting in each model's queue.", labels=["model"])
        live = GaugeMetricFamily("inferq_live_workers", "Workers with a fresh heartbeat, per model.", labels=["model"])
        jobs = GaugeMetricFamily("inferq_jobs", "Jobs queued or running now, per model.", labels=["model", "status"])
        queued = self.jobs.queue_depths(models)
        running = self.jobs.running_per_model()
        for model, count in zip(models, queued, strict=True):
            depth.add_metric([model], count)
            jobs.add_metric([model, "queued"], count)
            jobs.add_metric([model, "in_progress"], running.get(model, 0))
            live.add_metric([model], live_workers(self.redis, model, self.config.worker_heartbeat_ttl))
        yield from (depth, jobs, live, self._backlog(models))
        yield from self._counters(models)
        yield from self._engines(models)

    def _backlog(self, models: list[str]) -> Metric:
        """What an autoscaler scales on (tasks.backlog); `sum by (model)` is the whole backlog."""
        family = GaugeMetricFamily(
            "inferq_backlog",
            "Work per model: waiting (in the broker, every priority), reserved (received by a worker, "
            "not started) and running.",
            labels=["model", "state"],
        )
        for backlog in backlogs(self.jobs, models):
            for state in ("waiting", "reserved", "running"):
                family.add_metric([backlog.model, state], getattr(backlog, state))
        return family

    def _counters(self, models: list[str]) -> Iterator[Metric]:
        values = stats.read(self.redis)
        submitted = CounterMetricFamily("inferq_jobs_submitted", "Jobs accepted, per model.", labels=["model"])
        ended = CounterMetricFamily(
            "inferq_jobs_finished",
            "Jobs ended, by final status (completed, failed, cancelled, expired).",
            labels=["model", "status"],
        )
        tokens = CounterMetricFamily(
            "inferq_tokens", "Tokens processed: prompt (read) and completion (generated).", labels=["model", "kind"]
        )
        for field, value in sorted(values.items()):
            kind, _, rest = field.partition(":")
            if kind == "submitted":
                submitted.add_metric([rest], value)
            elif kind == "ended":
                model, _, status = rest.rpartition(":")
                ended.add_metric([model, status], value)
            elif kind == "tokens":
                model, _, part = rest.rpartition(":")
                tokens.add_metric([model, part], value)
        yield from (submitted, ended, tokens)

    def _engines(self, models: list[str]) -> Iterator[Metric]:
        requests_ = GaugeMetricFamily(
            "inferq_worker_engine_requests",
            "Requests each worker's engine holds: running (up to its max_num_seqs slots) and waiting.",
            labels=["model", "worker", "state"],
        )
        healthy = GaugeMetricFamily(
            "inferq_worker_engine_healthy", "1 if the engine answers.", labels=["model", "worker"]
        )
        restarts = CounterMetricFamily(
            "inferq_worker_engine_restarts", "Engine restarts after a crash.", labels=["model", "worker"]
        )
        specs = self.config.models
        ttl = self.config.worker_heartbeat_ttl
        seconds, micros = self.redis.time()  # heartbeats are Redis-clock times (tasks.heartbeat)
        now = seconds + micros / 1e6
        for model in models:
            alive = {m.decode() for m in self.redis.zrangebyscore(workers_key(model), now - ttl, "+inf")}
            slots = specs[model].max_concurrency
            for worker, load in sorted(worker_loads(self.redis, model).items()):
                if worker not in alive:
                    continue  # a stale entry of a worker that died without cleaning up
                held = int(load.get("requests") or 0)
                requests_.add_metric([model, worker, "running"], min(held, slots))
                requests_.add_metric([model, worker, "waiting"], max(0, held - slots))
                healthy.add_metric([model, worker], 1 if load.get("healthy") else 0)
                restarts.add_metric([model, worker], int(load.get("restarts") or 0))
        yield from (requests_, healthy, restarts)


class _Local:
    """This process's registry, or every gunicorn process's files in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        try:
            # prometheus-client reads PROMETHEUS_MULTIPROC_DIR itself (gunicorn.conf.py sets it).
            MultiProcessCollector(registry)
        except ValueError:  # not under gunicorn: this process's own registry
            yield from LOCAL.collect()
            return
        yield from registry.collect()


def _loopback() -> bool:
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _allowed() -> bool:
    token = current_app.extensions["inferq.settings"].metrics_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    return _loopback()


def require_operator() -> None:
    """403 unless the caller may read service-wide numbers (loopback, or the metrics token)."""
    if not _allowed():
        raise APIError(
            "Metrics are served to loopback clients, or with `Authorization: Bearer <METRICS_TOKEN>`.",
            status=403,
            code="forbidden",
        )


def metrics() -> Response:
    require_operator()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Local())
    registry.register(current_app.extensions["inferq.metrics"])
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Time every request (first hook, so a 401 is timed too) and serve `/metrics`."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)
    app.extensions["inferq.metrics"] = RedisCollector(app)
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


def scrape_values(text: str) -> dict[str, Any]:
    """Parse an exposition into {sample name{labels}: value} (for tests and tooling)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values
