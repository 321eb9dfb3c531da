"""Every `INFERQ_*` setting, read once per process into one typed object.

The API, the workers, gunicorn, Flower and the CLI all build their settings
here, so a variable has one name, one default and one reason, and the
README's configuration table is generated from this class (a unit test
keeps them equal). Nothing is read at import time: `Settings.load()` reads
the environment when called, and tests build as many differently-configured
objects as they like.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.models import ModelSpec, load_models

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "INFERQ_"


def _default_cache() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferq" / "models")


def _setting(default: Any, why: str, *, shown: str | None = None, factory: Any = None) -> Any:
    """A field with its reason; `shown` is how the README prints a computed default."""
    meta = {"why": why, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0", "the broker, job store and rate limiter (`redis://`, `rediss://` or `sentinel://`)"
    )
    models_file: str = _setting(
        str(REPO_ROOT / "config" / "models.yaml"), "the models this deployment serves", shown="config/models.yaml"
    )
    model_cache: str = _setting(
        None, "where `make models` puts the embedded models", shown="~/.cache/inferq/models", factory=_default_cache
    )
    device: str = _setting("auto", "which engine options of the models file a worker uses: cpu, gpu, or auto (CUDA?)")
    var_dir: str = _setting("var", "local state of `make run`: Redis data, the local API key file")
    max_content_length: int = _setting(4 * 1024 * 1024, "largest request body in bytes (413 above)", shown="4 MiB")
    files_dir: str = _setting("var/files", "uploaded files and batch outputs (API and workers share it)")
    max_file_bytes: int = _setting(200 * 1024 * 1024, "largest file upload in bytes (413 above)", shown="200 MiB")
    batch_window: int = _setting(256, "lines of one batch queued or running at once (the rest wait in its file)")
    batch_seconds: float = _setting(1.0, "how often batches are fed, harvested and finalized")
    worker_wait_seconds: float = _setting(10.0, "a synchronous request waits this long for a live worker, then 503")
    worker_heartbeat_ttl: float = _setting(15.0, "a worker is live while its heartbeat is younger than this")
    sync_timeout_seconds: float = _setting(600.0, "a synchronous request waits this long for its result, then 504")
    job_retention_seconds: int = _setting(24 * 3600, "finished jobs (records and streams) are kept this long")
    lease_renew_seconds: float = _setting(2.0, "a worker renews the leases of the jobs it holds this often")
    lease_timeout_seconds: float = _setting(30.0, "a lease not renewed this long means its worker died: re-queue")
    reconcile_seconds: float = _setting(5.0, "how often the reconciler looks for stale leases and overdue jobs")
    max_attempts: int = _setting(3, "a job whose worker dies this many times fails as `job_failed_repeatedly`")
    drain_seconds: float = _setting(
        30.0, "a worker asked to stop (SIGTERM) finishes its jobs this long, then hands the rest back to the queue"
    )
    orphan_sweep_seconds: float = _setting(
        30.0, "queued this long with no broker message (lost send, lost AOF tail): the message is sent again"
    )
    sync_retention_seconds: int = _setting(
        3600, "a delivered synchronous job keeps status and usage (no prompt, no result) this long"
    )
    redis_wait_replicas: int = _setting(
        0, "replicas (Sentinel) that hold an accepted job and a job's end before they are answered (WAIT, 100 ms)"
    )
    redis_memory_high_water: float = _setting(
        0.9, "above this share of Redis `maxmemory` new jobs get 503 + Retry-After; running ones still finish"
    )
    max_sequences_per_request: int = _setting(256, "prompts × max(n, best_of) above this is refused with a 400")
    max_open_jobs_per_key: int = _setting(1000, "a key's unfinished jobs (queued or running); one more is a 429")
    max_waiting_per_key: int = _setting(64, "a key's concurrent synchronous requests and open streams; more is a 429")
    max_poll_wait_seconds: float = _setting(60.0, "longest `?wait=` long-poll on a queue job")
    metrics_token: str = _setting("", "Bearer token for `/metrics` from non-loopback clients (none: loopback only)")
    bind: str = _setting("127.0.0.1:8000", "gunicorn's listen address")
    api_workers: int = _setting(
        None, "gunicorn worker processes", shown="CPUs, at least 2", factory=lambda: max(2, os.cpu_count() or 1)
    )
    api_connections: int = _setting(2000, "open connections (waiting requests, streams) per gunicorn worker")
    api_graceful_seconds: int = _setting(
        30, "SIGTERM to the API: it stops accepting, lets open responses finish this long, then closes them"
    )
    log_level: str = _setting(
        "info", "log level of the API, workers and Flower (Celery's line per task received is written at `debug` only)"
    )
    flower_address: str = _setting("127.0.0.1", "Flower's listen address (keep it off the internet)")
    flower_port: int = _setting(5555, "Flower's port")
    flower_basic_auth: str = _setting("", "Flower's `user:password` (none: generated and printed at start)")

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then `INFERQ_<NAME>` variables, then the caller's overrides."""
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            raw = os.environ.get(ENV_PREFIX + spec.name.upper())
            if raw is not None:
                values[spec.name] = _coerce(raw, type(_default(spec)))
        unknown = set(overrides) - {spec.name for spec in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return cls(**{**values, **overrides})

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @cached_property
    def models(self) -> dict[str, ModelSpec]:
        """The models file, read once per settings object."""
        return load_models(self.models_file, self.model_cache)

    @property
    def local_key_file(self) -> Path:
        return Path(self.var_dir) / "local-api-key"


def _default(spec: dataclasses.Field) -> Any:
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default  # type: ignore[misc]


def _coerce(raw: str, kind: type) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return kind(raw)


def markdown_table() -> str:
    """The README's configuration table, generated so it cannot drift."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for spec in dataclasses.fields(Settings):
        shown = spec.metadata["shown"] or repr(_default(spec)).strip("'") or "(empty)"
        rows.append(f"| `{ENV_PREFIX}{spec.name.upper()}` | {shown} | {spec.metadata['why']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
