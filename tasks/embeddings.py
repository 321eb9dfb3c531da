"""The Celery task that embeds one request's inputs on this worker's engine.

The job's life (claim, cancel tracking, engine restarts, one terminal write)
is the shared `tasks.runner.run_job`; only the work and the body are here.
The body is built in the worker, in OpenAI's shape, so the stored result and
the synchronous reply are the same bytes.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from celery import shared_task

from tasks.dispatch import EMBED_TASK
from tasks.jobstore import JobStore
from tasks.runner import run_job

TASK_NAME = EMBED_TASK


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format=base64`: the float32 values as little-endian bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_body(request: dict[str, Any], vectors: list[list[float]]) -> dict[str, Any]:
    as_base64 = request.get("encoding_format") == "base64"
    prompt_tokens = sum(len(prompt) for prompt in request["prompts"])
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_base64(vector) if as_base64 else vector}
            for i, vector in enumerate(vectors)
        ],
        "model": request["model"],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def run_embedding(job_id: str, request: dict[str, Any], store: JobStore) -> dict[str, Any]:
    """Every input goes to the engine at once; it batches them with other jobs' inputs."""
    from workers import runtime

    return embedding_body(request, runtime.current().embed(job_id, request["prompts"]))


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def embed(self: Any, job_id: str, request: dict[str, Any]) -> None:
    run_job(self, job_id, request, run_embedding)
