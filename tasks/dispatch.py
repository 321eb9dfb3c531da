"""Send a job's message to its model's queue: the one place both the API and the reconciler do it."""

from __future__ import annotations

from typing import Any

from celery import Celery

GENERATE_TASK = "inferq.generate"
EMBED_TASK = "inferq.embed"
TASK_FOR_ENDPOINT = {"chat": GENERATE_TASK, "completion": GENERATE_TASK, "embedding": EMBED_TASK}


def queue_name(model: str) -> str:
    return f"model.{model}"


def dispatch(celery: Celery, job_id: str, request: dict[str, Any], priority: int, task: str | None = None) -> None:
    """Only the job id and the request travel; the task id is the job id (Flower shows it)."""
    celery.send_task(
        task or TASK_FOR_ENDPOINT[request["endpoint"]],
        args=[job_id, request],
        queue=queue_name(request["model"]),
        task_id=job_id,
        priority=priority,
        # Flower shows argsrepr instead of the arguments: never the prompt.
        argsrepr=repr([job_id]),
        kwargsrepr=repr({"model": request["model"], "endpoint": request["endpoint"]}),
    )
