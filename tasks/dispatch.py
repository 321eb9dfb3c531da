"""Put a job's message on its model's queue: the one place both the API and the reconciler do it.

Only the job id travels. The worker runs the request stored in the job record
(returned by its claim), so whoever can publish to the broker still cannot
change what a queued job asks for.
"""

from __future__ import annotations

from celery import Celery

from tasks.jobs.record import Job

GENERATE_TASK = "inferq.generate"
EMBED_TASK = "inferq.embed"
TASK_FOR_KIND = {"generate": GENERATE_TASK, "embed": EMBED_TASK}


def queue_name(model: str) -> str:
    return f"model.{model}"


def dispatch(celery: Celery, job: Job) -> None:
    """The task id is the job id, so Flower shows jobs by their id; never the prompt."""
    celery.send_task(
        TASK_FOR_KIND[job.request.kind],
        args=[job.id],
        queue=queue_name(job.model),
        task_id=job.id,
        priority=job.priority,
        kwargsrepr=repr({"model": job.model, "endpoint": job.endpoint}),
    )
