"""The Celery task that embeds one request's inputs on this worker's engine.

The job's life (claim, cancel tracking, engine restarts, one end) is the
shared tasks.runner; only the work is here. The body is built in the worker
(tasks.protocol.bodies), so the stored result and the reply are the same bytes.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from tasks.dispatch import EMBED_TASK
from tasks.jobs import Claim, JobService
from tasks.protocol import bodies
from tasks.protocol.requests import EmbeddingRequest
from tasks.runner import TimeLimitExceeded, run_job


def run_embedding(claim: Claim, service: JobService, deadline: float) -> dict[str, Any]:
    """Every input goes to the engine at once; it batches them with other jobs' inputs."""
    from workers import runtime
    from workers.engine import TimedOut

    request = claim.request
    assert isinstance(request, EmbeddingRequest)
    try:
        vectors = runtime.current().embed(claim.job_id, request.prompts, deadline=deadline)
    except TimedOut:
        prompt = sum(len(p) for p in request.prompts)
        raise TimeLimitExceeded({"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}) from None
    return bodies.embedding_body(request, vectors)


@shared_task(name=EMBED_TASK, acks_late=True, reject_on_worker_lost=True)
def embed(job_id: str) -> None:
    run_job(job_id, run_embedding)
