"""Enqueue a job and wait for it: the API's side of the queue.

Synchronous endpoints are thin: they create the same job a batch submitter
would, then block on its event stream until the worker writes the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import current_app

from app.context import settings
from app.errors import APIError, GatewayTimeout, ServiceUnavailable
from tasks.dispatch import dispatch
from tasks.heartbeat import live_workers
from tasks.jobstore import JobStore, new_job_id
from tasks.models import ModelSpec

#: XREAD blocks at most this long per call, so a waiter notices its deadline.
BLOCK_MS = 5_000
DEFAULT_PRIORITY = 5


def store() -> JobStore:
    return current_app.extensions["inferq.jobstore"]


def wait_for_worker(spec: ModelSpec) -> None:
    """503 unless a worker for this model is live (waiting up to the configured time)."""
    cfg = settings()
    deadline = time.monotonic() + cfg.worker_wait_seconds
    client = store().redis
    while live_workers(client, spec.id, cfg.worker_heartbeat_ttl) == 0:
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"No worker is serving the model `{spec.id}` right now; retry later.",
                headers={"Retry-After": "5"},
            )
        time.sleep(0.25)


def submit(
    spec: ModelSpec,
    request: dict[str, Any],
    *,
    owner: str,
    stream: bool,
    priority: int = DEFAULT_PRIORITY,
    expires_in: float | None = None,
    listed: bool = False,
    task: str | None = None,
) -> dict[str, Any]:
    """Record the job, then send its message; the record exists before any worker can see it.

    Returns the new record, with its queue `position` at submission.
    """
    job_id = new_job_id()
    record = store().create(
        job_id=job_id,
        owner=owner,
        model=spec.id,
        endpoint=request["endpoint"],
        request=request,
        stream=stream,
        priority=priority,
        expires_in=expires_in,
        listed=listed,
    )
    dispatch(current_app.extensions["celery"], job_id, request, priority, task)
    return record


def events(job_id: str, timeout: float, last_id: str = "0-0") -> Iterator[tuple[str, dict[str, str]]]:
    """Yield the job's events until its end event; raise on timeout."""
    deadline = time.monotonic() + timeout
    jobs = store()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GatewayTimeout(f"The job {job_id} did not finish within {timeout:.0f} s.")
        for entry_id, event in jobs.read_events(job_id, last_id, int(min(remaining * 1000, BLOCK_MS))):
            last_id = entry_id
            yield entry_id, event
            if event.get("type") == "end":
                return


def wait_ended(job_id: str, timeout: float) -> bool:
    """Block until the job ends or `timeout` passes; True if it ended."""
    try:
        for _ in events(job_id, timeout):
            pass
    except GatewayTimeout:
        return False
    return True


def wait_result(job_id: str, timeout: float) -> dict[str, Any]:
    """Block until the job ends; return its body or raise its error."""
    for _ in events(job_id, timeout):
        pass
    record = store().get(job_id)
    if record is None:
        raise APIError("The job record disappeared.", status=500, type="server_error")
    if record["status"] == "completed":
        return record["result"]
    if record.get("error"):
        raise APIError.from_dict(record["error"], record.get("error_status", 500))
    raise APIError(f"The job ended as {record['status']}.", status=500, type="server_error")
