"""Embeddings, under every prefix the provider serves.

The inputs are tokenised here (so an input that does not fit is refused at
submit, by index), then go through the queue like any job: a worker pinned to
the embedding model runs them on its one engine, batched with everyone else's.
"""

from __future__ import annotations

from flask import jsonify

from app import jobs
from app.api.common import owner
from app.api.routing import GENERATION, GENERATION_ERRORS, Blueprint
from app.inference import embedding_request, resolve_model
from app.schemas.embeddings import EmbeddingListSchema, EmbeddingRequestSchema
from tasks.embeddings import TASK_NAME

blueprint = Blueprint("embeddings", __name__, tag="Embeddings", prefixes=GENERATION, description="Embeddings.")


@blueprint.post("/embeddings")
@blueprint.arguments(EmbeddingRequestSchema)
@blueprint.response(200, EmbeddingListSchema)
@blueprint.errors(*GENERATION_ERRORS)
def create(data: dict, model: str | None = None):
    """Embed one or more inputs."""
    spec = resolve_model(data.get("model"), model, kind="embed")
    job_request = embedding_request(spec, data)
    jobs.wait_for_worker(spec)
    job_id = jobs.submit(spec, job_request, owner=owner(), stream=False, task=TASK_NAME)["id"]
    return jsonify(jobs.wait_result(job_id, jobs.config()["SYNC_TIMEOUT_SECONDS"]))
