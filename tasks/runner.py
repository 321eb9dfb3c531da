"""The life of one job inside a worker, shared by every task kind.

Claim it (compare-and-set from `queued`, which hands back the stored
request), let the cancel listener know, run the work on the engine within the
model's time limit, restart a dead engine and run it again, then write
exactly one end (retrying while Redis is briefly away or full). Any other
exception ends the job as `failed` with an OpenAI error body: a job never
vanishes, and no internal error text reaches the client (it goes to the
worker's log). An attempt that was superseded (re-queued while it ran), or
that lost Redis mid-run, writes nothing: the reconciler re-queues it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis

from tasks.jobs import Claim, JobService, Superseded

if TYPE_CHECKING:
    from tasks.drain import Drain
from tasks.protocol.errors import APIError, ServerError, ServiceUnavailable

log = logging.getLogger(__name__)

#: How often one job may see its engine die and restart before it fails.
MAX_ENGINE_RESTARTS = 3
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
#: How long a finished attempt keeps trying to write its end while Redis is away or full.
FINISH_RETRY_SECONDS = 120.0

#: The work of one attempt: (claim, service, deadline on time.monotonic()) -> the OpenAI body.
Work = Callable[[Claim, JobService, float], dict[str, Any]]


class TimeLimitExceeded(RuntimeError):
    """The generation ran past the model's time limit; `usage` is what it computed (and is billed)."""

    def __init__(self, usage: dict[str, int]) -> None:
        super().__init__("past the model's time limit")
        self.usage = usage


class Tracker(Protocol):
    def track(self, job_id: str, requests: int, attempt: int | None = None) -> bool: ...
    def untrack(self, job_id: str) -> None: ...


class Holder(Protocol):
    def started(self, job_id: str) -> None: ...
    def flush(self) -> None: ...
    def release(self, job_id: str) -> None: ...


@dataclass
class WorkerContext:
    """What every task of this worker process shares; set once the engine is up (tasks.worker)."""

    service: JobService
    model: str
    listener: Tracker
    leases: Holder
    #: This worker's name, stored on the job it runs (`<model>@<host>-<pid>`).
    worker: str = ""
    #: The model's time limit for one job's generation (ModelSpec.time_limit_seconds).
    time_limit: float = field(default=600.0)
    #: Set once the worker runs: how it stops taking jobs and gives back the rest (tasks.drain).
    drain: Drain | None = None


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


def _failure(exc: Exception, job_id: str, time_limit: float) -> APIError:
    """The one place a worker-side failure becomes the client's error."""
    from workers.engine import EngineDead, RequestRejected

    if isinstance(exc, RequestRejected):
        return APIError(f"The engine refused the request: {exc}", param=None)
    if isinstance(exc, TimeLimitExceeded):
        return APIError(
            f"The job ran longer than this model's limit of {time_limit:g} s and was stopped.",
            status=504,
            type="server_error",
            code="time_limit_exceeded",
        )
    if isinstance(exc, (EngineDead, PartialOutputLost)):
        return ServiceUnavailable("The engine failed while running this job; retry it.", code="engine_failed")
    log.error("job %s failed", job_id, exc_info=exc)
    return ServerError("The job failed inside the worker.", code="job_failed")


def run_job(job_id: str, work: Work) -> None:
    context = _context
    if context is None:
        raise RuntimeError("no worker context: start workers with `inferq worker --model ...`")
    claim = _start(context, job_id)
    if claim is None:
        context.leases.release(job_id)
        return
    context.leases.started(job_id)
    cancelled = context.listener.track(job_id, len(claim.request.prompts), claim.attempt)
    try:
        if cancelled:  # between its claim and now: nothing ran
            _finish(context.service, claim, "cancelled", usage=NO_USAGE)
        else:
            _run_claimed(context, claim, work)
    except Superseded:
        log.warning("job %s: attempt %d was superseded by a re-queue; dropping it", job_id, claim.attempt)
    finally:
        context.listener.untrack(job_id)
        context.leases.release(job_id)
        if context.drain is not None:
            context.drain.done(job_id)


def _start(context: WorkerContext, job_id: str) -> Claim | None:
    """Claim the job, unless this worker is draining (tasks.drain): then it goes back to the queue."""
    drain, service = context.drain, context.service
    if drain is not None and drain.draining:
        log.info("job %s: this worker is stopping; giving it back unstarted", job_id)
        context.leases.flush()  # unhold lets go of a written lease, once, whoever asks first
        service.unhold(job_id)
        return None
    claim = service.claim(job_id, context.model, context.worker)
    if claim is None:
        log.info("job %s is not queued (running elsewhere, or ended); skipping", job_id)
        return None
    if drain is not None and not drain.admit(claim):
        log.info("job %s: started after this worker's drain bound; handing it back", job_id)
        service.hand_back(claim)
        return None
    return claim


def _run_claimed(context: WorkerContext, claim: Claim, work: Work) -> None:
    service = context.service
    deadline = time.monotonic() + context.time_limit
    try:
        body = with_engine_restarts(claim.job_id, lambda: work(claim, service, deadline))
    except Superseded:
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Redis went away under the job (a streamed delta could not be written): not the job's
        # fault, so it is not failed. Its lease lapses once this attempt lets go of it, and the
        # reconciler re-queues it when Redis is back (the attempt cap bounds that).
        log.warning("job %s: lost Redis while running (%s); handing it back", claim.job_id, exc)
    except Exception as exc:  # noqa: BLE001 - a job must end with a status, never vanish
        error = _failure(exc, claim.job_id, context.time_limit)
        usage = exc.usage if isinstance(exc, TimeLimitExceeded) else None
        _finish(service, claim, "failed", error=error.to_dict(), error_status=error.status, usage=usage)
    else:
        # A job cancelled while it ran stays cancelled (the finish step decides), billed for what it generated.
        _finish(service, claim, "completed", result=body, usage=body.get("usage"))


def _finish(service: JobService, claim: Claim, status: str, **outcome: Any) -> None:
    """Write the end, retrying while Redis restarts or refuses writes at maxmemory.

    Giving up leaves the job in progress with a lease this worker stops
    renewing: the reconciler re-queues it (the attempt cap bounds that).
    """
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    pause = 0.2
    while True:
        try:
            service.finish(claim, status, **outcome)
            return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not str(exc).startswith("OOM"):
                raise
            if time.monotonic() + pause > deadline:
                raise
            log.warning("job %s: could not write its end (%s); retrying in %.1f s", claim.job_id, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
