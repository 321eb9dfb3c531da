"""The life of one job inside a worker, shared by every task kind.

Claim it (compare-and-set from `queued`), let the cancel listener know, run
the work on the engine, restart a dead engine and run it again, then write
exactly one terminal state. Any exception ends the job as `failed` with an
OpenAI error body: a job never vanishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.cancellation import CancelListener
from tasks.jobstore import JobStore
from tasks.reconciler import LeaseKeeper
from tasks.redis_client import redis_client

log = logging.getLogger(__name__)

#: How often one job may see its engine die and restart before it fails.
MAX_ENGINE_RESTARTS = 3
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

#: Set by the worker process once its engine is up (see tasks.worker).
cancel_listener: CancelListener | None = None
lease_keeper: LeaseKeeper | None = None

Work = Callable[[str, dict[str, Any], JobStore], dict[str, Any]]


class PartialOutputLost(RuntimeError):
    """The engine died after part of a streamed answer was sent: it cannot be resent cleanly."""


def job_store(task: Any) -> JobStore:
    settings = task.app.conf.inferq
    return JobStore(redis_client(settings.redis_url), settings.job_retention_seconds)


def error_body(
    message: str, *, type: str = "server_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


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


def run_job(task: Any, job_id: str, request: dict[str, Any], work: Work) -> None:
    from workers.engine import EngineDead, RequestRejected

    store = job_store(task)
    keeper, listener = lease_keeper, cancel_listener
    attempt = store.start(job_id, request["model"])
    if attempt is None:
        log.info("job %s is not queued (already running elsewhere, or ended); skipping", job_id)
        if keeper is not None:
            keeper.release(job_id)
        return
    if listener is not None:
        listener.track(job_id, len(request.get("prompts") or [None]))

    def end(status: str, **fields: Any) -> None:
        store.finish(job_id, attempt=attempt, status=status, **fields)

    try:
        if store.status(job_id) == "cancelled":
            end("cancelled", usage=NO_USAGE)  # cancelled between claim and tracking: nothing ran
            return
        body = with_engine_restarts(job_id, lambda: work(job_id, request, store))
    except RequestRejected as exc:
        end("failed", error=error_body(str(exc), type="invalid_request_error"), error_status=400)
    except (EngineDead, PartialOutputLost) as exc:
        end("failed", error=error_body(f"The engine failed: {exc}", code="engine_failed"), error_status=503)
    except Exception as exc:  # noqa: BLE001 - a job must end with a status, never vanish
        log.exception("job %s failed", job_id)
        end("failed", error=error_body(f"The job failed: {exc}"), error_status=500)
    else:
        if store.status(job_id) == "cancelled":
            end("cancelled", usage=body.get("usage"))  # bill what was generated; drop the result
        else:
            end("completed", result=body, usage=body.get("usage"))
    finally:
        if listener is not None:
            listener.untrack(job_id)
        if keeper is not None:
            keeper.release(job_id)
