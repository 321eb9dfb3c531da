"""The Celery task that runs one chat or text completion job on this worker's engine."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from tasks import openai_format
from tasks.dispatch import GENERATE_TASK
from tasks.jobstore import JobStore, events_key
from tasks.runner import PartialOutputLost, run_job

log = logging.getLogger(__name__)

TASK_NAME = GENERATE_TASK


def run_generation(job_id: str, request: dict[str, Any], store: JobStore) -> dict[str, Any]:
    """Drive the engine for one job and return the final OpenAI body."""
    from workers import runtime
    from workers.sampling import select_best

    engine = runtime.current()
    n = request["params"].get("n") or 1
    best_of = request["params"].get("best_of") or n
    engine_logprobs = request.get("top_logprobs") if request["endpoint"] == "chat" else request.get("logprobs")
    stream = bool(request.get("stream"))
    emitted = store.redis.xlen(events_key(job_id)) if stream else 0
    if emitted:
        raise PartialOutputLost("part of the answer was already streamed when the engine failed")
    results: list[dict[str, Any]] = [{"prompt_tokens": len(prompt), "choices": {}} for prompt in request["prompts"]]
    for delta in engine.generate(
        job_id, request["prompts"], request["params"], stream=stream, logprobs=engine_logprobs
    ):
        slot = results[delta.prompt_index]["choices"]
        merged = slot.setdefault(delta.choice["index"], {**delta.choice, "text": "", "token_ids": [], "logprobs": None})
        merged["text"] += delta.choice["text"]
        merged["token_ids"] += delta.choice["token_ids"]
        if delta.choice["logprobs"] is not None:
            merged["logprobs"] = (merged["logprobs"] or []) + delta.choice["logprobs"]
        merged["finish_reason"] = delta.choice["finish_reason"]
        merged["cumulative_logprob"] = delta.choice["cumulative_logprob"]
        if stream:
            store.append_delta(job_id, {"prompt_index": delta.prompt_index, "choice": delta.choice})
    for result in results:
        choices = sorted(result["choices"].values(), key=lambda c: c["index"])
        result["choices"] = select_best(choices, n) if best_of > n else choices
    return openai_format.completion_body(
        job_id=job_id, request=request, created=int(request.get("created") or time.time()), results=results
    )


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def generate(self: Any, job_id: str, request: dict[str, Any]) -> None:
    run_job(self, job_id, request, run_generation)
