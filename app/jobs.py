"""The API's side of the queue: submit a job, wait for its end.

Synchronous endpoints are thin: they create the same job a batch submitter
would, then block on its event stream until the worker writes the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from flask import Response, current_app, g

from app.context import settings
from tasks.heartbeat import live_workers
from tasks.jobs import Job, JobService
from tasks.models import ModelSpec
from tasks.protocol.errors import APIError, GatewayTimeout, ServerError, ServiceUnavailable

#: A wait for events lasts at most this long per call, so a waiter notices its deadline.
BLOCK_MS = 5_000
#: How long a model's worker, once seen live, is taken as live by this process.
LIVE_SEEN_SECONDS = 1.0
_live_seen: dict[str, float] = {}


def service() -> JobService:
    return current_app.extensions["inferq.jobs"]


def owner() -> str:
    """The caller's key id (app.auth sets it before any route runs)."""
    return g.owner


def wait_for_worker(spec: ModelSpec) -> None:
    """503 unless a worker for this model is live (waiting up to the configured time).

    A worker seen live within LIVE_SEEN_SECONDS is taken as live without
    asking Redis again: a heartbeat is good for its whole TTL anyway, and a
    busy API would otherwise spend a round trip per request on it.
    """
    if time.monotonic() - _live_seen.get(spec.id, -LIVE_SEEN_SECONDS) < LIVE_SEEN_SECONDS:
        return
    cfg = settings()
    deadline = time.monotonic() + cfg.worker_wait_seconds
    client = service().redis
    while live_workers(client, spec.id, cfg.worker_heartbeat_ttl) == 0:
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"No worker is serving the model `{spec.id}` right now; retry later.",
                headers={"Retry-After": "5"},
            )
        time.sleep(0.25)
    _live_seen[spec.id] = time.monotonic()


def events(job_id: str, timeout: float, last_id: str = "0-0") -> Iterator[tuple[str, dict[str, str]]]:
    """Yield the job's events until its end event; raise on timeout."""
    deadline = time.monotonic() + timeout
    with service().watch(job_id, last_id) as waiter:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayTimeout(f"The job {job_id} did not finish within {timeout:.0f} s.")
            for entry_id, event in waiter.read(int(min(remaining * 1000, BLOCK_MS))):
                yield entry_id, event
                if event["type"] == "end":
                    return


def wait_ended(job_id: str, timeout: float) -> bool:
    """Block until the job ends or `timeout` passes; True if it ended."""
    try:
        for _ in events(job_id, timeout):
            pass
    except GatewayTimeout:
        return False
    return True


def error_of(job: Job) -> APIError:
    """Why an ended job has no body: the error its worker stored, or how it ended."""
    if job.error:
        return APIError.from_dict(job.error, job.error_status or 500)
    return ServerError(f"The job ended as {job.status}.", code=job.status)


def wait_end(job: Job, timeout: float) -> dict[str, str]:
    """Block until the job ends; its end event.

    A caller that gives up (504) cancels the job: nobody would read its answer,
    and it would hold an engine slot and bill its key for nothing.
    """
    try:
        for _, event in events(job.id, timeout):
            if event["type"] == "end":
                return event
    except GatewayTimeout:
        service().cancel(job)
        service().release(job)
        raise
    raise AssertionError("unreachable: a job's events end with its end event")


def wait_collected(job: Job, timeout: float, *, decode_result: bool = True) -> Job:
    """Block until the job ends; return its ended record, read once.

    A body carried by the end event is no longer in the record (the worker's
    finish trimmed it): it is put back from the event.
    """
    body = wait_end(job, timeout).get("result")
    ended = _collected(job, decode_result=decode_result)
    if body is not None:
        ended.result_json = body
        ended.result = json.loads(body) if decode_result else None
    return ended


def _collected(job: Job, *, decode_result: bool) -> Job:
    ended = service().collect(job, decode_result=decode_result)
    if ended is None:
        raise ServerError("The job record disappeared.")
    return ended


def wait_reply(job: Job, timeout: float) -> Response:
    """Block until the job ends; answer with its body as the worker stored it, or raise its error.

    The body is sent on as stored, never decoded and encoded again: the two
    would format every float of an embeddings reply twice more (bench/bench_embeddings.py).
    A completed job's end event carries its body, and the worker's finish has
    already trimmed its record and freed its wait slot: the answer goes out
    with no further Redis write.
    """
    body = wait_end(job, timeout).get("result")
    if body is not None:
        return current_app.response_class(body + "\n", mimetype="application/json")
    ended = _collected(job, decode_result=False)
    if ended.status == "completed" and ended.result_json is not None:
        return current_app.response_class(ended.result_json + "\n", mimetype="application/json")
    raise error_of(ended)
