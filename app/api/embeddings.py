"""Embeddings, under every prefix the provider serves.

The inputs are tokenised here (so an input that does not fit is refused at
submit, by index), then go through the queue like any job: a worker pinned to
the embedding model runs them on its one engine, batched with everyone else's.
"""

from __future__ import annotations

from app.api.common import run_generation
from app.api.routing import GENERATION, GENERATION_ERRORS, Blueprint
from app.job_requests import embedding_request, resolve_model
from app.schemas.embeddings import EmbeddingListSchema, EmbeddingRequestSchema

blueprint = Blueprint("embeddings", __name__, tag="Embeddings", prefixes=GENERATION, description="Embeddings.")


@blueprint.post("/embeddings")
@blueprint.arguments(EmbeddingRequestSchema)
@blueprint.response(200, EmbeddingListSchema)
@blueprint.errors(*GENERATION_ERRORS)
def create(data: dict, model: str | None = None):
    """Embed one or more inputs."""
    spec = resolve_model(data.get("model"), model, kind="embed")
    return run_generation(spec, embedding_request(spec, data))
