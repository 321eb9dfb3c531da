"""The life of one job inside a worker, shared by every task kind.

Claim it (compare-and-set from `queued`, which hands back the stored
request), let the cancel listener know, run the work on the engine, restart a
dead engine and run it again, then write exactly one end. Any exception ends
the job as `failed` with an OpenAI error body: a job never vanishes, and no
internal error text reaches the client (it goes to the worker's log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.jobs import Claim, JobService
from tasks.protocol.errors import APIError, ServerError, ServiceUnavailable

log = logging.getLogger(__name__)

#: How often one job may see its engine die and restart before it fails.
MAX_ENGINE_RESTARTS = 3
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

Work = Callable[[Claim, JobService], dict[str, Any]]


class Tracker(Protocol):
    def track(self, job_id: str, requests: int) -> None: ...
    def untrack(self, job_id: str) -> None: ...


class Holder(Protocol):
    def release(self, job_id: str) -> None: ...


@dataclass
class WorkerContext:
    """What every task of this worker process shares; set once the engine is up (tasks.worker)."""

    service: JobService
    model: str
    listener: Tracker
    leases: Holder


_context: WorkerContext | None = None


def set_context(context: WorkerContext) -> None:
    global _context
    _context = context


class PartialOutputLost(RuntimeError):
    """The engine died after part of a streamed answer was sent: it cannot be resent cleanly."""


def with_engine_restarts(job_id: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `run`; if the engine dies under it, restart the engine and run it again."""
    from workers import runtime
    from workers.engine import EngineDead

    engine = runtime.current()
    for attempt in range(MAX_ENGINE_RESTARTS + 1):
        generation = engine.generation
        try:
            return run()
        except EngineDead:
            if attempt == MAX_ENGINE_RESTARTS:
                raise
            log.warning("job %s: engine died (attempt %d); restarting and retrying", job_id, attempt + 1)
            engine.restart(generation)
    raise AssertionError("unreachable")


def _failure(exc: Exception, job_id: str) -> APIError:
    """The one place a worker-side failure becomes the client's error."""
    from workers.engine import EngineDead, RequestRejected

    if isinstance(exc, RequestRejected):
        return APIError(f"The engine refused the request: {exc}", param=None)
    if isinstance(exc, (EngineDead, PartialOutputLost)):
        return ServiceUnavailable("The engine failed while running this job; retry it.", code="engine_failed")
    log.error("job %s failed", job_id, exc_info=exc)
    return ServerError("The job failed inside the worker.", code="job_failed")


def run_job(job_id: str, work: Work) -> None:
    context = _context
    if context is None:
        raise RuntimeError("no worker context: start workers with `inferq worker --model ...`")
    claim = context.service.claim(job_id, context.model)
    if claim is None:
        log.info("job %s is not queued (running elsewhere, or ended); skipping", job_id)
        context.leases.release(job_id)
        return
    context.listener.track(job_id, len(claim.request.prompts))
    try:
        _run_claimed(context.service, claim, work)
    finally:
        context.listener.untrack(job_id)
        context.leases.release(job_id)


def _run_claimed(service: JobService, claim: Claim, work: Work) -> None:
    if service.is_cancelled(claim.job_id):
        service.finish(claim, "cancelled", usage=NO_USAGE)  # cancelled before the listener knew: nothing ran
        return
    try:
        body = with_engine_restarts(claim.job_id, lambda: work(claim, service))
    except Exception as exc:  # noqa: BLE001 - a job must end with a status, never vanish
        error = _failure(exc, claim.job_id)
        service.finish(claim, "failed", error=error.to_dict(), error_status=error.status)
    else:
        # A job cancelled while it ran stays cancelled (the finish step decides), billed for what it generated.
        service.finish(claim, "completed", result=body, usage=body.get("usage"))
