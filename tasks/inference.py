"""The Celery task that runs one job on this worker's engine.

Re-delivery is expected (late acks: a killed worker's jobs come back), so the
task is idempotent: a job whose record is already terminal is skipped, and a
job's result is written once, atomically, with its terminal status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from tasks import openai_format
from tasks.cancellation import CancelListener
from tasks.jobstore import JobStore
from tasks.redis_client import redis_client

log = logging.getLogger(__name__)

TASK_NAME = "inferq.generate"
#: How often one job may see its engine die and restart before it fails.
MAX_ENGINE_RESTARTS = 3

#: Set by the worker process once its engine is up (see tasks.worker).
cancel_listener: CancelListener | None = None


def _store(task: Any) -> JobStore:
    config = task.app.conf.inferq
    return JobStore(redis_client(config["REDIS_URL"]), config["JOB_RETENTION_SECONDS"])


def error_body(
    message: str, *, type: str = "server_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def run_generation(job_id: str, request: dict[str, Any], store: JobStore) -> dict[str, Any]:
    """Drive the engine for one job and return the final OpenAI body."""
    from workers import runtime
    from workers.engine import EngineDead
    from workers.sampling import select_best

    engine = runtime.current()
    n = request["params"].get("n") or 1
    best_of = request["params"].get("best_of") or n
    engine_logprobs = request.get("top_logprobs") if request["endpoint"] == "chat" else request.get("logprobs")
    stream = bool(request.get("stream"))
    for attempt in range(MAX_ENGINE_RESTARTS + 1):
        generation = engine.generation
        results: list[dict[str, Any]] = [{"prompt_tokens": len(prompt), "choices": {}} for prompt in request["prompts"]]
        try:
            for delta in engine.generate(
                job_id, request["prompts"], request["params"], stream=stream, logprobs=engine_logprobs
            ):
                slot = results[delta.prompt_index]["choices"]
                merged = slot.setdefault(
                    delta.choice["index"], {**delta.choice, "text": "", "token_ids": [], "logprobs": None}
                )
                merged["text"] += delta.choice["text"]
                merged["token_ids"] += delta.choice["token_ids"]
                if delta.choice["logprobs"] is not None:
                    merged["logprobs"] = (merged["logprobs"] or []) + delta.choice["logprobs"]
                merged["finish_reason"] = delta.choice["finish_reason"]
                merged["cumulative_logprob"] = delta.choice["cumulative_logprob"]
                if stream:
                    store.append_delta(job_id, {"prompt_index": delta.prompt_index, "choice": delta.choice})
            break
        except EngineDead:
            if attempt == MAX_ENGINE_RESTARTS:
                raise
            log.warning("job %s: engine died (attempt %d); restarting and retrying", job_id, attempt + 1)
            engine.restart(generation)
    for result in results:
        choices = sorted(result["choices"].values(), key=lambda c: c["index"])
        result["choices"] = select_best(choices, n) if best_of > n else choices
    return openai_format.completion_body(
        job_id=job_id, request=request, created=int(request.get("created") or time.time()), results=results
    )


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def generate(self: Any, job_id: str, request: dict[str, Any]) -> None:
    from workers.engine import EngineDead, RequestRejected

    store = _store(self)
    if store.start(job_id) is None:
        log.info("job %s already ended; skipping", job_id)
        return
    listener = cancel_listener
    if listener is not None:
        listener.track(job_id, len(request["prompts"]))
    try:
        if listener is not None and listener.cancelled(job_id):
            return  # cancelled between start and tracking: nothing was generated
        body = run_generation(job_id, request, store)
    except RequestRejected as exc:
        store.finish(
            job_id, status="failed", error=error_body(str(exc), type="invalid_request_error"), error_status=400
        )
        return
    except EngineDead as exc:
        store.finish(
            job_id, status="failed", error=error_body(f"the engine failed: {exc}", code="engine_dead"), error_status=503
        )
        return
    except Exception as exc:  # noqa: BLE001 - a job must end with a status, never vanish
        log.exception("job %s failed", job_id)
        store.finish(job_id, status="failed", error=error_body(f"generation failed: {exc}"), error_status=500)
        return
    finally:
        if listener is not None:
            listener.untrack(job_id)
    if store.status(job_id) == "cancelled":
        # Aborted mid-generation: bill only what was generated; the result is discarded.
        store.finish(job_id, status="cancelled", usage=body["usage"])
        return
    store.finish(job_id, status="completed", result=body, usage=body["usage"])
