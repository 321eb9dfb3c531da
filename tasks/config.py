"""Service settings: defaults, then INFERQ_* environment variables, then the caller's.

Shared by the API, the Celery app and the worker so all three agree on Redis,
queues and timeouts. Nothing happens at import time: every call builds fresh
dicts, so tests can run several differently-configured apps in one process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workers.models import ModelSpec, load_models

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "INFERQ_"


def defaults() -> dict[str, Any]:
    return {
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "MODELS_FILE": str(REPO_ROOT / "config" / "models.yaml"),
        # Largest request body accepted, in bytes.
        "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
        # How long a synchronous request waits for a live worker before 503.
        "WORKER_WAIT_SECONDS": 10.0,
        # A worker is live while its heartbeat is younger than this.
        "WORKER_HEARTBEAT_TTL": 15.0,
        # How long a synchronous request waits for its result before 504.
        "SYNC_TIMEOUT_SECONDS": 600.0,
        # How long finished jobs (records and streams) are kept.
        "JOB_RETENTION_SECONDS": 24 * 3600,
        # Above the longest generation, or Redis redelivers running jobs.
        "VISIBILITY_TIMEOUT": 4 * 3600,
        # A worker renews the leases of the jobs it holds this often; a lease
        # not renewed for LEASE_TIMEOUT_SECONDS means the worker died, and the
        # reconciler (every RECONCILE_SECONDS) puts its jobs back in the queue.
        "LEASE_RENEW_SECONDS": 2.0,
        "LEASE_TIMEOUT_SECONDS": 30.0,
        "RECONCILE_SECONDS": 5.0,
        # Batch submitters: longest long-poll, and the default/maximum list page.
        "MAX_POLL_WAIT_SECONDS": 60.0,
        "MAX_LIST_LIMIT": 100,
        # Bearer token that unlocks `/metrics` from other hosts; without one,
        # only loopback clients (not behind a proxy) may scrape (app.metrics).
        "METRICS_TOKEN": "",
    }


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config = defaults()
    for key, default in list(config.items()):
        env_value = os.environ.get(ENV_PREFIX + key)
        if env_value is not None:
            config[key] = _coerce(env_value, default)
    config.update(overrides or {})
    if "MODELS" not in config:
        config["MODELS"] = load_models(config["MODELS_FILE"])
    return config


def model_specs(config: dict[str, Any]) -> dict[str, ModelSpec]:
    return config["MODELS"]
