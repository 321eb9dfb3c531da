"""The limits the job service enforces, decided once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.settings import Settings

#: A delivered synchronous job's event stream outlives the delivery by this much (other readers finish).
STREAM_GRACE_SECONDS = 60


@dataclass(frozen=True)
class Policy:
    """What a job may use: how long it is kept, how often it may kill a worker, what one key may hold."""

    #: Listed (queue) jobs: the whole record, result and event stream.
    retention: int = 24 * 3600
    #: Synchronous jobs, once ended: status, usage and times only.
    sync_retention: int = 3600
    max_attempts: int = 3
    max_open_per_key: int = 1000
    max_waiting_per_key: int = 64
    #: Share of Redis's maxmemory above which new jobs are refused (0 or above 1: never).
    memory_high_water: float = 0.9
    #: Replicas that must hold an accepted job and a job's end before either is answered (Redis WAIT).
    replicas: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            retention=settings.job_retention_seconds,
            sync_retention=settings.sync_retention_seconds,
            max_attempts=settings.max_attempts,
            max_open_per_key=settings.max_open_jobs_per_key,
            max_waiting_per_key=settings.max_waiting_per_key,
            memory_high_water=settings.redis_memory_high_water,
            replicas=settings.redis_wait_replicas,
        )
