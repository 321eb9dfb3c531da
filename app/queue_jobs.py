"""Batch submitters' view of jobs: the job object, its Retry-After, long-poll and listing.

Every answer comes from the job record (never from Celery, whose state says
PENDING for ids it has never seen).
"""

from __future__ import annotations

import math
import time
from typing import Any

from app import jobs
from app.schemas.queue import JobSchema
from tasks.jobs import Job
from tasks.protocol.errors import NotFound

#: Retry-After bounds for polling clients, seconds.
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 30
RATE_CACHE_SECONDS = 1.0
_job_schema = JobSchema()
#: model -> (measured at, jobs/s): the rate changes slowly; a poll storm need not ask Redis each time.
_rates: dict[str, tuple[float, float | None]] = {}


def _throughput(model: str) -> float | None:
    measured_at, rate = _rates.get(model, (0.0, None))
    now = time.monotonic()
    if now - measured_at > RATE_CACHE_SECONDS:
        rate = jobs.service().throughput(model)
        _rates[model] = (now, rate)
    return rate


def estimated_wait(model: str, position: int | None) -> float | None:
    """Seconds until this job starts, from the model's measured completion rate."""
    if position is None:
        return None
    rate = _throughput(model)
    return round((position + 1) / rate, 1) if rate else None


def _seconds(value: float | None) -> int | None:
    return int(value) if value else None


def job_object(job: Job) -> dict[str, Any]:
    position = jobs.service().position(job)
    obj: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "endpoint": job.endpoint,
        "priority": job.priority,
        "attempts": job.attempts,
        "usage": job.usage,
        "created_at": _seconds(job.created_at),
        "started_at": _seconds(job.started_at),
        "completed_at": _seconds(job.completed_at),
        "expires_at": _seconds(job.expires_at),
        "position": position,
        "estimated_wait_seconds": estimated_wait(job.model, position),
        "urls": {
            "self": f"/queue/jobs/{job.id}",
            "cancel": f"/queue/jobs/{job.id}/cancel",
            "stream": f"/queue/jobs/{job.id}/stream",
        },
    }
    if job.status == "completed":
        obj["result"] = job.result
    if job.status == "failed":
        obj["error"] = job.error
    return _job_schema.dump(obj)


def retry_after(job: Job, obj: dict[str, Any]) -> int | None:
    if job.ended:
        return None
    if job.status == "in_progress":
        return MIN_RETRY_AFTER
    wait = obj.get("estimated_wait_seconds")
    return MAX_RETRY_AFTER if wait is None else max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(wait / 2)))


def long_poll(job: Job, wait: float) -> Job:
    """Return as soon as the job ends, or after `wait` seconds."""
    if not job.ended and wait > 0:
        jobs.wait_ended(job.id, wait)
        job = jobs.service().get(job.id) or job
    return job


def list_jobs(owner: str, status: str | None, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
    """Newest first; `after` is the last id of the previous page."""
    service = jobs.service()
    if after and not service.knows(owner, after):
        raise NotFound(f"No job with id {after}.", param="after", code="job_not_found")
    page, has_more = service.owner_page(owner, status, limit, after)
    return [job_object(job) for job in page], has_more
