"""Batch submitters' view of jobs: the job object, ownership, long-poll, list.

Every answer comes from the job record (never from Celery, whose state says
PENDING for ids it has never seen). A job that belongs to another key is
indistinguishable from one that does not exist.
"""

from __future__ import annotations

import math
import time
from typing import Any

from app import jobs
from app.errors import NotFound
from app.schemas.queue import JobSchema
from tasks.jobstore import TERMINAL

#: Retry-After bounds for polling clients, seconds.
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 30
_job_schema = JobSchema()


def owned_job(job_id: str, owner: str) -> dict[str, Any]:
    store = jobs.store()
    record = store.get(job_id)
    if record is None or record["owner"] != owner:
        if record is None and store.existed(job_id) == owner:
            hours = store.retention / 3600
            raise NotFound(
                f"The job {job_id} finished more than {hours:g} hours ago and has expired from retention.",
                code="job_expired",
            )
        raise NotFound(f"No job with id {job_id}.", code="job_not_found")
    overdue = record["status"] == "queued" and record.get("expires_at") and record["expires_at"] < time.time()
    # The reconciler would expire it within seconds; answer truthfully now.
    if overdue and store.end_queued(job_id, record["model"], "expired"):
        record = store.get(job_id) or record
    return record


#: model -> (measured at, jobs/s): the rate changes slowly; a poll storm need not ask Redis each time.
_rates: dict[str, tuple[float, float | None]] = {}
RATE_CACHE_SECONDS = 1.0


def _throughput(model: str) -> float | None:
    measured_at, rate = _rates.get(model, (0.0, None))
    now = time.monotonic()
    if now - measured_at > RATE_CACHE_SECONDS:
        rate = jobs.store().throughput(model)
        _rates[model] = (now, rate)
    return rate


def estimated_wait(model: str, position: int | None) -> float | None:
    """Seconds until this job starts, from the model's measured completion rate."""
    if position is None:
        return None
    rate = _throughput(model)
    if not rate:
        return None
    return round((position + 1) / rate, 1)


def job_object(record: dict[str, Any]) -> dict[str, Any]:
    job_id, status = record["id"], record["status"]
    obj: dict[str, Any] = {
        key: record.get(key) for key in ("id", "status", "model", "endpoint", "priority", "attempts", "usage")
    }
    for key in ("created_at", "started_at", "completed_at", "expires_at"):
        obj[key] = int(record[key]) if record.get(key) else None
    if status != "queued":
        obj["position"] = None
    elif "position" in record:  # known from the write that created the job
        obj["position"] = record["position"]
    else:
        obj["position"] = jobs.store().position(record["model"], job_id)
    obj["estimated_wait_seconds"] = estimated_wait(record["model"], obj["position"]) if status == "queued" else None
    obj["urls"] = {
        "self": f"/queue/jobs/{job_id}",
        "cancel": f"/queue/jobs/{job_id}/cancel",
        "stream": f"/queue/jobs/{job_id}/stream",
    }
    if status == "completed":
        obj["result"] = record.get("result")
    if status == "failed":
        obj["error"] = record.get("error")
    return _job_schema.dump(obj)


def retry_after(obj: dict[str, Any]) -> int | None:
    if obj["status"] in TERMINAL:
        return None
    if obj["status"] == "in_progress":
        return MIN_RETRY_AFTER
    wait = obj.get("estimated_wait_seconds")
    return MAX_RETRY_AFTER if wait is None else max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(wait / 2)))


def long_poll(job_id: str, record: dict[str, Any], wait: float) -> dict[str, Any]:
    """Return as soon as the job ends, or after `wait` seconds."""
    if record["status"] not in TERMINAL and wait > 0:
        jobs.wait_ended(job_id, wait)
        record = jobs.store().get(job_id) or record
    return record


def list_jobs(owner: str, status: str | None, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
    """Newest first; `after` is the last id of the previous page."""
    store = jobs.store()
    start = 0
    if after:
        rank = store.owner_rank(owner, after)
        if rank is None:
            raise NotFound(f"No job with id {after}.", param="after", code="job_not_found")
        start = rank + 1
    page: list[dict[str, Any]] = []
    batch = max(limit * 2, 50)
    while len(page) <= limit:
        ids = store.owner_jobs(owner, start, batch)
        if not ids:
            break
        start += len(ids)
        gone = []
        for job_id in ids:
            record = store.get(job_id)
            if record is None:
                gone.append(job_id)  # past retention
            elif status is None or record["status"] == status:
                page.append(record)
        store.forget(owner, gone)
    has_more = len(page) > limit
    return [job_object(record) for record in page[:limit]], has_more
